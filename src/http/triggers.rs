//! Triggers: `GET/POST /api/triggers/`, `GET/PUT/PATCH/DELETE /api/triggers/{slug}/`, and the
//! events they fired for, `GET /api/triggers/{slug|_|-}/events/[{id}/]`, and the runs those
//! events started, `GET /api/triggers/{slug|_|-}/runs/`.
//!
//! Access: authenticated. Staff see and change every trigger; other users their own. The owner
//! is the creator (staff may assign another one); the pipeline must be visible to the owner.
//! Filters, defaults and mappings are validated when saved (400 with field errors).

use crate::{
    db::entities::{pipeline_run, trigger, trigger_event, user},
    error::{AppError, AppResult},
    events::triggers::{self as svc, TriggerInput},
    http::auth::CurrentUser,
    http::{
        extract::JsonBody,
        paging::{ListQuery, ListUrl, Listing},
    },
    state::AppState,
};
use axum::{
    Json, Router,
    extract::{Path, RawQuery, State},
    http::StatusCode,
    response::Response,
    routing::get,
};
use futures::future::BoxFuture;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, ModelTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait,
};
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
    let am = svc::apply_input(&state.db, &state.config, &user, input, None).await?;
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
    let am = svc::apply_input(&state.db, &state.config, &user, input, Some(&t)).await?;
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

/// Trigger events visible to `user`: staff all, others those of the triggers they own (a
/// subquery, not a list of their triggers' slugs).
async fn events_select(
    state: &AppState,
    user: &user::Model,
    slug: &str,
) -> AppResult<sea_orm::Select<trigger_event::Entity>> {
    let mut select = trigger_event::Entity::find();
    if slug == "_" || slug == "-" {
        if !user.is_staff {
            let own = sea_orm::sea_query::Query::select()
                .column(trigger::Column::Slug)
                .from(trigger::Entity)
                .and_where(trigger::Column::OwnerId.eq(user.id))
                .to_owned();
            select = select.filter(trigger_event::Column::TriggerId.in_subquery(own));
        }
    } else {
        let t = visible(state, user, slug).await?;
        select = select.filter(trigger_event::Column::TriggerId.eq(t.slug));
    }
    Ok(select)
}

fn serialise_events(
    db: &DatabaseConnection,
    rows: Vec<trigger_event::Model>,
) -> BoxFuture<'_, AppResult<Vec<(i64, Value)>>> {
    Box::pin(async move {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let items = svc::trigger_events_json(db, &rows).await?;
        Ok(ids.into_iter().zip(items).collect())
    })
}

/// `GET /api/triggers/{slug|_|-}/events/`: newest first; the whole list streamed, or pages
/// (see [`crate::http::paging`]).
async fn events(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    url: ListUrl,
) -> AppResult<Response> {
    let query = ListQuery::parse(raw.as_deref())?;
    Listing {
        select: events_select(&state, &user, &slug).await?,
        id: trigger_event::Column::Id,
        descending: true,
        serialise: serialise_events,
    }
    .respond(&state.db, &query, &url)
    .await
}

/// `GET /api/triggers/{slug|_|-}/runs/`: the runs started by the events of the trigger (of
/// every trigger the caller may see for `_`/`-`), newest first. The reference answered 500 to
/// non-staff users naming a trigger.
async fn runs(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
    url: ListUrl,
) -> AppResult<Response> {
    let query = ListQuery::parse(raw.as_deref())?;
    // A subquery, not a list of ids: the statement stays the same size however many runs.
    let started = events_select(&state, &user, &slug)
        .await?
        .select_only()
        .column(trigger_event::Column::PipelineRunId)
        .filter(trigger_event::Column::PipelineRunId.is_not_null())
        .into_query();
    Listing {
        select: crate::http::serialize::with_run_extras(
            pipeline_run::Entity::find().filter(pipeline_run::Column::Id.in_subquery(started)),
        ),
        id: pipeline_run::Column::Id,
        descending: true,
        serialise: crate::http::runs::serialise_runs,
    }
    .respond(&state.db, &query, &url)
    .await
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
