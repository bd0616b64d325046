//! `GET /api/users/me/`: who the caller is, and whether they are staff (the frontend shows
//! admin features from `is_staff` / `is_admin`).

use crate::{
    http::auth::CurrentUser,
    http::routes::{Routes, route},
};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// Routes of this resource.
pub fn routes<R: Routes>(routes: R) -> R {
    routes.add(route!(me))
}

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub is_staff: bool,
    /// Same as `is_staff`, as the reference's OIDC user details had it.
    pub is_admin: bool,
    pub is_active: bool,
}

/// `GET /api/users/me/`: the caller.
#[utoipa::path(
    get,
    path = "/api/users/me/",
    tag = "service",
    operation_id = "users_me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = User),
        (status = 401, description = "Missing or invalid credentials", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn me(CurrentUser(user): CurrentUser) -> Json<User> {
    Json(User {
        id: user.id,
        username: user.username.clone(),
        email: user.email.clone(),
        is_staff: user.is_staff,
        is_admin: user.is_staff,
        is_active: user.is_active,
    })
}
