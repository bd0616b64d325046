//! Triggers: `GET/POST /api/triggers/`, `GET/PUT/PATCH/DELETE /api/triggers/{slug}/`, and the
//! events they fired for, `GET /api/triggers/{slug|_|-}/events/[{id}/]`, and the runs those
//! events started, `GET /api/triggers/{slug|_|-}/runs/`.
//!
//! Access: authenticated. Staff see and change every trigger; other users their own. The owner
//! is the creator (staff may assign another one); the pipeline must be visible to the owner.
//! Filters, defaults and mappings are validated when saved (400 with field errors).

use crate::{
    db::entities::{pipeline_run, trigger, trigger_event, trigger_type, user},
    error::{AppError, AppResult},
    events::triggers::{self as svc, TriggerInput},
    http::auth::CurrentUser,
    http::{
        extract::JsonBody,
        openapi::{ErrorDetail, FieldErrors},
        paging::{ListQuery, ListUrl, Listing, PageParams},
        routes::{Routes, route},
        runs::Run,
    },
    state::AppState,
};
use axum::{
    Json,
    extract::{Path, RawQuery, State},
    http::StatusCode,
    response::Response,
};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, ModelTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use utoipa::ToSchema;

/// A trigger: the reference's shape, plus `enabled`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Trigger {
    pub slug: String,
    #[schema(required = true)]
    pub description: Option<String>,
    pub status: String,
    /// Whether it fires.
    pub enabled: bool,
    /// Its CQL2-JSON filter (`{}`: every event of its type).
    #[schema(value_type = Object)]
    pub cql2_filter: Value,
    /// Run parameters `{subworkflow: {tool: {input: value}}}`.
    #[schema(value_type = Object)]
    pub params_default: Value,
    /// `{"subworkflow.tool.input": "data.path"}`.
    #[schema(value_type = Object)]
    pub params_mapping: Value,
    /// Trigger type slug.
    pub trigger_type: String,
    #[schema(required = true)]
    pub trigger_type_name: Option<String>,
    pub pipeline_id: i64,
    #[schema(required = true)]
    pub pipeline_name: Option<String>,
    #[schema(required = true)]
    pub pipeline_version: Option<String>,
    /// Owner's username; absent without an owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Triggers with their type's name, pipeline and owner (three extra queries).
async fn triggers_of<C: ConnectionTrait>(
    db: &C,
    items: &[trigger::Model],
) -> AppResult<Vec<Trigger>> {
    let owners = svc::users_by_id(db, items.iter().filter_map(|t| t.owner_id)).await?;
    let types: HashMap<String, trigger_type::Model> = trigger_type::Entity::find()
        .filter(trigger_type::Column::Slug.is_in(items.iter().map(|t| t.trigger_type_id.clone())))
        .all(db)
        .await?
        .into_iter()
        .map(|t| (t.slug.clone(), t))
        .collect();
    let pipelines = svc::pipelines_by_id(db, items.iter().map(|t| t.pipeline_id)).await?;
    Ok(items
        .iter()
        .map(|t| {
            let pipeline = pipelines.get(&t.pipeline_id);
            Trigger {
                slug: t.slug.clone(),
                description: t.description.clone(),
                status: t.status.clone(),
                enabled: t.enabled,
                cql2_filter: t.cql2_filter.clone(),
                params_default: t.params_default.clone(),
                params_mapping: t.params_mapping.clone(),
                trigger_type: t.trigger_type_id.clone(),
                trigger_type_name: types.get(&t.trigger_type_id).map(|x| x.name.clone()),
                pipeline_id: t.pipeline_id,
                pipeline_name: pipeline.map(|p| p.name.clone()),
                pipeline_version: pipeline.and_then(|p| p.version.clone()),
                owner: t
                    .owner_id
                    .and_then(|id| owners.get(&id))
                    .map(|u| u.username.clone()),
            }
        })
        .collect())
}

