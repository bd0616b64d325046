//! `GET /api/tags/` and `GET /api/tags/{id}/`: the labels of tools. Anyone may read them.

use crate::{
    db::entities::tag,
    error::{AppError, AppResult},
    http::auth::MaybeUser,
    http::serialize,
    state::AppState,
};
use axum::{
    Json, Router,
    extract::{Path, State},
    routing::get,
};
use sea_orm::{EntityTrait, QueryOrder};
use serde_json::Value;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tags", get(list))
        .route("/api/tags/{id}", get(read))
}

/// `GET /api/tags/`: every tag.
#[utoipa::path(
    get,
    path = "/api/tags/",
    tag = "catalogue",
    operation_id = "tags_list",
    security((), ("bearer" = [])),
    responses((status = 200, description = "Tags", body = Vec<crate::http::openapi::schemas::Tag>))
)]
async fn list(State(state): State<AppState>, _user: MaybeUser) -> AppResult<Json<Value>> {
    let tags = tag::Entity::find()
        .order_by_asc(tag::Column::Id)
        .all(&state.db)
        .await?;
    Ok(Json(tags.iter().map(serialize::tag).collect()))
}

/// `GET /api/tags/{id}/`: one tag.
#[utoipa::path(
    get,
    path = "/api/tags/{id}/",
    tag = "catalogue",
    operation_id = "tags_read",
    security((), ("bearer" = [])),
    params(("id" = i64, Path, description = "Tag id")),
    responses(
        (status = 200, description = "The tag", body = crate::http::openapi::schemas::Tag),
        (status = 404, description = "No such tag", body = crate::http::openapi::schemas::ErrorDetail),
    )
)]
async fn read(
    State(state): State<AppState>,
    _user: MaybeUser,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let id = serialize::parse_id(&id)?;
    let t = tag::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AppError::NotFound("No Tag matches the given query.".into()))?;
    Ok(Json(serialize::tag(&t)))
}
