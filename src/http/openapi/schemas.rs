//! OpenAPI schemas of the request and response bodies. The handlers build their JSON with
//! [`crate::http::serialize`] (and parse requests field by field, to give DRF-style errors), so
//! these types only describe the documents; the unit tests of [`super`] check that each schema's
//! properties are exactly the keys the serialisers write.

use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The error body of every failure except validation errors.
#[derive(ToSchema)]
#[schema(example = json!({"detail": "Not found."}))]
pub struct ErrorDetail {
    /// Human-readable message.
    pub detail: String,
}

/// Validation errors, as Django REST framework sends them: field name (or
/// `non_field_errors`) -> messages.
#[derive(ToSchema)]
#[schema(example = json!({"name": ["This field is required."]}))]
pub struct FieldErrors(pub BTreeMap<String, Vec<String>>);

/// `POST /api/token/` body (JSON or `application/x-www-form-urlencoded`).
#[derive(ToSchema)]
pub struct TokenRequest {
    /// At most 150 characters.
    pub username: String,
    /// At most 4096 characters.
    pub password: String,
}

/// A new token pair.
#[derive(ToSchema)]
pub struct TokenPair {
    /// Refresh token (JWT, HS256, `token_type: refresh`).
    pub refresh: String,
    /// Access token (JWT, HS256, `token_type: access`): send it as `Authorization: Bearer`.
    pub access: String,
}

/// `POST /api/token/refresh/` body (JSON or form).
#[derive(ToSchema)]
pub struct RefreshRequest {
    /// A refresh token from `POST /api/token/`.
    pub refresh: String,
}

/// A new access token.
#[derive(ToSchema)]
pub struct AccessToken {
    /// Access token (JWT).
    pub access: String,
}

/// simplejwt's rejection of a refresh token.
#[derive(ToSchema)]
#[schema(example = json!({"detail": "Token is expired", "code": "token_not_valid"}))]
pub struct TokenNotValid {
    /// `Token is invalid`, `Token is expired` or `Token has wrong type`.
    pub detail: String,
    /// Always `token_not_valid`.
    pub code: String,
}

/// The API root: collection name -> absolute URL.
#[derive(ToSchema)]
#[schema(example = json!({"pipelines": "https://aq.example.org/api/pipelines/"}))]
pub struct ApiRoot(pub BTreeMap<String, String>);

/// A pipeline.
#[derive(ToSchema)]
pub struct Pipeline {
    pub id: i64,
    pub name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    /// Slugs of its tools (subworkflows), in order.
    pub tools: Vec<String>,
    /// `{subworkflow: {tool: {input: {"default": value}}}}`.
    pub default_inputs: Value,
    /// `{"pass": rule, "pass_with_comments": rule}` (see docs/verdicts.md).
    #[schema(required = true)]
    pub quality_rules: Option<Value>,
    /// Owner's user id; `null` for a public pipeline.
    #[schema(required = true)]
    pub owner: Option<i64>,
    /// Owner's username; absent for public pipelines.
    #[schema(required = false)]
    pub owner_name: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub created_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub edited_at: Option<String>,
    #[schema(required = true)]
    pub version: Option<String>,
}

/// Body of `POST`, `PUT` (`name` required) and `PATCH` (all optional) on pipelines. Read-only
/// fields (`id`, `owner_name`, `created_at`, ...) may be sent back and are ignored.
#[derive(ToSchema)]
pub struct PipelineWrite {
    /// At most 50 characters; required on `POST` and `PUT`.
    pub name: Option<String>,
    pub description: Option<String>,
    pub version: Option<String>,
    /// Tool slugs (at most 100, no repeats).
    pub tools: Option<Vec<String>>,
    /// `{subworkflow: {tool: {input: {"default": value}}}}` or null.
    pub default_inputs: Option<Value>,
    /// `{"pass": rule, "pass_with_comments": rule}` or null; each rule is parsed when saved
    /// (400 naming the problem).
    pub quality_rules: Option<Value>,
    /// Staff only (others may send their own id or the current value).
    pub owner: Option<i64>,
    /// Jinja CWL template; staff only.
    pub template: Option<String>,
}

/// A pipeline run.
#[derive(ToSchema)]
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
    pub status: String,
    #[schema(required = true)]
    pub status_message: Option<String>,
    /// Always null, as in the reference (which never sets it); see `started_by`.
    #[schema(required = true)]
    pub user: Option<String>,
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
    #[schema(required = false)]
    pub started_by: Option<String>,
    /// Id of the trigger event that started the run, if any.
    #[schema(required = true)]
    pub trigger_event: Option<i64>,
    pub job_reports_count: i64,
    /// Slug of the trigger that started it, if any.
    #[schema(required = true)]
    pub triggered_by: Option<String>,
}