/// An event a trigger fired for: the reference's TriggerEvent shape; the `pipeline_*` fields
/// and `user` are absent when it started no run.
#[derive(Debug, Serialize, ToSchema)]
pub struct TriggerEvent {
    pub id: i64,
    /// The CloudEvent's source.
    pub source: String,
    pub event_time: DateTime<Utc>,
    pub event_type: String,
    /// The delivery's headers, without credentials.
    #[schema(value_type = Option<Object>)]
    pub event_headers: Option<Value>,
    /// The event's data.
    pub event_body: Option<Value>,
    /// Trigger slug.
    pub trigger: String,
    #[schema(required = true)]
    pub trigger_type: Option<String>,
    #[schema(required = true)]
    pub trigger_type_name: Option<String>,
    /// The run it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_run_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_name: Option<String>,
    /// Present (maybe null) with `pipeline_name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub pipeline_version: Option<Option<String>>,
    /// Username of the run's starter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// Trigger events with their trigger's type and the run each started (five extra queries).
async fn trigger_events_of<C: ConnectionTrait>(
    db: &C,
    items: &[trigger_event::Model],
) -> AppResult<Vec<TriggerEvent>> {
    let triggers: HashMap<String, trigger::Model> = trigger::Entity::find()
        .filter(trigger::Column::Slug.is_in(items.iter().map(|e| e.trigger_id.clone())))
        .all(db)
        .await?
        .into_iter()
        .map(|t| (t.slug.clone(), t))
        .collect();
    let types: HashMap<String, trigger_type::Model> = trigger_type::Entity::find()
        .filter(
            trigger_type::Column::Slug.is_in(triggers.values().map(|t| t.trigger_type_id.clone())),
        )
        .all(db)
        .await?
        .into_iter()
        .map(|t| (t.slug.clone(), t))
        .collect();
    let run_ids: Vec<i64> = items.iter().filter_map(|e| e.pipeline_run_id).collect();
    let runs: HashMap<i64, pipeline_run::Model> = if run_ids.is_empty() {
        HashMap::new()
    } else {
        pipeline_run::Entity::find()
            .filter(pipeline_run::Column::Id.is_in(run_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect()
    };
    let pipelines = svc::pipelines_by_id(db, runs.values().map(|r| r.pipeline_id)).await?;
    let users = svc::users_by_id(db, runs.values().filter_map(|r| r.started_by_id)).await?;
    Ok(items
        .iter()
        .map(|e| {
            let ty = triggers
                .get(&e.trigger_id)
                .and_then(|t| types.get(&t.trigger_type_id));
            let run = e.pipeline_run_id.and_then(|id| runs.get(&id));
            let pipeline = run.and_then(|r| pipelines.get(&r.pipeline_id));
            TriggerEvent {
                id: e.id,
                source: e.source.clone(),
                event_time: e.event_time,
                event_type: e.event_type.clone(),
                event_headers: e.event_headers.clone(),
                event_body: e.event_body.clone(),
                trigger: e.trigger_id.clone(),
                trigger_type: ty.map(|t| t.slug.clone()),
                trigger_type_name: ty.map(|t| t.name.clone()),
                pipeline_run_id: run.map(|r| r.id),
                pipeline_id: run.map(|r| r.pipeline_id),
                pipeline_name: pipeline.map(|p| p.name.clone()),
                pipeline_version: pipeline.map(|p| p.version.clone()),
                user: run
                    .and_then(|r| r.started_by_id)
                    .and_then(|id| users.get(&id))
                    .map(|u| u.username.clone()),
            }
        })
        .collect())
}

/// The shapes of a list of `Run`, for the OpenAPI document.
type ListedRuns = crate::http::paging::Listed<Run>;

/// The shapes of a list of `TriggerEvent`, for the OpenAPI document.
type ListedTriggerEvents = crate::http::paging::Listed<TriggerEvent>;

/// Routes of this resource.
pub fn routes<R: Routes>(routes: R) -> R {
    routes
        .add(route!(list))
        .add(route!(create))
        .add(route!(one))
        .add(route!(replace))
        .add(route!(update))
        .add(route!(remove))
        .add(route!(events))
        .add(route!(runs))
        .add(route!(event))
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

async fn one_json(state: &AppState, t: &trigger::Model) -> AppResult<Trigger> {
    triggers_of(&state.db, std::slice::from_ref(t))
        .await?
        .pop()
        .ok_or_else(not_found)
}

/// `GET /api/triggers/`: the caller's triggers (staff: all).
#[utoipa::path(
    get,
    path = "/api/triggers/",
    tag = "triggers",
    operation_id = "triggers_list",
    summary = "The caller's triggers (staff: all)",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Triggers", body = Vec<Trigger>),
        (status = 401, description = "Missing or invalid credentials", body = ErrorDetail),
    )
)]
async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> AppResult<Json<Vec<Trigger>>> {
    let mut select = trigger::Entity::find().order_by_asc(trigger::Column::Slug);
    if !user.is_staff {
        select = select.filter(trigger::Column::OwnerId.eq(user.id));
    }
    let rows = select.all(&state.db).await?;
    Ok(Json(triggers_of(&state.db, &rows).await?))
}

/// `POST /api/triggers/`: a trigger owned by the caller (staff may assign another owner).
#[utoipa::path(
    post,
    path = "/api/triggers/",
    tag = "triggers",
    operation_id = "triggers_create",
    summary = "Create a trigger owned by the caller",
    security(("bearer" = [])),
    request_body = TriggerInput,
    responses(
        (status = 201, description = "Created", body = Trigger),
        (status = 400, description = "Field errors; or an unknown field, or a wrong type (`detail`)", body = FieldErrors),
        (status = 401, description = "Missing or invalid credentials", body = ErrorDetail),
        (status = 413, description = "Body too large", body = ErrorDetail),
        (status = 415, description = "Not JSON", body = ErrorDetail),
    )
)]
async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(input): JsonBody<TriggerInput>,
) -> AppResult<(StatusCode, Json<Trigger>)> {
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

/// `GET /api/triggers/{slug}/`: one trigger (owner or staff).
#[utoipa::path(
    get,
    path = "/api/triggers/{slug}/",
    tag = "triggers",
    operation_id = "triggers_read",
    summary = "One trigger (owner or staff)",
    security(("bearer" = [])),
    params(("slug" = String, Path, description = "Trigger slug")),
    responses(
        (status = 200, description = "The trigger", body = Trigger),
        (status = 401, description = "Missing or invalid credentials", body = ErrorDetail),
        (status = 404, description = "No such trigger visible to the caller", body = ErrorDetail),
    )
)]
async fn one(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(slug): Path<String>,
) -> AppResult<Json<Trigger>> {
    let t = visible(&state, &user, &slug).await?;
    Ok(Json(one_json(&state, &t).await?))
}

