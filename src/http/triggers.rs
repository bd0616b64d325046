//! Triggers: `GET/POST /api/triggers/`, `GET/PUT/PATCH/DELETE /api/triggers/{slug}/`, and the
//! events they fired for, `GET /api/triggers/{slug|_|-}/events/[{id}/]`, and the runs those
//! events started, `GET /api/triggers/{slug|_|-}/runs/`.
//!
//! Access: authenticated. Staff see and change every trigger; other users their own. The owner
//! is the creator (staff may assign another one); the pipeline must be visible to the owner.
//! Filters, defaults and mappings are validated when saved (400 with field errors).

use crate::{
    auth::CurrentUser,
    db::entities::{pipeline_run, trigger, trigger_event, user},
    error::{AppError, AppResult},
    events::triggers::{self as svc, TriggerInput},
    http::{extract::JsonBody, serialize},
    state::AppState,
};
use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::get,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, ModelTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Deserialize;
use serde_json::Value;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/triggers", get(list).post(create))
        .route(
            "/api/triggers/{slug}",
            get(one).put(update).patch(update).delete(remove),
        )
        .route("/api/triggers/{slug}/events", get(events))
        .route("/api/triggers/{slug}/runs", get(runs))
        .route("/api/triggers/{slug}/events/{id}", get(event))
}

fn not_found() -> AppError {
    AppError::NotFound("No Trigger matches the given query.".into())
}

/// The trigger if `user` may see it (owner or staff); 404 otherwise.
async fn visible(state: &AppState, user: &user::Model, slug: &str) -> AppResult<trigger::Model> {
    trigger::Entity::find_by_id(slug.to_owned())
        .one(&state.db)
        .await?
        .filter(|t| user.owns_or_staff(t.owner_id))
        .ok_or_else(not_found)
}

async fn one_json(state: &AppState, t: &trigger::Model) -> AppResult<Value> {
    Ok(svc::to_json_many(&state.db, std::slice::from_ref(t))
        .await?
        .pop()
        .unwrap_or_default())
}

async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> AppResult<Json<Value>> {
    let mut select = trigger::Entity::find().order_by_asc(trigger::Column::Slug);
    if !user.is_staff {
        select = select.filter(trigger::Column::OwnerId.eq(user.id));
    }
    let rows = select.all(&state.db).await?;
    Ok(Json(Value::Array(
        svc::to_json_many(&state.db, &rows).await?,
    )))
}

async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(input): JsonBody<TriggerInput>,
) -> AppResult<(StatusCode, Json<Value>)> {
    let am = svc::apply_input(&state.db, &user, input, None).await?;
    let saved = am.insert(&state.db).await.map_err(|e| {
        if crate::db::is_unique_violation(&e) {
            AppError::field("slug", "trigger with this slug already exists.")
        } else {
            e.into()
        }
    })?;
    Ok((StatusCode::CREATED, Json(one_json(&state, &saved).await?)))
}

async fn one(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(slug): Path<String>,
) -> AppResult<Json<Value>> {
    let t = visible(&state, &user, &slug).await?;
    Ok(Json(one_json(&state, &t).await?))
}

async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(slug): Path<String>,
    JsonBody(input): JsonBody<TriggerInput>,
) -> AppResult<Json<Value>> {
    let t = visible(&state, &user, &slug).await?;
    let am = svc::apply_input(&state.db, &user, input, Some(&t)).await?;
    let saved = am.update(&state.db).await?;
    Ok(Json(one_json(&state, &saved).await?))
}

async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(slug): Path<String>,
) -> AppResult<StatusCode> {
    let t = visible(&state, &user, &slug).await?;
    t.delete(&state.db).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    limit: Option<u64>,
}

/// Trigger events visible to `user`: staff all, others those of the triggers they own.
async fn events_select(
    state: &AppState,
    user: &user::Model,
    slug: &str,
) -> AppResult<sea_orm::Select<trigger_event::Entity>> {
    let mut select = trigger_event::Entity::find().order_by_desc(trigger_event::Column::Id);
    if slug == "_" || slug == "-" {
        if !user.is_staff {
            let own: Vec<String> = trigger::Entity::find()
                .filter(trigger::Column::OwnerId.eq(user.id))
                .all(&state.db)
                .await?
                .into_iter()
                .map(|t| t.slug)
                .collect();
            select = select.filter(trigger_event::Column::TriggerId.is_in(own));
        }
    } else {
        let t = visible(state, user, slug).await?;
        select = select.filter(trigger_event::Column::TriggerId.eq(t.slug));
    }
    Ok(select)
}

async fn events(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(slug): Path<String>,
    Query(q): Query<EventsQuery>,
) -> AppResult<Json<Value>> {
    let rows = events_select(&state, &user, &slug)
        .await?
        .limit(q.limit.unwrap_or(1000).clamp(1, 1000))
        .all(&state.db)
        .await?;
    Ok(Json(Value::Array(
        svc::trigger_events_json(&state.db, &rows).await?,
    )))
}

/// `GET /api/triggers/{slug|_|-}/runs/`: the runs started by the events of the trigger (of
/// every trigger the caller may see for `_`/`-`), newest first. The reference answered 500 to
/// non-staff users naming a trigger.
async fn runs(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(slug): Path<String>,
    Query(q): Query<EventsQuery>,
) -> AppResult<Json<Value>> {
    let run_ids: Vec<i64> = events_select(&state, &user, &slug)
        .await?
        .select_only()
        .column(trigger_event::Column::PipelineRunId)
        .filter(trigger_event::Column::PipelineRunId.is_not_null())
        .into_tuple::<Option<i64>>()
        .all(&state.db)
        .await?
        .into_iter()
        .flatten()
        .collect();
    if run_ids.is_empty() {
        return Ok(Json(Value::Array(Vec::new())));
    }
    let rows = pipeline_run::Entity::find()
        .filter(pipeline_run::Column::Id.is_in(run_ids))
        .order_by_desc(pipeline_run::Column::Id)
        .limit(q.limit.unwrap_or(1000).clamp(1, 1000))
        .all(&state.db)
        .await?;
    Ok(Json(serialize::runs(&state.db, &rows).await?))
}

async fn event(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((slug, id)): Path<(String, String)>,
) -> AppResult<Json<Value>> {
    let missing = || AppError::NotFound("No TriggerEvent matches the given query.".into());
    let id: i64 = id.parse().map_err(|_| missing())?;
    let row = events_select(&state, &user, &slug)
        .await?
        .filter(trigger_event::Column::Id.eq(id))
        .one(&state.db)
        .await?
        .ok_or_else(missing)?;
    Ok(Json(
        svc::trigger_events_json(&state.db, &[row])
            .await?
            .pop()
            .unwrap_or_default(),
    ))
}
