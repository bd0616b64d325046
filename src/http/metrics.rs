//! `GET /metrics`: the Prometheus text of this instance's series (`crate::metrics`).

use crate::state::AppState;
use axum::{
    Router,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::encoding::prometheus_text;

/// `GET /metrics`. Merged beside the health probes, outside the `Host` check and the request
/// log (see the module documentation).
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

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
