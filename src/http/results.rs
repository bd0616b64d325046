//! The results callback: `POST /api/pipelines/{id|_|-}/runs/{run}/results/`, called by the
//! `report` container of the run's own pod once Calrissian has succeeded, with the run's
//! callback token (`Authorization: Bearer aqrun_...`), accepted until `CALLBACK_GRACE_SECS`
//! after the run ended (see `runs::authorize_callback`). Body:
//! `{"output": <output.json or null>, "usage_report": <report.json or null>}`, bounded by
//! `MAX_BODY_BYTES`.
//!
//! It stores results only: the run's status follows its Job (events, reconcile on read), which
//! stays the single source of truth. Idempotent: the first delivery is stored, later ones
//! (curl retries, a replayed pod) are acknowledged and ignored.

use crate::{
    db::entities::pipeline_run,
    error::{AppError, AppResult},
    http::auth::RunToken,
    http::extract::JsonBody,
    http::openapi::{ErrorDetail, FieldErrors},
    http::routes::{Routes, route},
    runs,
    state::AppState,
};
use axum::{
    Json,
    extract::{Path, State},
};
use sea_orm::EntityTrait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Routes of this resource.
pub fn routes<R: Routes>(routes: R) -> R {
    routes.add(route!(store_results))
}

/// What the Job pod's launcher sends (any other field is refused).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"output": {"report": {"class": "File"}}, "usage_report": {"children": []}}))]
pub struct Results {
    /// The CWL output document (`output.json`), or null.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    output: Option<Value>,
    /// Calrissian's usage report (`report.json`), or null.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    usage_report: Option<Value>,
}

/// The answer: whether this delivery was stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stored {
    /// Run id.
    id: i64,
    /// `false` when results were stored before, or both fields are null.
    stored: bool,
    /// Why nothing was stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    detail: Option<&'static str>,
}

fn not_found() -> AppError {
    AppError::NotFound("No PipelineRun matches the given query.".into())
}

/// Parses `{id|_|-}` and the run id (anything else is 404, as for the other run routes).
fn ids(pipeline: &str, run: &str) -> AppResult<(Option<i64>, i64)> {
    let positive = |s: &str| s.parse::<i64>().ok().filter(|i| *i > 0);
    let pipeline = match pipeline {
        "_" | "-" => None,
        p => Some(positive(p).ok_or_else(not_found)?),
    };
    Ok((pipeline, positive(run).ok_or_else(not_found)?))
}

/// `POST .../results/`: stores the run's CWL output and Calrissian usage report.
#[utoipa::path(
    post,
    path = "/api/pipelines/{pipeline}/runs/{run}/results/",
    tag = "callbacks",
    operation_id = "runs_results",
    summary = "Store a run's CWL output and usage report (the first delivery wins)",
    security(("run_token" = [])),
    params(
        ("pipeline" = String, Path, description = "Pipeline id, or `_` / `-`"),
        ("run" = String, Path, description = "Run id"),
    ),
    request_body = Results,
    responses(
        (status = 200, description = "Stored, or acknowledged and ignored", body = Stored),
        (status = 400, description = "Not an object, or an unknown field", body = FieldErrors),
        (status = 401, description = "Missing or malformed callback token", body = ErrorDetail),
        (status = 403, description = "The token does not belong to this run, or its run ended longer than `CALLBACK_GRACE_SECS` ago", body = ErrorDetail),
        (status = 404, description = "No such run in this pipeline", body = ErrorDetail),
        (status = 413, description = "Body too large", body = ErrorDetail),
        (status = 415, description = "Not JSON", body = ErrorDetail),
    )
)]
async fn store_results(
    State(state): State<AppState>,
    RunToken(token): RunToken,
    Path((pipeline, run)): Path<(String, String)>,
    JsonBody(body): JsonBody<Results>,
) -> AppResult<Json<Stored>> {
    let (pipeline_id, run_id) = ids(&pipeline, &run)?;
    let run = pipeline_run::Entity::find_by_id(run_id)
        .one(&state.db)
        .await?
        .filter(|r| pipeline_id.is_none_or(|p| p == r.pipeline_id))
        .ok_or_else(not_found)?;
    runs::authorize_callback(&state.config, &run, &token)?;
    let results = runs::RunResults {
        output: body.output,
        usage_report: body.usage_report,
    };
    let (run, stored) = runs::store_results(&state.db, run, results).await?;
    if !stored {
        let detail = if runs::has_results(&run) {
            "Results were already stored for this run."
        } else {
            "Nothing to store: output and usage_report are both null."
        };
        return Ok(Json(Stored {
            id: run.id,
            stored: false,
            detail: Some(detail),
        }));
    }
    tracing::info!(run_id = run.id, "run results stored");
    Ok(Json(Stored {
        id: run.id,
        stored: true,
        detail: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_ids() {
        assert_eq!(ids("3", "9").unwrap(), (Some(3), 9));
        assert_eq!(ids("_", "9").unwrap(), (None, 9));
        assert!(ids("x", "9").is_err());
        assert!(ids("3", "0").is_err());
    }

    #[test]
    fn body_shape() {
        let r: Results = serde_json::from_str(r#"{"output": {"a": 1}}"#).unwrap();
        assert!(r.output.is_some() && r.usage_report.is_none());
        assert!(serde_json::from_str::<Results>(r#"{"outputs": 1}"#).is_err());
    }
}
