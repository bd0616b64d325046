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
    runs,
    state::AppState,
};
use axum::{
    Json, Router,
    extract::{Path, State},
    routing::post,
};
use sea_orm::EntityTrait;
use serde::Deserialize;
use serde_json::{Value, json};

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/pipelines/{pipeline}/runs/{run}/results",
        post(store_results),
    )
}

/// What the report container sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Results {
    #[serde(default)]
    output: Option<Value>,
    #[serde(default)]
    usage_report: Option<Value>,
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
async fn store_results(
    State(state): State<AppState>,
    RunToken(token): RunToken,
    Path((pipeline, run)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> AppResult<Json<Value>> {
    // Parsed from a `Value` because serde also reads a struct from a JSON array (`[]` would be
    // an empty report); only an object is a report.
    if !body.is_object() {
        return Err(AppError::field(
            "non_field_errors",
            "Invalid data. Expected a dictionary.",
        ));
    }
    let body: Results = serde_json::from_value(body)
        .map_err(|e| AppError::BadRequest(format!("JSON parse error - {e}")))?;
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
        return Ok(Json(
            json!({"id": run.id, "stored": false, "detail": detail}),
        ));
    }
    tracing::info!(run_id = run.id, "run results stored");
    Ok(Json(json!({"id": run.id, "stored": true})))
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
