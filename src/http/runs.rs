//! Runs: `/api/pipelines/{id|_|-}/runs/` (list, start) and `/api/pipelines/{id|_|-}/runs/{run}/`
//! (read), plus `.../runs/{run}/cancel/`.
//!
//! Access: a user sees, reads and cancels the runs they started; staff all of them. Starting a
//! run needs a pipeline the caller can see (404 otherwise; the reference let anyone run others'
//! private pipelines). A run's status, output and usage are written only by the execution side:
//! PUT and DELETE are 405, and PATCH only lets staff override the verdict
//! (`{"digest": {"digest_quality": X}}`). Reading a running run reconciles it with its Job first.

use crate::{
    db::entities::{pipeline_run, user},
    error::{AppError, AppResult},
    http::auth::CurrentUser,
    http::{
        extract::{JsonBody, TraceParent},
        paging::{ListQuery, ListUrl, Listing},
        serialize::{self, PipelineScope},
    },
    quality,
    runs::{self, RunRequest},
    state::AppState,
    statuses,
};
use axum::{
    Json, Router,
    extract::{Path, RawQuery, State},
    http::StatusCode,
    response::Response,
    routing::{get, post},
};
use futures::future::BoxFuture;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Select,
    TransactionTrait,
};
use serde_json::{Value, json};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/pipelines/{pipeline}/runs", get(list).post(create))
        .route(
            "/api/pipelines/{pipeline}/runs/{run}",
            get(read).patch(override_quality),
        )
        .route("/api/pipelines/{pipeline}/runs/{run}/cancel", post(cancel))
}

/// Error for a run that does not exist, is not in the pipeline, or is not the caller's.
pub fn run_not_found() -> AppError {
    AppError::NotFound("No PipelineRun matches the given query.".into())
}

/// The run `raw_run` of pipeline scope `raw_pipeline` if `user` may see it (404 otherwise).
pub async fn find_visible_run<C: ConnectionTrait>(
    db: &C,
    user: &user::Model,
    raw_pipeline: &str,
    raw_run: &str,
) -> AppResult<pipeline_run::Model> {
    let scope = PipelineScope::parse(raw_pipeline)?;
    let id = serialize::parse_id(raw_run)?;
    pipeline_run::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|r| scope.contains(r.pipeline_id))
        .filter(|r| user.owns_or_staff(r.started_by_id))
        .ok_or_else(run_not_found)
}

/// Longest `status` filter list.
const MAX_STATUSES: usize = 10;

/// The runs `user` may list under `scope`, filtered by the query string: `pipeline`, `status`
/// (comma-separated), `started_after` / `started_before` (RFC 3339, on `start_time`), `trigger`
/// (slug of the trigger that started the run). Public so the query-plan test checks the very
/// statement the handler runs.
pub fn list_select(
    user: &user::Model,
    scope: PipelineScope,
    q: &ListQuery,
) -> AppResult<Select<pipeline_run::Entity>> {
    let mut select = pipeline_run::Entity::find();
    if let PipelineScope::One(id) = scope {
        select = select.filter(pipeline_run::Column::PipelineId.eq(id));
    }
    if let Some(id) = q.id("pipeline")? {
        select = select.filter(pipeline_run::Column::PipelineId.eq(id));
    }
    if !user.is_staff {
        select = select.filter(pipeline_run::Column::StartedById.eq(user.id));
    }
    if let Some(statuses) = q.text("status", 200)? {
        let list: Vec<String> = statuses
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if list.len() > MAX_STATUSES {
            return Err(AppError::BadRequest(format!(
                "'status' takes at most {MAX_STATUSES} values."
            )));
        }
        select = select.filter(pipeline_run::Column::Status.is_in(list));
    }
    if let Some(after) = q.time("started_after")? {
        select = select.filter(pipeline_run::Column::StartTime.gte(after));
    }
    if let Some(before) = q.time("started_before")? {
        select = select.filter(pipeline_run::Column::StartTime.lt(before));
    }
    if let Some(slug) = q.text("trigger", 50)? {
        select = select.filter(pipeline_run::Column::TriggeredBy.eq(slug));
    }
    Ok(select)
}

/// Serialiser of runs list batches (public for the query-plan tests).
pub fn serialise_runs(
    _db: &DatabaseConnection,
    rows: Vec<serialize::RunRow>,
) -> BoxFuture<'_, AppResult<Vec<(i64, Value)>>> {
    Box::pin(async move { Ok(rows.iter().map(|r| (r.run.id, r.to_json())).collect()) })
}

