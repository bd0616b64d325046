//! One list of routes. Each resource module names its handlers once, in a `routes` function
//! generic over [`Routes`], each handler with the path and methods of its `#[utoipa::path]`
//! ([`route!`](crate::http::routes::route)). The same function builds:
//!
//! - the router served at start-up ([`axum::Router`]): only the path and the methods are read,
//!   so no OpenAPI is built on the cold-start path;
//! - the OpenAPI document ([`utoipa_axum::router::OpenApiRouter`], utoipa-axum's `routes!`), in
//!   [`crate::http::openapi`].
//!
//! A route can therefore not be served without being documented, or documented without being
//! served. Documented paths carry the trailing slash clients use; the router registers them
//! without it (a trailing slash is trimmed before routing, see [`crate::run`]).

use crate::state::AppState;
use axum::{
    Router,
    handler::Handler,
    routing::{MethodFilter, MethodRouter},
};
use utoipa::openapi::HttpMethod;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

/// One handler: its path and method router, and how to describe it (utoipa-axum's `routes!`,
/// called only when the document is built).
pub struct Route<D> {
    path: String,
    handler: MethodRouter<AppState>,
    document: D,
}

impl<D: FnOnce() -> UtoipaMethodRouter<AppState>> Route<D> {
    /// The route of `handler`, whose `#[utoipa::path]` is `P`. Use [`route!`].
    pub fn new<P, H, T>(handler: H, document: D) -> Self
    where
        P: utoipa::Path,
        H: Handler<T, AppState>,
        T: 'static,
    {
        let handler = P::methods()
            .iter()
            .fold(MethodRouter::new(), |router, method| {
                router.on(method_filter(method), handler.clone())
            });
        Route {
            path: P::path(),
            handler,
            document,
        }
    }
}

fn method_filter(method: &HttpMethod) -> MethodFilter {
    match method {
        HttpMethod::Get => MethodFilter::GET,
        HttpMethod::Put => MethodFilter::PUT,
        HttpMethod::Post => MethodFilter::POST,
        HttpMethod::Head => MethodFilter::HEAD,
        HttpMethod::Patch => MethodFilter::PATCH,
        HttpMethod::Trace => MethodFilter::TRACE,
        HttpMethod::Delete => MethodFilter::DELETE,
        HttpMethod::Options => MethodFilter::OPTIONS,
    }
}

/// The path as routed: the documented path without its trailing slash.
fn routed_path(documented: &str) -> &str {
    match documented.strip_suffix('/') {
        Some("") | None => documented,
        Some(path) => path,
    }
}

/// What a list of routes is built into: the served router or the OpenAPI document.
pub trait Routes: Default {
    /// Adds one documented handler.
    fn add<D: FnOnce() -> UtoipaMethodRouter<AppState>>(self, route: Route<D>) -> Self;

    /// Adds a method router that is not an operation of the API (catch-alls answering 404):
    /// routed, never documented.
    fn not_an_operation(self, path: &str, method_router: MethodRouter<AppState>) -> Self;
}

impl Routes for Router<AppState> {
    fn add<D: FnOnce() -> UtoipaMethodRouter<AppState>>(self, route: Route<D>) -> Self {
        self.route(routed_path(&route.path), route.handler)
    }

    fn not_an_operation(self, path: &str, method_router: MethodRouter<AppState>) -> Self {
        self.route(path, method_router)
    }
}

impl Routes for OpenApiRouter<AppState> {
    fn add<D: FnOnce() -> UtoipaMethodRouter<AppState>>(self, route: Route<D>) -> Self {
        self.routes((route.document)())
    }

    fn not_an_operation(self, _path: &str, _method_router: MethodRouter<AppState>) -> Self {
        self
    }
}

/// The [`Route`] of a handler annotated with `#[utoipa::path]` (a name in scope).
macro_rules! route {
    ($handler:ident) => {
        ::pastey::paste! {
            $crate::http::routes::Route::new::<[<__path_ $handler>], _, _>(
                $handler,
                || ::utoipa_axum::routes!($handler),
            )
        }
    };
}
pub(crate) use route;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_paths_lose_the_trailing_slash() {
        assert_eq!(routed_path("/api/pipelines/{id}/"), "/api/pipelines/{id}");
        assert_eq!(routed_path("/api/"), "/api");
        assert_eq!(routed_path("/"), "/");
        assert_eq!(routed_path("/api/openapi.json"), "/api/openapi.json");
        assert_eq!(
            routed_path("/{namespace}/{broker}"),
            "/{namespace}/{broker}"
        );
    }
}
