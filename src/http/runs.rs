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
        fields::{Field, FromJson, Invalid},
        openapi::{ErrorDetail, FieldErrors},
        paging::{ListQuery, ListUrl, Listing, PageParams},
        routes::{Routes, route},
        serialize::{self, PipelineScope, RunRow, iso},
    },
    quality::{self, MAX_MANUAL_LEN},
    runs::{self, RunRequest},
    state::AppState,
    statuses,
};
use axum::{
    Json,
    extract::{Path, RawQuery, State},
    http::StatusCode,
    response::Response,
};
use futures::future::BoxFuture;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Select,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

/// A pipeline run.
#[derive(Debug, Serialize, ToSchema)]
pub struct Run {
    pub id: i64,
    /// Pipeline id.
    pub pipeline: i64,
    /// Calrissian's usage report (`""` until the run reported).
    pub usage_report: Value,
    #[schema(format = DateTime)]
    pub start_time: String,
    #[schema(required = true, format = DateTime)]
    pub completion_time: Option<String>,
    /// `starting`, `pending` (recorded, not executed), `running`, `succeeded`, `failed`, `killed`.
    #[schema(value_type = String)]
    pub status: &'static str,
    #[schema(required = true)]
    pub status_message: Option<String>,
    /// Always null, as in the reference (which never sets it); see `started_by`.
    #[schema(required = true, value_type = Option<String>)]
    pub user: (),
    /// Flattened parameters: `subworkflow.tool.input` keys plus `pipeline_id` and `run_id`.
    pub inputs: Value,
    /// The CWL output document, once stored.
    #[schema(required = true)]
    pub output: Option<Value>,
    /// `""` until the run ended; then the six counters summed over its job reports (`issues`),
    /// the rules used (`quality_rules`), the verdict (`digest_quality`), `created_at`, and
    /// `manual` (`{digest_quality, time, user}`) once staff overrode the verdict.
    pub digest: Value,
    /// The computed verdict: `undefined` before the run ended, then `pass`,
    /// `pass_with_comments`, `fail`, `unknown` or `exception`.
    pub digest_quality: String,
    /// The CWL the run executed.
    #[schema(required = true)]
    pub executed_cwl: Option<String>,
    /// Username of the starter; absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// Id of the trigger event that started the run, if any.
    #[schema(required = true)]
    pub trigger_event: Option<i64>,
    pub job_reports_count: i64,
    /// Slug of the trigger that started it, if any.
    #[schema(required = true)]
    pub triggered_by: Option<String>,
}

impl Run {
    /// A run with what its JSON needs besides its row (looked up in batches by [`runs_of`], or
    /// read with it, [`RunRow`]).
    pub fn new(
        r: &pipeline_run::Model,
        started_by: Option<String>,
        job_reports_count: i64,
        trigger_event: Option<i64>,
    ) -> Self {
        Run {
            id: r.id,
            pipeline: r.pipeline_id,
            usage_report: r.usage_report.clone(),
            start_time: iso(&r.start_time),
            completion_time: r.completion_time.as_ref().map(iso),
            status: r.status.as_str(),
            status_message: r.status_message.clone(),
            user: (),
            inputs: r.inputs.clone().unwrap_or_else(|| json!({})),
            output: r.output.clone(),
            digest: r.digest.clone(),
            digest_quality: quality::digest_quality(&r.digest).to_string(),
            executed_cwl: r.executed_cwl.clone(),
            started_by,
            trigger_event,
            job_reports_count,
            triggered_by: r.triggered_by.clone(),
        }
    }
}

impl From<&RunRow> for Run {
    fn from(row: &RunRow) -> Self {
        Run::new(
            &row.run,
            row.started_by.clone(),
            row.job_reports_count,
            row.trigger_event,
        )
    }
}

