//! `GET /api/tools/` and `GET /api/tools/{slug}/`: the subworkflows pipelines are made of.
//! Anyone may read them; only staff see tools that are not `available`.

use crate::{
    db::entities::{subworkflow, subworkflow_tag, subworkflow_tool},
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
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Select};
use serde_json::Value;
use std::collections::HashMap;

/// Longest subworkflow slug (the column's size).
const MAX_SLUG_LEN: usize = 50;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tools", get(list))
        .route("/api/tools/{slug}", get(read))
}

fn visible(user: &MaybeUser) -> Select<subworkflow::Entity> {
    let q = subworkflow::Entity::find();
    match &user.0 {
        Some(u) if u.is_staff => q,
        _ => q.filter(subworkflow::Column::Available.eq(true)),
    }
}

/// Serialises tools with their tag ids and command-line tool slugs (two extra queries).
async fn with_links<C: ConnectionTrait>(db: &C, sws: &[subworkflow::Model]) -> AppResult<Value> {
    let slugs: Vec<String> = sws.iter().map(|s| s.slug.clone()).collect();
    let mut tags: HashMap<String, Vec<i64>> = HashMap::new();
    for t in subworkflow_tag::Entity::find()
        .filter(subworkflow_tag::Column::SubworkflowId.is_in(slugs.clone()))
        .order_by_asc(subworkflow_tag::Column::TagId)
        .all(db)
        .await?
    {
        tags.entry(t.subworkflow_id).or_default().push(t.tag_id);
    }
    let mut tools: HashMap<String, Vec<String>> = HashMap::new();
    for t in subworkflow_tool::Entity::find()
        .filter(subworkflow_tool::Column::SubworkflowId.is_in(slugs))
        .order_by_asc(subworkflow_tool::Column::Id)
        .all(db)
        .await?
    {
        tools
            .entry(t.subworkflow_id)
            .or_default()
            .push(t.commandlinetool_id);
    }
    Ok(sws
        .iter()
        .map(|s| {
            serialize::tool(
                s,
                tags.get(&s.slug).map_or(&[][..], Vec::as_slice),
                tools.get(&s.slug).map_or(&[][..], Vec::as_slice),
            )
        })
        .collect())
}

/// `GET /api/tools/`: available tools (staff: all).
#[utoipa::path(
    get,
    path = "/api/tools/",
    tag = "catalogue",
    operation_id = "tools_list",
    security((), ("bearer" = [])),
    responses((status = 200, description = "Tools", body = Vec<crate::http::openapi::schemas::Tool>))
)]
async fn list(State(state): State<AppState>, user: MaybeUser) -> AppResult<Json<Value>> {
    let sws = visible(&user)
        .order_by_asc(subworkflow::Column::Slug)
        .all(&state.db)
        .await?;
    Ok(Json(with_links(&state.db, &sws).await?))
}

/// `GET /api/tools/{slug}/`: one tool.
#[utoipa::path(
    get,
    path = "/api/tools/{slug}/",
    tag = "catalogue",
    operation_id = "tools_read",
    security((), ("bearer" = [])),
    params(("slug" = String, Path, description = "Tool (subworkflow) slug")),
    responses(
        (status = 200, description = "The tool", body = crate::http::openapi::schemas::Tool),
        (status = 404, description = "No such tool visible to the caller", body = crate::http::openapi::schemas::ErrorDetail),
    )
)]
async fn read(
    State(state): State<AppState>,
    user: MaybeUser,
    Path(slug): Path<String>,
) -> AppResult<Json<Value>> {
    let not_found = || AppError::NotFound("No Subworkflow matches the given query.".into());
    if slug.len() > MAX_SLUG_LEN {
        return Err(not_found());
    }
    let sw = visible(&user)
        .filter(subworkflow::Column::Slug.eq(slug))
        .one(&state.db)
        .await?
        .ok_or_else(not_found)?;
    let mut list = with_links(&state.db, std::slice::from_ref(&sw)).await?;
    Ok(Json(
        list.as_array_mut()
            .and_then(|a| a.pop())
            .unwrap_or(Value::Null),
    ))
}
