//! `GET /api/triggertypes/` and `GET /api/triggertypes/{slug}/`: anyone may read; non-staff
//! callers see available types only. Types are created by the catalogue seed or fixtures.

use crate::{
    db::entities::trigger_type,
    error::{AppError, AppResult},
    http::auth::MaybeUser,
    http::{
        openapi::ErrorDetail,
        routes::{Routes, route},
    },
    state::AppState,
};
use axum::{
    Json,
    extract::{Path, State},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// A kind of event triggers can react to.
#[derive(Debug, Serialize, ToSchema)]
pub struct TriggerType {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub status: String,
    /// What the type's events carry (free-form, from the catalogue).
    #[schema(value_type = Object)]
    pub data: Value,
}

impl From<trigger_type::Model> for TriggerType {
    fn from(t: trigger_type::Model) -> Self {
        TriggerType {
            slug: t.slug,
            name: t.name,
            description: t.description,
            status: t.status,
            data: t.data,
        }
    }
}

/// Routes of this resource.
pub fn routes<R: Routes>(routes: R) -> R {
    routes.add(route!(list)).add(route!(one))
}

fn is_staff(user: &MaybeUser) -> bool {
    user.0.as_ref().is_some_and(|u| u.is_staff)
}

/// `GET /api/triggertypes/`: the trigger types (non-staff: available ones).
#[utoipa::path(
    get,
    path = "/api/triggertypes/",
    tag = "catalogue",
    operation_id = "triggertypes_list",
    summary = "Trigger types (non-staff: available ones)",
    security((), ("bearer" = [])),
    responses((status = 200, description = "Trigger types", body = Vec<TriggerType>))
)]
async fn list(State(state): State<AppState>, user: MaybeUser) -> AppResult<Json<Vec<TriggerType>>> {
    let mut select = trigger_type::Entity::find().order_by_asc(trigger_type::Column::Slug);
    if !is_staff(&user) {
        select = select.filter(trigger_type::Column::Available.eq(true));
    }
    let rows = select.all(&state.db).await?;
    Ok(Json(rows.into_iter().map(TriggerType::from).collect()))
}

/// `GET /api/triggertypes/{slug}/`: one trigger type.
#[utoipa::path(
    get,
    path = "/api/triggertypes/{slug}/",
    tag = "catalogue",
    operation_id = "triggertypes_read",
    summary = "One trigger type",
    security((), ("bearer" = [])),
    params(("slug" = String, Path, description = "Trigger type slug")),
    responses(
        (status = 200, description = "The trigger type", body = TriggerType),
        (status = 404, description = "No such trigger type visible to the caller", body = ErrorDetail),
    )
)]
async fn one(
    State(state): State<AppState>,
    user: MaybeUser,
    Path(slug): Path<String>,
) -> AppResult<Json<TriggerType>> {
    trigger_type::Entity::find_by_id(slug)
        .one(&state.db)
        .await?
        .filter(|t| t.available || is_staff(&user))
        .map(|t| Json(t.into()))
        .ok_or_else(|| AppError::NotFound("No TriggerType matches the given query.".into()))
}
