//! `GET /metrics`: the Prometheus text of this instance's series (`crate::metrics`).

use crate::{
    http::routes::{Routes, route},
    state::AppState,
};
use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use prometheus_client::encoding::prometheus_text;

/// `GET /metrics`. Merged beside the health probes, outside the `Host` check and the request
/// log (see the module documentation).
pub fn routes<R: Routes>(routes: R) -> R {
    routes.add(route!(scrape))
}

/// `GET /metrics`: this instance's series.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    operation_id = "metrics",
    summary = "Prometheus metrics (text format 0.0.4; outside the `Host` check)",
    responses(
        (status = 200, description = "Requests, CloudEvents, run launches and runs by status", body = String, content_type = "text/plain; version=0.0.4"),
    )
)]
async fn scrape(State(state): State<AppState>) -> Response {
    let text = state
        .runs
        .metrics
        .render(&state.db, state.runs.launcher.waiting())
        .await;
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        text,
    )
        .into_response()
}
