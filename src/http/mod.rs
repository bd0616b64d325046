//! The HTTP surface: one module per resource, each with its own `router()`, assembled here with
//! the cross-cutting layers (host check, CORS, body limit, timeout, request log, JSON errors).

pub mod events;
pub mod extract;
pub mod health;
pub mod index;
pub mod jobreports;
pub mod middleware;
pub mod openapi;
pub mod pipelines;
pub mod results;
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
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer};

/// Builds the application router (routes without trailing slashes; see [`crate::run`]).
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let api = Router::new()
        .merge(index::router())
        .merge(tokens::router())
        .merge(pipelines::router())
        .merge(runs::router())
        .merge(jobreports::router())
        .merge(results::router())
        .merge(tools::router())
        .merge(tags::router())
        .merge(triggertypes::router())
        .merge(triggers::router())
        .merge(events::router())
        .merge(users::router())
        .merge(settings::router())
        .merge(openapi::router());
    Router::new()
        .merge(api)
        .fallback(middleware::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::check_host,
        ))
        .layer(middleware::cors(&config))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout(),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe_requests,
        ))
        // Health probes and metrics stay outside the host check, the request log and the
        // request metrics (scrapers and probes address pods by IP).
        .merge(health::router())
        .merge(crate::metrics::router())
        .with_state(state)
}
