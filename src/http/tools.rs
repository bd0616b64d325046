//! `GET /api/tools/` and `GET /api/tools/{slug}/`: the subworkflows pipelines are made of.
//! Anyone may read them; only staff see tools that are not `available`.

use crate::{
    db::entities::{subworkflow, subworkflow_tag, subworkflow_tool},
    error::{AppError, AppResult},
    http::auth::MaybeUser,
    http::routes::{Routes, route},
    state::AppState,
};
use axum::{
    Json,
    extract::{Path, State},
};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Select};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use utoipa::ToSchema;

/// A tool (subworkflow) pipelines are made of; its CWL `definition` and `pipeline_step` stay
/// internal.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tool {
    pub slug: String,
    pub name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    /// `{tool: {input: {"type", "label", "doc", "default"}}}`.
    #[schema(value_type = Object)]
    pub user_params: Value,
    /// Tag ids.
    pub tags: Vec<i64>,
    /// Command-line tool slugs.
    pub tools: Vec<String>,
    pub version: String,
    pub status: String,
    pub available: bool,
}

/// Longest subworkflow slug (the column's size).
const MAX_SLUG_LEN: usize = 50;

/// Routes of this resource.
pub fn routes<R: Routes>(routes: R) -> R {
    routes.add(route!(list)).add(route!(read))
}

fn visible(user: &MaybeUser) -> Select<subworkflow::Entity> {
    let q = subworkflow::Entity::find();
    match &user.0 {
        Some(u) if u.is_staff => q,
        _ => q.filter(subworkflow::Column::Available.eq(true)),
    }
}

/// Serialises tools with their tag ids and command-line tool slugs (two extra queries).
async fn with_links<C: ConnectionTrait>(
    db: &C,
    sws: &[subworkflow::Model],
) -> AppResult<Vec<Tool>> {
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
        .map(|s| Tool {
            slug: s.slug.clone(),
            name: s.name.clone(),
            description: s.description.clone(),
            user_params: s.user_params.clone(),
            tags: tags.remove(&s.slug).unwrap_or_default(),
            tools: tools.remove(&s.slug).unwrap_or_default(),
            version: s.version.clone(),
            status: s.status.clone(),
            available: s.available,
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
    responses((status = 200, description = "Tools", body = Vec<Tool>))
)]
async fn list(State(state): State<AppState>, user: MaybeUser) -> AppResult<Json<Vec<Tool>>> {
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
        (status = 200, description = "The tool", body = Tool),
        (status = 404, description = "No such tool visible to the caller", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn read(
    State(state): State<AppState>,
    user: MaybeUser,
    Path(slug): Path<String>,
) -> AppResult<Json<Tool>> {
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
    list.pop().map(Json).ok_or_else(not_found)
}
