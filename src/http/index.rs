//! `GET /api/`: the API root, listing the collections as absolute URLs built from `PUBLIC_URL`
//! (like the reference's router root). Anyone may read it.

use crate::{
    http::auth::MaybeUser,
    http::routes::{Routes, route},
    state::AppState,
};
use axum::{Json, extract::State};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The API root: collection name -> absolute URL.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"pipelines": "https://aq.example.org/api/pipelines/"}))]
pub struct ApiRoot(BTreeMap<&'static str, String>);

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
pub fn routes<R: Routes>(routes: R) -> R {
    routes.add(route!(index))
}

/// `GET /api/`: the collections, as absolute URLs.
#[utoipa::path(
    get,
    path = "/api/",
    tag = "service",
    operation_id = "api_root",
    security((), ("bearer" = [])),
    responses((status = 200, description = "Collection name -> URL", body = ApiRoot))
)]
async fn index(State(state): State<AppState>, _user: MaybeUser) -> Json<ApiRoot> {
    let base = state.config.server.public_url.trim_end_matches('/');
    Json(ApiRoot(
        COLLECTIONS
            .iter()
            .map(|c| (*c, format!("{base}/api/{c}/")))
            .collect(),
    ))
}
