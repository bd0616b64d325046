//! `GET /api/users/me/`: who the caller is, and whether they are staff (the frontend shows
//! admin features from `is_staff` / `is_admin`).

use crate::{http::auth::CurrentUser, http::serialize, state::AppState};
use axum::{Json, Router, routing::get};
use serde_json::Value;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/users/me", get(me))
}

/// `GET /api/users/me/`: the caller.
#[utoipa::path(
    get,
    path = "/api/users/me/",
    tag = "service",
    operation_id = "users_me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = crate::http::openapi::schemas::User),
        (status = 401, description = "Missing or invalid credentials", body = crate::http::openapi::schemas::ErrorDetail),
    )
)]
async fn me(CurrentUser(user): CurrentUser) -> Json<Value> {
    Json(serialize::user(&user))
}