/// `PUT /api/triggers/{slug}/`: changes the fields given (as `PATCH` does).
#[utoipa::path(
    put,
    path = "/api/triggers/{slug}/",
    tag = "triggers",
    operation_id = "triggers_replace",
    summary = "Update a trigger (owner or staff); the fields given change",
    security(("bearer" = [])),
    params(("slug" = String, Path, description = "Trigger slug")),
    request_body = TriggerInput,
    responses(
        (status = 200, description = "Updated", body = Trigger),
        (status = 400, description = "Field errors; or an unknown field, or a wrong type (`detail`)", body = FieldErrors),
        (status = 401, description = "Missing or invalid credentials", body = ErrorDetail),
        (status = 404, description = "No such trigger visible to the caller", body = ErrorDetail),
        (status = 413, description = "Body too large", body = ErrorDetail),
        (status = 415, description = "Not JSON", body = ErrorDetail),
    )
)]
async fn replace(
    state: State<AppState>,
    user: CurrentUser,
    slug: Path<String>,
    input: JsonBody<TriggerInput>,
) -> AppResult<Json<Trigger>> {
    update(state, user, slug, input).await
}

/// `PATCH /api/triggers/{slug}/`: changes the fields given.
#[utoipa::path(
    patch,
    path = "/api/triggers/{slug}/",
    tag = "triggers",
    operation_id = "triggers_update",
    summary = "Update some fields of a trigger (owner or staff)",
    security(("bearer" = [])),
    params(("slug" = String, Path, description = "Trigger slug")),
    request_body = TriggerInput,
    responses(
        (status = 200, description = "Updated", body = Trigger),
        (status = 400, description = "Field errors; or an unknown field, or a wrong type (`detail`)", body = FieldErrors),
        (status = 401, description = "Missing or invalid credentials", body = ErrorDetail),
        (status = 404, description = "No such trigger visible to the caller", body = ErrorDetail),
        (status = 413, description = "Body too large", body = ErrorDetail),
        (status = 415, description = "Not JSON", body = ErrorDetail),
    )
)]
async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(slug): Path<String>,
    JsonBody(input): JsonBody<TriggerInput>,
) -> AppResult<Json<Trigger>> {
    let t = visible(&state, &user, &slug).await?;
    let am = svc::apply_input(&state.db, &state.config, &user, input, Some(&t)).await?;
    let saved = am.update(&state.db).await?;
    Ok(Json(one_json(&state, &saved).await?))
}