/// Runs with their starters' usernames, report counts and trigger events (three extra
/// queries; for a page or one run, lists stream [`RunRow`]s).
pub async fn runs_of<C: ConnectionTrait>(
    db: &C,
    runs: &[pipeline_run::Model],
) -> AppResult<Vec<Run>> {
    let names = serialize::usernames(db, runs.iter().filter_map(|r| r.started_by_id)).await?;
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let counts = serialize::job_report_counts(db, &ids).await?;
    let events = serialize::trigger_events_of(db, &ids).await?;
    Ok(runs
        .iter()
        .map(|r| {
            Run::new(
                r,
                r.started_by_id.and_then(|id| names.get(&id)).cloned(),
                counts.get(&r.id).copied().unwrap_or(0),
                events.get(&r.id).copied(),
            )
        })
        .collect())
}

/// One run (see [`runs_of`]).
pub async fn run_of<C: ConnectionTrait>(db: &C, r: &pipeline_run::Model) -> AppResult<Run> {
    let mut list = runs_of(db, std::slice::from_ref(r)).await?;
    list.pop()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("run {} not serialised", r.id)))
}

/// Body of `POST .../runs/`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"parameters": {"clone_subworkflow": {"clone": {
    "repo_url": "https://github.com/org/repo", "repo_branch": "main"}}}}))]
pub struct RunCreate {
    /// `{subworkflow: {tool: {input: value}}}`, validated against the pipeline's inputs; absent
    /// or null keeps every default. Other fields are ignored.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
}

/// Staff's override of a run's verdict (`PATCH .../runs/{run}/`): `{"digest":
/// {"digest_quality": X}}`. Nothing else of a run is writable, so any other field is refused
/// (the 400 names it).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"digest": {"digest_quality": "pass"}}))]
pub struct RunOverride {
    #[serde(default)]
    #[schema(value_type = ManualVerdict, required = true)]
    digest: Field<ManualVerdict>,
    /// Every other field sent, refused.
    #[serde(flatten)]
    #[schema(ignore)]
    others: Map<String, Value>,
}

const INVALID_OVERRIDE: &str = "Invalid pipeline run update request";

impl RunOverride {
    /// The verdict, trimmed, or the 400 message naming what is wrong.
    fn verdict(self) -> Result<String, String> {
        if let Some(other) = self.others.keys().next() {
            return Err(format!(
                "{INVALID_OVERRIDE}: only digest.digest_quality can be changed, not '{other}'."
            ));
        }
        match self.digest {
            Field::Value(v) => Ok(v.digest_quality),
            Field::Invalid(invalid) => Err(invalid.message),
            Field::Absent | Field::Null => Err(format!(
                "{INVALID_OVERRIDE}: expected {{\"digest\": {{\"digest_quality\": ...}}}}."
            )),
        }
    }
}

/// The verdict staff record.
#[derive(Debug, ToSchema)]
pub struct ManualVerdict {
    /// Non-empty once trimmed, at most 50 characters.
    #[schema(min_length = 1, max_length = 50)]
    digest_quality: String,
}

impl FromJson for ManualVerdict {
    fn from_json(value: Value) -> Result<Self, Invalid> {
        let Value::Object(digest) = value else {
            return Err(format!(
                "{INVALID_OVERRIDE}: expected {{\"digest\": {{\"digest_quality\": ...}}}}."
            )
            .into());
        };
        if let Some(other) = digest.keys().find(|k| *k != "digest_quality") {
            return Err(format!(
                "{INVALID_OVERRIDE}: only digest.digest_quality can be changed, not 'digest.{other}'."
            )
            .into());
        }
        match digest
            .get("digest_quality")
            .and_then(Value::as_str)
            .map(str::trim)
        {
            Some(v) if !v.is_empty() && v.chars().count() <= MAX_MANUAL_LEN => Ok(ManualVerdict {
                digest_quality: v.to_string(),
            }),
            Some(v) if !v.is_empty() => Err(format!(
                "{INVALID_OVERRIDE}: digest_quality has more than {MAX_MANUAL_LEN} characters."
            )
            .into()),
            _ => Err(format!(
                "{INVALID_OVERRIDE}: digest.digest_quality must be a non-empty string."
            )
            .into()),
        }
    }
}