/// Body of `POST .../runs/`.
#[derive(ToSchema)]
#[schema(example = json!({"parameters": {"clone_subworkflow": {"clone": {
    "repo_url": "https://github.com/org/repo", "repo_branch": "main"}}}}))]
pub struct RunCreate {
    /// `{subworkflow: {tool: {input: value}}}`, validated against the pipeline's inputs; absent
    /// or null keeps every default.
    pub parameters: Option<Value>,
}

/// A job report sent by a pipeline step.
#[derive(ToSchema)]
pub struct JobReport {
    pub id: i64,
    /// The tool's slug.
    pub name: String,
    pub instance: String,
    #[schema(required = true, format = DateTime)]
    pub created_at: Option<String>,
    /// The report document, verbatim.
    pub output: Value,
    /// The tool's counters as its digest step wrote them (`{}` when none was uploaded).
    pub digest: Value,
    /// Run id.
    pub run: i64,
}

/// The multipart upload of a job report (`curl -F report=@r.json -F digest=@digest.json`).
#[derive(ToSchema)]
pub struct ReportUpload {
    /// The report document (JSON).
    #[schema(format = Binary)]
    pub report: String,
    /// The digest (a JSON object; an empty file counts as `{}`).
    #[schema(format = Binary)]
    pub digest: String,
}

/// Staff's override of a run's verdict (`PATCH .../runs/{run}/`).
#[derive(ToSchema)]
#[schema(example = json!({"digest": {"digest_quality": "pass"}}))]
pub struct RunOverride {
    /// `{"digest_quality": <non-empty string, at most 50 characters>}`.
    pub digest: Value,
}

/// A tool (subworkflow) pipelines are made of.
#[derive(ToSchema)]
pub struct Tool {
    pub slug: String,
    pub name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    /// `{tool: {input: {"type", "label", "doc", "default"}}}`.
    pub user_params: Value,
    /// Tag ids.
    pub tags: Vec<i64>,
    /// Command-line tool slugs.
    pub tools: Vec<String>,
    pub version: String,
    pub status: String,
    pub available: bool,
}

/// A tag of tools.
#[derive(ToSchema)]
pub struct Tag {
    pub id: i64,
    pub name: String,
}

/// The caller.
#[derive(ToSchema)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub is_staff: bool,
    /// Same as `is_staff`.
    pub is_admin: bool,
    pub is_active: bool,
}

/// Paging parameters of every list that grows with use. Without any of them the whole list is
/// returned as an array (streamed, as the reference's frontend expects).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 1000 (larger values are clamped; 100 when only `offset` or `cursor` is
    /// given). Selects the `LimitOffsetPagination` shape `{count, next, previous, results}`.
    pub limit: Option<u64>,
    /// Rows to skip (with `limit`).
    pub offset: Option<u64>,
    /// Keyset paging: empty for the first page, then the `next` link's value. Pages
    /// `{next, previous: null, results}` that neither skip nor repeat rows while rows are
    /// added. Not together with `offset`.
    pub cursor: Option<String>,
}

/// Filters of the runs list (all optional, combined with AND).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunFilters {
    /// Runs of this pipeline id (with `_` / `-` in the path).
    pub pipeline: Option<i64>,
    /// One status or several, comma-separated (at most 10), e.g. `failed,killed`.
    pub status: Option<String>,
    /// Runs started at or after this time (RFC 3339).
    pub started_after: Option<String>,
    /// Runs started before this time (RFC 3339).
    pub started_before: Option<String>,
    /// Runs started by this trigger (its slug).
    pub trigger: Option<String>,
}

/// A page of runs (`?limit=&offset=`), as DRF's `LimitOffsetPagination`.
#[derive(ToSchema)]
pub struct RunPage {
    /// Number of runs matching the filters.
    pub count: u64,
    /// URL of the next page; null on the last.
    #[schema(required = true)]
    pub next: Option<String>,
    /// URL of the previous page; null on the first.
    #[schema(required = true)]
    pub previous: Option<String>,
    pub results: Vec<Run>,
}

/// A keyset page of runs (`?cursor=`).
#[derive(ToSchema)]
pub struct RunCursorPage {
    /// URL of the next page; null after the last row.
    #[schema(required = true)]
    pub next: Option<String>,
    /// Always null (keyset pages go forward).
    #[schema(required = true)]
    pub previous: Option<String>,
    pub results: Vec<Run>,
}

/// A page of any other growing list (job reports, trigger events, received events): the same
/// shapes as [`RunPage`] / [`RunCursorPage`] (`count` only with `limit`/`offset`), with that
/// list's items as `results`.
#[derive(ToSchema)]
pub struct Page {
    /// Number of rows matching the filters (`limit`/`offset` only).
    pub count: Option<u64>,
    #[schema(required = true)]
    pub next: Option<String>,
    #[schema(required = true)]
    pub previous: Option<String>,
    pub results: Vec<Value>,
}
