//! `GET /api/triggertypes/` and `GET /api/triggertypes/{slug}/`: anyone may read; non-staff
//! callers see available types only. Types are created by the catalogue seed or fixtures.

use crate::{
    db::entities::trigger_type,
    error::{AppError, AppResult},
    events::triggers::trigger_type_json,
    http::auth::MaybeUser,
    state::AppState,
};
use axum::{
    Json, Router,
    extract::{Path, State},
    routing::get,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::Value;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/triggertypes", get(list))
        .route("/api/triggertypes/{slug}", get(one))
}

fn is_staff(user: &MaybeUser) -> bool {
    user.0.as_ref().is_some_and(|u| u.is_staff)
}

async fn list(State(state): State<AppState>, user: MaybeUser) -> AppResult<Json<Value>> {
    let mut select = trigger_type::Entity::find().order_by_asc(trigger_type::Column::Slug);
    if !is_staff(&user) {
        select = select.filter(trigger_type::Column::Available.eq(true));
    }
    let rows = select.all(&state.db).await?;
    Ok(Json(Value::Array(
        rows.iter().map(trigger_type_json).collect(),
    )))
}

async fn one(
    State(state): State<AppState>,
    user: MaybeUser,
    Path(slug): Path<String>,
) -> AppResult<Json<Value>> {
    trigger_type::Entity::find_by_id(slug)
        .one(&state.db)
        .await?
        .filter(|t| t.available || is_staff(&user))
        .map(|t| Json(trigger_type_json(&t)))
        .ok_or_else(|| AppError::NotFound("No TriggerType matches the given query.".into()))
}
