//! The HTTP surface: one module per resource, each with its request and response types and its
//! `routes()` ([`routes`]: the one list the router and the OpenAPI document are built from),
//! assembled here with the cross-cutting layers (host check, CORS, body limit, timeout, request
//! log, JSON errors).

pub mod auth;
pub mod events;
pub mod extract;
pub mod fields;
pub mod health;
pub mod index;
pub mod jobreports;
pub mod metrics;
pub mod middleware;
pub mod multipart;
pub mod oidc;
pub mod openapi;
pub mod paging;
pub mod pipelines;
pub mod results;
pub mod routes;
pub mod runlogs;
pub mod runs;
pub mod serialize;
pub mod settings;
pub mod tags;
pub mod tokens;
pub mod tools;
pub mod triggers;
pub mod triggertypes;
pub mod users;

use crate::state::AppState;
use axum::{Router, extract::DefaultBodyLimit, http::StatusCode};
use routes::Routes;
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer};

/// Every route, in the three groups [`router`] layers differently. Built into the served
/// router at start-up and into the OpenAPI document on demand ([`routes`]).
pub struct Groups<R> {
    /// The REST resources (with `/api/events/`): CORS and the `Host` allow-list.
    pub rest: R,
    /// `POST /` and the broker-shaped CloudEvents ingress: neither.
    pub ingress: R,
    /// Health probes and metrics: outside the request log and the request metrics too.
    pub probes: R,
}

/// The route list of the whole service.
pub fn groups<R: Routes>() -> Groups<R> {
    let rest: [fn(R) -> R; 16] = [
        index::routes,
        tokens::routes,
        pipelines::routes,
        runs::routes,
        runlogs::routes,
        jobreports::routes,
        results::routes,
        tools::routes,
        tags::routes,
        triggertypes::routes,
        triggers::routes,
        events::routes,
        users::routes,
        oidc::routes,
        settings::routes,
        openapi::routes,
    ];
    Groups {
        rest: rest.into_iter().fold(R::default(), |r, add| add(r)),
        ingress: events::ingress_routes(R::default()),
        probes: metrics::routes(health::routes(R::default())),
    }
}

/// Builds the application router (routes without trailing slashes; see [`crate::run`]).
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let Groups {
        rest,
        ingress,
        probes,
    } = groups::<Router<AppState>>();
    // REST resources (with `/api/events/`, whose list the frontend reads): CORS for the web
    // frontend and the `Host` allow-list. `POST /`, the broker-shaped ingress, health probes
    // and metrics are routed beside them without either (brokers, kubelets and Prometheus
    // address pods by IP; browsers cannot send CloudEvents cross-origin). Axum clones a
    // route's layers for every request, so each route carries only the layers it needs: health
    // events on `POST /` went from about 36,000 to 54,000 req/s on 2 cores.
    let rest = rest
        .fallback(middleware::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::check_host,
        ))
        .layer(middleware::cors(&config));
    Router::new()
        .merge(rest)
        .merge(ingress)
        .layer(DefaultBodyLimit::max(config.server.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(config.server.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.server.request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe_requests,
        ))
        // Health probes and metrics stay outside the request log and the request metrics too.
        .merge(probes)
        .with_state(state)
}
