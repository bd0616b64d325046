//! `GET /api/tags/` and `GET /api/tags/{id}/`: the labels of tools. Anyone may read them.

use crate::{
    db::entities::tag,
    error::{AppError, AppResult},
    http::auth::MaybeUser,
    http::routes::{Routes, route},
    http::serialize,
    state::AppState,
};
use axum::{
    Json,
    extract::{Path, State},
};
use sea_orm::{EntityTrait, QueryOrder};
use serde::Serialize;
use utoipa::ToSchema;

/// Routes of this resource.
pub fn routes<R: Routes>(routes: R) -> R {
    routes.add(route!(list)).add(route!(read))
}

/// A tag of tools.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tag {
    pub id: i64,
    pub name: String,
}

impl From<&tag::Model> for Tag {
    fn from(t: &tag::Model) -> Self {
        Tag {
            id: t.id,
            name: t.name.clone(),
        }
    }
}

/// `GET /api/tags/`: every tag.
#[utoipa::path(
    get,
    path = "/api/tags/",
    tag = "catalogue",
    operation_id = "tags_list",
    security((), ("bearer" = [])),
    responses((status = 200, description = "Tags", body = Vec<Tag>))
)]
async fn list(State(state): State<AppState>, _user: MaybeUser) -> AppResult<Json<Vec<Tag>>> {
    let tags = tag::Entity::find()
        .order_by_asc(tag::Column::Id)
        .all(&state.db)
        .await?;
    Ok(Json(tags.iter().map(Tag::from).collect()))
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
        (status = 200, description = "The tag", body = Tag),
        (status = 404, description = "No such tag", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn read(
    State(state): State<AppState>,
    _user: MaybeUser,
    Path(id): Path<String>,
) -> AppResult<Json<Tag>> {
    let id = serialize::parse_id(&id)?;
    let t = tag::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AppError::NotFound("No Tag matches the given query.".into()))?;
    Ok(Json(Tag::from(&t)))
}
