//! Job reports: `/api/pipelines/{p}/runs/{r}/jobreports/` (list with `?name=&instance=`, and the
//! pipeline's callback) and `.../jobreports/{id}/` (read).
//!
//! Reading is for the run's starter or staff (404 otherwise). Creating is for the pipeline
//! itself only: the request must carry the run's callback token (`Authorization: Bearer
//! aqrun_...`, issued at launch, stored as a hash), and only while the run has not ended plus
//! `CALLBACK_GRACE_SECS`. The body, any JSON, is stored verbatim, within the run's quota
//! (`CALLBACK_MAX_REPORTS_PER_RUN` reports, `CALLBACK_MAX_REPORT_BYTES_PER_RUN` bytes).
//! `(run, name, instance)` is unique, enforced by the database.

use crate::{
    config::Config,
    db::{
        self,
        entities::{job_report, pipeline_run},
    },
    error::{AppError, AppResult},
    http::auth::{CurrentUser, RunToken},
    http::routes::{Routes, route},
    http::{
        extract::{body_rejection, is_json_content_type, parse_json},
        multipart,
        paging::{ListQuery, ListUrl, Listing},
        runs::{find_visible_run, run_not_found},
        serialize::{self, PipelineScope, iso},
    },
    quality,
    state::AppState,
    statuses,
};
use axum::{
    Json,
    body::Bytes,
    extract::{
        Path, Query, RawQuery, State,
        rejection::{BytesRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use chrono::Utc;
use futures::future::BoxFuture;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, Statement, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Longest report name (a slug, the column's size).
pub const MAX_NAME_LEN: usize = 50;
/// Longest report instance (the column's size).
pub const MAX_INSTANCE_LEN: usize = 200;

/// The shapes of a list of `JobReport`, for the OpenAPI document.
type ListedJobReports = crate::http::paging::Listed<JobReport>;

/// Routes of this resource.
pub fn routes<R: Routes>(routes: R) -> R {
    routes
        .add(route!(list))
        .add(route!(create))
        .add(route!(read))
}

/// A job report sent by a pipeline step.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobReport {
    pub id: i64,
    /// The tool's slug.
    pub name: String,
    pub instance: String,
    #[schema(required = true, format = DateTime)]
    pub created_at: Option<String>,
    /// The report document, verbatim.
    #[schema(value_type = ReportDocument)]
    pub output: Value,
    /// The tool's counters as its digest step wrote them (`{}` when none was uploaded).
    #[schema(value_type = Object)]
    pub digest: Value,
    /// Run id.
    pub run: i64,
}

impl From<&job_report::Model> for JobReport {
    fn from(j: &job_report::Model) -> Self {
        JobReport {
            id: j.id,
            name: j.name.clone(),
            instance: j.instance.clone(),
            created_at: j.created_at.as_ref().map(iso),
            output: j.output.clone(),
            digest: j.digest.clone(),
            run: j.run_id,
        }
    }
}

/// A tool's report: any JSON document (SARIF, a linter's JSON output, ...), stored verbatim.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReportDocument(Value);

/// The multipart upload of a job report (`curl -F report=@r.json -F digest=@digest.json`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReportUpload {
    /// The report document (JSON).
    #[schema(format = Binary)]
    report: String,
    /// The digest (a JSON object; an empty file counts as `{}`).
    #[schema(format = Binary)]
    digest: String,
}

/// `?name=&instance=`.
#[derive(Debug, Deserialize)]
struct ReportQuery {
    name: Option<String>,
    instance: Option<String>,
}

fn query_of(q: Result<Query<ReportQuery>, QueryRejection>) -> AppResult<ReportQuery> {
    q.map(|Query(q)| q)
        .map_err(|e| AppError::BadRequest(format!("Invalid query string: {}", e.body_text())))
}

fn serialise_reports(
    _db: &DatabaseConnection,
    rows: Vec<job_report::Model>,
) -> BoxFuture<'_, AppResult<Vec<(i64, JobReport)>>> {
    Box::pin(async move { Ok(rows.iter().map(|j| (j.id, JobReport::from(j))).collect()) })
}

/// `GET .../jobreports/?name=&instance=`: the run's reports (its starter or staff), oldest
/// first; the whole list streamed, or pages (see [`crate::http::paging`]).
#[utoipa::path(
    get,
    path = "/api/pipelines/{pipeline}/runs/{run}/jobreports/",
    tag = "jobreports",
    operation_id = "jobreports_list",
    security(("bearer" = [])),
    params(("pipeline" = String, Path, description = "Pipeline id, or `_` / `-` for every pipeline"), ("run" = String, Path, description = "Run id"), ("name" = Option<String>, Query, description = "Tool slug"), ("instance" = Option<String>, Query, description = "Instance (e.g. a file)"), crate::http::paging::PageParams),
    responses(
        (status = 200, description = "Job reports: an array without paging parameters, a page with `limit`/`offset`, a keyset page with `cursor`", body = inline(ListedJobReports)),
        (status = 400, description = "Malformed query string", body = crate::http::openapi::ErrorDetail),
        (status = 401, description = "Missing or invalid credentials", body = crate::http::openapi::ErrorDetail),
        (status = 404, description = "No such pipeline or run visible to the caller", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((pipeline, run)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    url: ListUrl,
) -> AppResult<Response> {
    let query = ListQuery::parse(raw.as_deref())?;
    let run = find_visible_run(&state.db, &user, &pipeline, &run).await?;
    let mut select = job_report::Entity::find().filter(job_report::Column::RunId.eq(run.id));
    if let Some(name) = query.get("name") {
        select = select.filter(job_report::Column::Name.eq(name));
    }
    if let Some(instance) = query.get("instance") {
        select = select.filter(job_report::Column::Instance.eq(instance));
    }
    Listing {
        select,
        id: job_report::Column::Id,
        descending: false,
        serialise: serialise_reports,
    }
    .respond(&state.db, &query, &url)
    .await
}

/// `GET .../jobreports/{id}/`: one report (the run's starter or staff).
#[utoipa::path(
    get,
    path = "/api/pipelines/{pipeline}/runs/{run}/jobreports/{id}/",
    tag = "jobreports",
    operation_id = "jobreports_read",
    security(("bearer" = [])),
    params(("pipeline" = String, Path, description = "Pipeline id, or `_` / `-` for every pipeline"), ("run" = String, Path, description = "Run id"), ("id" = String, Path, description = "Job report id")),
    responses(
        (status = 200, description = "The job report", body = JobReport),
        (status = 401, description = "Missing or invalid credentials", body = crate::http::openapi::ErrorDetail),
        (status = 404, description = "No such pipeline, run or report visible to the caller", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn read(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((pipeline, run, id)): Path<(String, String, String)>,
) -> AppResult<Json<JobReport>> {
    let run = find_visible_run(&state.db, &user, &pipeline, &run).await?;
    let id = serialize::parse_id(&id)?;
    let report = job_report::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .filter(|j| j.run_id == run.id)
        .ok_or_else(|| AppError::NotFound("No JobReport matches the given query.".into()))?;
    Ok(Json(JobReport::from(&report)))
}

/// Checks `name` (required slug) and `instance` (optional, bounded).
fn check_query(q: ReportQuery) -> AppResult<(String, String)> {
    let name = q.name.unwrap_or_default();
    if name.is_empty() {
        return Err(AppError::field(
            "name",
            "Tool 'name' is required as a query parameter.",
        ));
    }
    let slug = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !slug || name.len() > MAX_NAME_LEN {
        return Err(AppError::field(
            "name",
            format!(
                "Enter a valid slug of at most {MAX_NAME_LEN} letters, numbers, underscores or hyphens."
            ),
        ));
    }
    let instance = q.instance.unwrap_or_default();
    // The query is percent-decoded lossily: U+FFFD marks bytes that were not UTF-8, which would
    // be stored as a corrupted instance name.
    if instance.contains('\u{FFFD}') {
        return Err(AppError::field(
            "instance",
            "The instance must be percent-encoded UTF-8.",
        ));
    }
    if instance.chars().count() > MAX_INSTANCE_LEN {
        return Err(AppError::field(
            "instance",
            format!("Ensure this field has no more than {MAX_INSTANCE_LEN} characters."),
        ));
    }
    Ok((name, instance))
}

/// The report document and its digest. Pipeline steps post either the report alone with
/// `curl -d @file`, which says `application/x-www-form-urlencoded` unless told otherwise, so that
/// type and a missing one are read as JSON too (the digest is then `{}`), or a
/// `multipart/form-data` body with a `report` and a `digest` part (`curl -F`), as the
/// reference's upload step. Other types are 415.
async fn callback_body(headers: &HeaderMap, body: Bytes) -> AppResult<(Value, Value)> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(boundary) = multipart::boundary(content_type) {
        return multipart_body(body, &boundary?).await;
    }
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if is_json_content_type(content_type)
        || mime.is_empty()
        || mime.eq_ignore_ascii_case("application/x-www-form-urlencoded")
    {
        Ok((parse_json(&body)?, Value::Object(Default::default())))
    } else {
        Err(AppError::UnsupportedMediaType(format!(
            "Unsupported media type \"{content_type}\" in request; send application/json."
        )))
    }
}

/// The `report` and `digest` parts of a multipart upload; each is required, and each must be
/// JSON (an empty digest file counts as `{}`, as the reference's upload step writes then).
async fn multipart_body(body: Bytes, boundary: &str) -> AppResult<(Value, Value)> {
    let parts = multipart::parts(body, boundary).await?;
    let part = |name: &str| {
        parts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, content)| &content[..])
            .ok_or_else(|| {
                AppError::field(name, format!("The multipart body has no '{name}' part."))
            })
    };
    let json_part = |name: &str, content: &[u8]| {
        parse_json::<Value>(content).map_err(|e| AppError::field(name, e.to_string()))
    };
    let report = json_part("report", part("report")?)?;
    let digest_bytes = part("digest")?;
    let digest = if digest_bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        json_part("digest", digest_bytes)?
    };
    if !digest.is_object() {
        return Err(AppError::field(
            "digest",
            "The digest must be a JSON object ({\"tool\", \"counts\", \"created_at\", \"status\"}).",
        ));
    }
    Ok((report, digest))
}

/// `POST .../jobreports/?name=&instance=` with the run's callback token: stores the body.
#[utoipa::path(
    post,
    path = "/api/pipelines/{pipeline}/runs/{run}/jobreports/",
    tag = "callbacks",
    operation_id = "jobreports_create",
    security(("run_token" = [])),
    params(
        ("pipeline" = String, Path, description = "Pipeline id, or `_` / `-` for every pipeline"), ("run" = String, Path, description = "Run id"),
        ("name" = String, Query, description = "Tool slug (required)"),
        ("instance" = Option<String>, Query, description = "Instance, at most 200 characters"),
    ),
    request_body(
        description = "The report, any JSON (`curl -d` form and missing content types are read as JSON; the digest is then `{}`), or a multipart upload with a `report` part and a `digest` part (`curl -F report=@r.json -F digest=@digest.json`)",
        content(
            (ReportDocument = "application/json"),
            (ReportDocument = "application/x-www-form-urlencoded"),
            (ReportUpload = "multipart/form-data"),
        )
    ),
    responses(
        (status = 201, description = "Stored", body = JobReport),
        (status = 400, description = "Bad JSON, a missing or malformed multipart part, a digest that is not an object, missing or invalid `name`, or a duplicate (name, instance)", body = crate::http::openapi::FieldErrors),
        (status = 401, description = "Missing or malformed callback token", body = crate::http::openapi::ErrorDetail),
        (status = 403, description = "The token does not belong to this run, or its run ended longer than `CALLBACK_GRACE_SECS` ago", body = crate::http::openapi::ErrorDetail),
        (status = 404, description = "No such run in this pipeline", body = crate::http::openapi::ErrorDetail),
        (status = 413, description = "Body too large, or the run's reports would exceed `CALLBACK_MAX_REPORT_BYTES_PER_RUN`", body = crate::http::openapi::ErrorDetail),
        (status = 415, description = "Unsupported content type", body = crate::http::openapi::ErrorDetail),
        (status = 429, description = "The run posted `CALLBACK_MAX_REPORTS_PER_RUN` reports already", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn create(
    State(state): State<AppState>,
    RunToken(token): RunToken,
    Path((pipeline, run)): Path<(String, String)>,
    query: Result<Query<ReportQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<(StatusCode, Json<JobReport>)> {
    let (output, digest) = callback_body(&headers, body.map_err(body_rejection)?).await?;
    let scope = PipelineScope::parse(&pipeline)?;
    let run_id = serialize::parse_id(&run)?;
    let run = pipeline_run::Entity::find_by_id(run_id)
        .one(&state.db)
        .await?
        .filter(|r| scope.contains(r.pipeline_id))
        .ok_or_else(run_not_found)?;
    crate::runs::authorize_callback(&state.config, &run, &token)?;
    let (name, instance) = check_query(query_of(query)?)?;
    let size = (output.to_string().len() + digest.to_string().len()) as u64;
    let txn = state.db.begin().await?;
    check_quota(&txn, &state.config, run.id, size).await?;
    let report = job_report::ActiveModel {
        run_id: Set(run.id),
        name: Set(name.clone()),
        instance: Set(instance.clone()),
        created_at: Set(Some(Utc::now())),
        output: Set(output),
        digest: Set(digest),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(|e| {
        if db::is_unique_violation(&e) {
            AppError::BadRequest(format!(
                "A job report for '{name}/{instance}' already exists for this run."
            ))
        } else {
            e.into()
        }
    })?;
    // A report that comes after the run ended still counts.
    let queued = quality::report_after_end(&txn, &state.config, run).await?;
    txn.commit().await?;
    if queued {
        statuses::kick(&state.runs.notifier);
    }
    Ok((StatusCode::CREATED, Json(JobReport::from(&report))))
}

/// The run's report quota: at most `CALLBACK_MAX_REPORTS_PER_RUN` reports (429 beyond) and
/// `CALLBACK_MAX_REPORT_BYTES_PER_RUN` bytes of stored report and digest JSON (413 beyond).
/// The run's row is locked first, by a write that changes nothing (a row lock on PostgreSQL;
/// on SQLite the write lock, taken before anything is read, so a concurrent writer makes this
/// transaction wait instead of failing it later), so concurrent uploads of one run are counted
/// one after the other and cannot overshoot together.
async fn check_quota(
    txn: &DatabaseTransaction,
    config: &Config,
    run_id: i64,
    size: u64,
) -> AppResult<()> {
    pipeline_run::Entity::update_many()
        .col_expr(
            pipeline_run::Column::UpdatedAt,
            sea_orm::sea_query::Expr::col(pipeline_run::Column::UpdatedAt),
        )
        .filter(pipeline_run::Column::Id.eq(run_id))
        .exec(txn)
        .await?;
    let backend = txn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT COUNT(*) AS n, COALESCE(SUM(octet_length(output::text) + octet_length(digest::text)), 0)::bigint AS bytes FROM backend_jobreport WHERE run_id = $1"
        }
        _ => {
            "SELECT COUNT(*) AS n, COALESCE(SUM(length(CAST(output AS BLOB)) + length(CAST(digest AS BLOB))), 0) AS bytes FROM backend_jobreport WHERE run_id = ?"
        }
    };
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [run_id.into()],
        ))
        .await?;
    let (count, bytes) = match row {
        Some(row) => (
            row.try_get::<i64>("", "n")?,
            row.try_get::<i64>("", "bytes")?,
        ),
        None => (0, 0),
    };
    let max_count = u64::from(config.runs.callback_max_reports_per_run);
    if count.max(0) as u64 >= max_count {
        return Err(AppError::QuotaCount(format!(
            "This run already posted {count} job reports, the most one run may (CALLBACK_MAX_REPORTS_PER_RUN)."
        )));
    }
    let max_bytes = config.runs.callback_max_report_bytes_per_run;
    if (bytes.max(0) as u64).saturating_add(size) > max_bytes {
        return Err(AppError::QuotaBytes(format!(
            "This report ({size} bytes) would take the run's job reports past {max_bytes} bytes, the most one run may store (CALLBACK_MAX_REPORT_BYTES_PER_RUN); {bytes} bytes are stored."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: Option<&str>, instance: Option<&str>) -> ReportQuery {
        ReportQuery {
            name: name.map(String::from),
            instance: instance.map(String::from),
        }
    }

    #[tokio::test]
    async fn callback_bodies() {
        let with = async |ct: Option<&'static str>| {
            let mut h = HeaderMap::new();
            if let Some(ct) = ct {
                h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            }
            callback_body(&h, Bytes::from_static(br#"{"a":1}"#)).await
        };
        for ct in [
            Some("application/json"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            assert_eq!(
                with(ct).await.unwrap(),
                (serde_json::json!({"a": 1}), serde_json::json!({})),
                "{ct:?}"
            );
        }
        assert_eq!(with(Some("text/html")).await.unwrap_err().status(), 415);
    }

    #[test]
    fn query_rules() {
        assert_eq!(
            check_query(q(None, None)).unwrap_err().body(),
            serde_json::json!({"name": ["Tool 'name' is required as a query parameter."]})
        );
        assert!(check_query(q(Some("a b"), None)).is_err());
        assert!(check_query(q(Some(&"a".repeat(51)), None)).is_err());
        assert!(check_query(q(Some("ruff"), Some(&"i".repeat(201)))).is_err());
        assert!(check_query(q(Some("ruff"), Some("nb\u{FFFD}.ipynb"))).is_err());
        assert_eq!(
            check_query(q(Some("papermill"), Some("nb/a b.ipynb"))).unwrap(),
            ("papermill".into(), "nb/a b.ipynb".into())
        );
    }
}
