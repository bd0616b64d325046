//! Knative Functions health probes. Liveness needs nothing but a running server. Readiness
//! also waits for the start-up schema check when it was deferred to after listening (see
//! [`crate::build_state`]): until then it answers 503, so no traffic is routed to an instance
//! whose database turns out not to be migrated (that instance then exits).

use crate::{
    http::routes::{Routes, route},
    state::AppState,
};
use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use std::sync::atomic::Ordering;
use utoipa::ToSchema;

/// `GET /health/readiness`, `GET /health/liveness`.
pub fn routes<R: Routes>(routes: R) -> R {
    routes.add(route!(readiness)).add(route!(liveness))
}

/// A probe's answer.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    /// `ok`, or `starting` while the schema check is pending.
    #[schema(value_type = String)]
    status: &'static str,
    /// Why the instance is not ready yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    detail: Option<&'static str>,
}

const OK: Health = Health {
    status: "ok",
    detail: None,
};

/// `GET /health/liveness`: the server runs.
#[utoipa::path(
    get,
    path = "/health/liveness",
    tag = "service",
    operation_id = "health_liveness",
    summary = "Liveness probe",
    responses((status = 200, description = "Alive", body = Health))
)]
async fn liveness() -> Json<Health> {
    Json(OK)
}

/// `GET /health/readiness`: ready for traffic.
#[utoipa::path(
    get,
    path = "/health/readiness",
    tag = "service",
    operation_id = "health_readiness",
    summary = "Readiness probe: 503 until the deferred start-up schema check has passed",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Still checking the database schema", body = Health),
    )
)]
async fn readiness(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        Json(OK).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "starting",
                detail: Some("Checking the database schema."),
            }),
        )
            .into_response()
    }
}
