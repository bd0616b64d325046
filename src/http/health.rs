//! Knative Functions health probes. Liveness needs nothing but a running server. Readiness
//! also waits for the start-up schema check when it was deferred to after listening (see
//! [`crate::build_state`]): until then it answers 503, so no traffic is routed to an instance
//! whose database turns out not to be migrated (that instance then exits).

use crate::state::AppState;
use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

/// `GET /health/readiness`, `GET /health/liveness`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health/readiness", get(readiness))
        .route("/health/liveness", get(ok))
}

async fn ok() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readiness(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        ok().await.into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "starting", "detail": "Checking the database schema."})),
        )
            .into_response()
    }
}