/// Filters of the runs list (all optional, combined with AND).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct RunFilters {
    /// Runs of this pipeline id (with `_` / `-` in the path).
    pipeline: Option<i64>,
    /// One status or several, comma-separated (at most 10), e.g. `failed,killed`.
    status: Option<String>,
    /// Runs started at or after this time (RFC 3339).
    started_after: Option<String>,
    /// Runs started before this time (RFC 3339).
    started_before: Option<String>,
    /// Runs started by this trigger (its slug).
    trigger: Option<String>,
}

/// The shapes of a list of `Run`, for the OpenAPI document.
type ListedRuns = crate::http::paging::Listed<Run>;

/// Routes of this resource.
pub fn routes<R: Routes>(routes: R) -> R {
    routes
        .add(route!(list))
        .add(route!(create))
        .add(route!(read))
        .add(route!(override_quality))
        .add(route!(cancel))
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
    rows: Vec<RunRow>,
) -> BoxFuture<'_, AppResult<Vec<(i64, Run)>>> {
    Box::pin(async move { Ok(rows.iter().map(|r| (r.run.id, Run::from(r))).collect()) })
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
        RunFilters,
        PageParams,
    ),
    responses(
        (status = 200, description = "Runs: an array (streamed) without paging parameters, a page with `limit`/`offset`, a keyset page with `cursor`", body = inline(ListedRuns)),
        (status = 400, description = "Malformed filter or paging parameter", body = ErrorDetail),
        (status = 401, description = "Missing or invalid credentials", body = ErrorDetail),
        (status = 404, description = "Malformed pipeline id", body = ErrorDetail),
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
    request_body = RunCreate,
    responses(
        (status = 201, description = "Created and launched (or recorded as `pending` when no cluster is configured)", body = Run),
        (status = 400, description = "Unknown subworkflow, tool or input, or a wrong type (named in the field errors); `_`/`-` as the pipeline", body = FieldErrors),
        (status = 401, description = "Missing or invalid credentials", body = ErrorDetail),
        (status = 404, description = "No such pipeline visible to the caller", body = ErrorDetail),
        (status = 413, description = "Body too large", body = ErrorDetail),
        (status = 415, description = "Not JSON", body = ErrorDetail),
        (status = 429, description = "The caller has as many runs executing (`RUNS_MAX_ACTIVE_PER_USER`) or waiting (`RUNS_MAX_QUEUED_PER_USER`) as allowed; retry after `Retry-After` seconds", body = ErrorDetail),
    )
)]
async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(pipeline): Path<String>,
    TraceParent(traceparent): TraceParent,
    JsonBody(body): JsonBody<RunCreate>,
) -> AppResult<(StatusCode, Json<Run>)> {
    let pipeline_id = match PipelineScope::parse(&pipeline)? {
        PipelineScope::One(id) => id,
        PipelineScope::All => {
            return Err(AppError::BadRequest(
                "A run needs one pipeline: use its id, not '_' or '-' (which only list runs)."
                    .into(),
            ));
        }
    };
    let parameters = body.parameters.unwrap_or_else(|| json!({}));
    let req = RunRequest {
        user,
        pipeline_id,
        parameters,
        triggered_by: None,
    };
    let run = runs::create_run(&state.runs, &req, traceparent).await?;
    Ok((StatusCode::CREATED, Json(run_of(&state.db, &run).await?)))
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
        (status = 200, description = "The run", body = Run),
        (status = 401, description = "Missing or invalid credentials", body = ErrorDetail),
        (status = 404, description = "No such pipeline or run visible to the caller", body = ErrorDetail),
    )
)]
async fn read(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((pipeline, run)): Path<(String, String)>,
) -> AppResult<Json<Run>> {
    let run = find_visible_run(&state.db, &user, &pipeline, &run).await?;
    let run = runs::reconcile(&state.runs, run).await;
    Ok(Json(run_of(&state.db, &run).await?))
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
    request_body = RunOverride,
    responses(
        (status = 200, description = "The run, with `digest.manual`", body = Run),
        (status = 400, description = "Not `{\"digest\": {\"digest_quality\": X}}` with X a non-empty string, or other fields", body = ErrorDetail),
        (status = 401, description = "Missing or invalid credentials", body = ErrorDetail),
        (status = 403, description = "Not staff", body = ErrorDetail),
        (status = 404, description = "No such pipeline or run", body = ErrorDetail),
        (status = 413, description = "Body too large", body = ErrorDetail),
        (status = 415, description = "Not JSON", body = ErrorDetail),
    )
)]
async fn override_quality(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((pipeline, run)): Path<(String, String)>,
    JsonBody(body): JsonBody<RunOverride>,
) -> AppResult<Json<Run>> {
    if !user.is_staff {
        return Err(AppError::Forbidden(
            "You must be an administrator to manually update digest quality.".into(),
        ));
    }
    let run = find_visible_run(&state.db, &user, &pipeline, &run).await?;
    let verdict = body.verdict().map_err(AppError::BadRequest)?;
    let txn = state.db.begin().await?;
    let run = quality::override_verdict(&txn, &state.config, run, &verdict, &user.username).await?;
    txn.commit().await?;
    statuses::kick(&state.runs.notifier);
    Ok(Json(run_of(&state.db, &run).await?))
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
        (status = 200, description = "The run, now `killed` (unchanged when it had finished)", body = Run),
        (status = 401, description = "Missing or invalid credentials", body = ErrorDetail),
        (status = 404, description = "No such pipeline or run visible to the caller", body = ErrorDetail),
    )
)]
async fn cancel(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((pipeline, run)): Path<(String, String)>,
) -> AppResult<Json<Run>> {
    let run = find_visible_run(&state.db, &user, &pipeline, &run).await?;
    let run = runs::cancel(&state.runs, run).await?;
    Ok(Json(run_of(&state.db, &run).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_requests() {
        let read = |v: Value| serde_json::from_value::<RunOverride>(v).unwrap().verdict();
        assert_eq!(
            read(json!({"digest": {"digest_quality": " pass "}})).unwrap(),
            "pass"
        );
        for (bad, message) in [
            (
                json!({}),
                "expected {\"digest\": {\"digest_quality\": ...}}.",
            ),
            (
                json!({"digest": "pass"}),
                "expected {\"digest\": {\"digest_quality\": ...}}.",
            ),
            (
                json!({"digest": null}),
                "expected {\"digest\": {\"digest_quality\": ...}}.",
            ),
            (
                json!({"digest": {"digest_quality": ""}}),
                "digest.digest_quality must be a non-empty string.",
            ),
            (
                json!({"digest": {"digest_quality": 1}}),
                "digest.digest_quality must be a non-empty string.",
            ),
            (
                json!({"digest": {"digest_quality": "x".repeat(51)}}),
                "digest_quality has more than 50 characters.",
            ),
            (
                json!({"digest": {"digest_quality": "pass"}, "status": "succeeded"}),
                "only digest.digest_quality can be changed, not 'status'.",
            ),
            (
                json!({"digest": {"digest_quality": "pass", "issues": {}}}),
                "only digest.digest_quality can be changed, not 'digest.issues'.",
            ),
        ] {
            assert_eq!(
                read(bad.clone()).unwrap_err(),
                format!("{INVALID_OVERRIDE}: {message}"),
                "{bad}"
            );
        }
    }

    #[test]
    fn parameters_default_to_empty() {
        let parse = |v: Value| serde_json::from_value::<RunCreate>(v).unwrap().parameters;
        assert_eq!(parse(json!({})), None);
        assert_eq!(parse(json!({"parameters": null})), None);
        assert_eq!(
            parse(json!({"parameters": {"a": {}}})),
            Some(json!({"a": {}}))
        );
    }
}