/// `DELETE /api/triggers/{slug}/`.
#[utoipa::path(
    delete,
    path = "/api/triggers/{slug}/",
    tag = "triggers",
    operation_id = "triggers_delete",
    summary = "Delete a trigger (owner or staff)",
    security(("bearer" = [])),
    params(("slug" = String, Path, description = "Trigger slug")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid credentials", body = ErrorDetail),
        (status = 404, description = "No such trigger visible to the caller", body = ErrorDetail),
    )
)]
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
) -> BoxFuture<'_, AppResult<Vec<(i64, TriggerEvent)>>> {
    Box::pin(async move {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let items = trigger_events_of(db, &rows).await?;
        Ok(ids.into_iter().zip(items).collect())
    })
}

/// `GET /api/triggers/{slug|_|-}/events/`: newest first; the whole list streamed, or pages
/// (see [`crate::http::paging`]).
#[utoipa::path(
    get,
    path = "/api/triggers/{slug}/events/",
    tag = "triggers",
    operation_id = "triggers_events",
    summary = "Events a trigger fired for, newest first (`_`, `-`: all the caller's)",
    security(("bearer" = [])),
    params(
        ("slug" = String, Path, description = "Trigger slug, or `_` / `-` for all"),
        PageParams,
    ),
    responses(
        (status = 200, description = "Trigger events: an array without paging parameters, a page with `limit`/`offset`, a keyset page with `cursor`", body = inline(ListedTriggerEvents)),
        (status = 400, description = "Malformed paging parameter", body = ErrorDetail),
        (status = 401, description = "Missing or invalid credentials", body = ErrorDetail),
        (status = 404, description = "No such trigger visible to the caller", body = ErrorDetail),
    )
)]
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
#[utoipa::path(
    get,
    path = "/api/triggers/{slug}/runs/",
    tag = "triggers",
    operation_id = "triggers_runs",
    summary = "Runs a trigger started, newest first (`_`, `-`: all the caller's triggers'; staff: all)",
    security(("bearer" = [])),
    params(
        ("slug" = String, Path, description = "Trigger slug, or `_` / `-` for all"),
        PageParams,
    ),
    responses(
        (status = 200, description = "Runs: an array without paging parameters, a page with `limit`/`offset`, a keyset page with `cursor`", body = inline(ListedRuns)),
        (status = 400, description = "Malformed paging parameter", body = ErrorDetail),
        (status = 401, description = "Missing or invalid credentials", body = ErrorDetail),
        (status = 404, description = "No such trigger visible to the caller", body = ErrorDetail),
    )
)]
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

/// `GET /api/triggers/{slug|_|-}/events/{id}/`: one trigger event.
#[utoipa::path(
    get,
    path = "/api/triggers/{slug}/events/{id}/",
    tag = "triggers",
    operation_id = "triggers_event",
    summary = "One trigger event",
    security(("bearer" = [])),
    params(
        ("slug" = String, Path, description = "Trigger slug, or `_` / `-` for all"),
        ("id" = String, Path, description = "Trigger event id"),
    ),
    responses(
        (status = 200, description = "The trigger event", body = TriggerEvent),
        (status = 401, description = "Missing or invalid credentials", body = ErrorDetail),
        (status = 404, description = "No such trigger event visible to the caller", body = ErrorDetail),
    )
)]
async fn event(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((slug, id)): Path<(String, String)>,
) -> AppResult<Json<TriggerEvent>> {
    let missing = || AppError::NotFound("No TriggerEvent matches the given query.".into());
    let id: i64 = id.parse().map_err(|_| missing())?;
    let row = events_select(&state, &user, &slug)
        .await?
        .filter(trigger_event::Column::Id.eq(id))
        .one(&state.db)
        .await?
        .ok_or_else(missing)?;
    trigger_events_of(&state.db, &[row])
        .await?
        .pop()
        .map(Json)
        .ok_or_else(missing)
}
