//! Knative Functions health probes. Readiness needs nothing but a running server: the database
//! pool is checked lazily by real requests, so a cold start is not slowed down by probes.

use crate::state::AppState;
use axum::{Json, Router, routing::get};
use serde_json::{Value, json};

/// `GET /health/readiness`, `GET /health/liveness`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health/readiness", get(ok))
        .route("/health/liveness", get(ok))
}

async fn ok() -> Json<Value> {
    Json(json!({"status": "ok"}))
}