/// `GET /api/pipelines/{id|_|-}/runs/`: the caller's runs (staff: all), oldest first; the
/// whole list streamed, or pages with `limit`/`offset` or `cursor` (see [`crate::http::paging`]).
#[utoipa::path(
    get,
    path = "/api/pipelines/{pipeline}/runs/",
    tag = "runs",
    operation_id = "runs_list",
    security(("bearer" = [])),
    params(
        ("pipeline" = String, Path, description = "Pipeline id, or `_` / `-` for every pipeline"),
        crate::http::openapi::schemas::RunFilters,
        crate::http::openapi::schemas::PageParams,
    ),
    responses(
        (status = 200, description = "Without paging parameters: every run, as an array (streamed). With `limit`/`offset`: a `RunPage`; with `cursor`: a `RunCursorPage`", body = Vec<crate::http::openapi::schemas::Run>),
        (status = 400, description = "Malformed filter or paging parameter", body = crate::http::openapi::schemas::ErrorDetail),
        (status = 401, description = "Missing or invalid credentials", body = crate::http::openapi::schemas::ErrorDetail),
        (status = 404, description = "Malformed pipeline id", body = crate::http::openapi::schemas::ErrorDetail),
    )
)]
async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(pipeline): Path<String>,
    RawQuery(raw): RawQuery,
    url: ListUrl,
) -> AppResult<Response> {
    let scope = PipelineScope::parse(&pipeline)?;
    let query = ListQuery::parse(raw.as_deref())?;
    let listing = Listing {
        select: serialize::with_run_extras(list_select(&user, scope, &query)?),
        id: pipeline_run::Column::Id,
        descending: false,
        serialise: serialise_runs,
    };
    listing.respond(&state.db, &query, &url).await
}

/// The `parameters` of a start request: the body must be an object; a missing or null
/// `parameters` means "no parameters" (every input keeps its default).
fn parameters_of(body: Value) -> AppResult<Value> {
    match body {
        Value::Object(mut m) => match m.remove("parameters") {
            None | Some(Value::Null) => Ok(json!({})),
            Some(p) => Ok(p),
        },
        _ => Err(AppError::field(
            "non_field_errors",
            "Invalid data. Expected an object {\"parameters\": {subworkflow: {tool: {input: value}}}}.",
        )),
    }
}

/// `POST /api/pipelines/{id}/runs/` `{"parameters": {...}}`: validates, stores and launches a
/// run; 201 with the run.
#[utoipa::path(
    post,
    path = "/api/pipelines/{pipeline}/runs/",
    tag = "runs",
    operation_id = "runs_create",
    security(("bearer" = [])),
    params(
        ("pipeline" = String, Path, description = "Pipeline id"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context, passed on to the run"),
    ),
    request_body = crate::http::openapi::schemas::RunCreate,
    responses(
        (status = 201, description = "Created and launched (or recorded as `pending` when no cluster is configured)", body = crate::http::openapi::schemas::Run),
        (status = 400, description = "Unknown subworkflow, tool or input, or a wrong type (named in the field errors); `_`/`-` as the pipeline", body = crate::http::openapi::schemas::FieldErrors),
        (status = 401, description = "Missing or invalid credentials", body = crate::http::openapi::schemas::ErrorDetail),
        (status = 404, description = "No such pipeline visible to the caller", body = crate::http::openapi::schemas::ErrorDetail),
        (status = 413, description = "Body too large", body = crate::http::openapi::schemas::ErrorDetail),
        (status = 415, description = "Not JSON", body = crate::http::openapi::schemas::ErrorDetail),
        (status = 429, description = "The caller has as many runs executing (`RUNS_MAX_ACTIVE_PER_USER`) or waiting (`RUNS_MAX_QUEUED_PER_USER`) as allowed; retry after `Retry-After` seconds", body = crate::http::openapi::schemas::ErrorDetail),
    )
)]
async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(pipeline): Path<String>,
    TraceParent(traceparent): TraceParent,
    JsonBody(body): JsonBody<Value>,
) -> AppResult<(StatusCode, Json<Value>)> {
    let pipeline_id = match PipelineScope::parse(&pipeline)? {
        PipelineScope::One(id) => id,
        PipelineScope::All => {
            return Err(AppError::BadRequest(
                "A run needs one pipeline: use its id, not '_' or '-' (which only list runs)."
                    .into(),
            ));
        }
    };
    let parameters = parameters_of(body)?;
    let req = RunRequest {
        user,
        pipeline_id,
        parameters,
        triggered_by: None,
    };
    let run = runs::create_run(&state.runs, &req, traceparent).await?;
    Ok((
        StatusCode::CREATED,
        Json(serialize::one_run(&state.db, &run).await?),
    ))
}

