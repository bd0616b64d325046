//! `GET /api/`: the API root, listing the collections as absolute URLs built from `PUBLIC_URL`
//! (like the reference's router root). Anyone may read it.

use crate::{http::auth::MaybeUser, state::AppState};
use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Map, Value};

/// Collections listed at the API root, in the reference's order, plus ours.
const COLLECTIONS: [&str; 8] = [
    "pipelines",
    "tools",
    "tags",
    "triggertypes",
    "triggers",
    "events",
    "settings",
    "users/me",
];

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/api", get(index))
}

/// `GET /api/`: the collections, as absolute URLs.
#[utoipa::path(
    get,
    path = "/api/",
    tag = "service",
    operation_id = "api_root",
    security((), ("bearer" = [])),
    responses((status = 200, description = "Collection name -> URL", body = crate::http::openapi::schemas::ApiRoot))
)]
async fn index(State(state): State<AppState>, _user: MaybeUser) -> Json<Value> {
    let base = state.config.server.public_url.trim_end_matches('/');
    let links: Map<String, Value> = COLLECTIONS
        .iter()
        .map(|c| ((*c).to_string(), Value::String(format!("{base}/api/{c}/"))))
        .collect();
    Json(Value::Object(links))
}