/// `GET /api/pipelines/{id|_|-}/runs/{run}/`: one run (its starter or staff), reconciled with
/// its Job first.
#[utoipa::path(
    get,
    path = "/api/pipelines/{pipeline}/runs/{run}/",
    tag = "runs",
    operation_id = "runs_read",
    security(("bearer" = [])),
    params(("pipeline" = String, Path, description = "Pipeline id, or `_` / `-` for every pipeline"), ("run" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run", body = crate::http::openapi::schemas::Run),
        (status = 401, description = "Missing or invalid credentials", body = crate::http::openapi::schemas::ErrorDetail),
        (status = 404, description = "No such pipeline or run visible to the caller", body = crate::http::openapi::schemas::ErrorDetail),
    )
)]
async fn read(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((pipeline, run)): Path<(String, String)>,
) -> AppResult<Json<Value>> {
    let run = find_visible_run(&state.db, &user, &pipeline, &run).await?;
    let run = runs::reconcile(&state.runs, run).await;
    Ok(Json(serialize::one_run(&state.db, &run).await?))
}

/// `PATCH /api/pipelines/{id|_|-}/runs/{run}/` `{"digest": {"digest_quality": X}}`: staff
/// record their verdict (`digest.manual`, with time and user; the computed verdict stays) and,
/// for a run started by a push or pull/merge request, its commit status follows.
#[utoipa::path(
    patch,
    path = "/api/pipelines/{pipeline}/runs/{run}/",
    tag = "runs",
    operation_id = "runs_override_quality",
    security(("bearer" = [])),
    params(("pipeline" = String, Path, description = "Pipeline id, or `_` / `-` for every pipeline"), ("run" = String, Path, description = "Run id")),
    request_body = crate::http::openapi::schemas::RunOverride,
    responses(
        (status = 200, description = "The run, with `digest.manual`", body = crate::http::openapi::schemas::Run),
        (status = 400, description = "Not `{\"digest\": {\"digest_quality\": X}}` with X a non-empty string, or other fields", body = crate::http::openapi::schemas::ErrorDetail),
        (status = 401, description = "Missing or invalid credentials", body = crate::http::openapi::schemas::ErrorDetail),
        (status = 403, description = "Not staff", body = crate::http::openapi::schemas::ErrorDetail),
        (status = 404, description = "No such pipeline or run", body = crate::http::openapi::schemas::ErrorDetail),
        (status = 413, description = "Body too large", body = crate::http::openapi::schemas::ErrorDetail),
        (status = 415, description = "Not JSON", body = crate::http::openapi::schemas::ErrorDetail),
    )
)]
async fn override_quality(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((pipeline, run)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> AppResult<Json<Value>> {
    if !user.is_staff {
        return Err(AppError::Forbidden(
            "You must be an administrator to manually update digest quality.".into(),
        ));
    }
    let run = find_visible_run(&state.db, &user, &pipeline, &run).await?;
    let verdict = quality::manual_verdict(&body).map_err(AppError::BadRequest)?;
    let txn = state.db.begin().await?;
    let run = quality::override_verdict(&txn, &state.config, run, &verdict, &user.username).await?;
    txn.commit().await?;
    statuses::kick(&state.runs.notifier);
    Ok(Json(serialize::one_run(&state.db, &run).await?))
}

/// `POST /api/pipelines/{id|_|-}/runs/{run}/cancel/`: stops the run (its starter or staff).
#[utoipa::path(
    post,
    path = "/api/pipelines/{pipeline}/runs/{run}/cancel/",
    tag = "runs",
    operation_id = "runs_cancel",
    security(("bearer" = [])),
    params(("pipeline" = String, Path, description = "Pipeline id, or `_` / `-` for every pipeline"), ("run" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run, now `killed` (unchanged when it had finished)", body = crate::http::openapi::schemas::Run),
        (status = 401, description = "Missing or invalid credentials", body = crate::http::openapi::schemas::ErrorDetail),
        (status = 404, description = "No such pipeline or run visible to the caller", body = crate::http::openapi::schemas::ErrorDetail),
    )
)]
async fn cancel(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((pipeline, run)): Path<(String, String)>,
) -> AppResult<Json<Value>> {
    let run = find_visible_run(&state.db, &user, &pipeline, &run).await?;
    let run = runs::cancel(&state.runs, run).await?;
    Ok(Json(serialize::one_run(&state.db, &run).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_default_to_empty() {
        assert_eq!(parameters_of(json!({})).unwrap(), json!({}));
        assert_eq!(
            parameters_of(json!({"parameters": null})).unwrap(),
            json!({})
        );
        assert_eq!(
            parameters_of(json!({"parameters": {"a": {}}})).unwrap(),
            json!({"a": {}})
        );
        assert_eq!(parameters_of(json!([1])).unwrap_err().status(), 400);
    }
}
