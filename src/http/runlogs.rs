//! A run's execution log: `GET /api/pipelines/{id|_|-}/runs/{run}/log/`, plain text.
//!
//! Access: the run's starter and staff (as reading the run). Local runs keep cwltool's log
//! (with the tools' own messages) in their working directory until its retention ends; the
//! answer is its last [`LOG_SERVE_MAX`] bytes. Runs on Kubernetes log to their pods, which the
//! 404 says how to read.

use crate::{
    error::{AppError, AppResult},
    http::auth::CurrentUser,
    http::routes::{Routes, route},
    http::runs::find_visible_run,
    local::{self, LOG_SERVE_MAX},
    runs::RunStatus,
    state::AppState,
};
use axum::{
    body::Body,
    extract::{Path, State},
    http::header,
    response::{IntoResponse, Response},
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Routes of this resource.
pub fn routes<R: Routes>(routes: R) -> R {
    routes.add(route!(read))
}

/// `GET /api/pipelines/{id|_|-}/runs/{run}/log/`: the run's log as text (its starter or staff).
#[utoipa::path(
    get,
    path = "/api/pipelines/{pipeline}/runs/{run}/log/",
    tag = "runs",
    operation_id = "runs_log",
    security(("bearer" = [])),
    params(("pipeline" = String, Path, description = "Pipeline id, or `_` / `-` for every pipeline"), ("run" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The log of a local run (cwltool and its tools), at most its last 4 MiB", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or invalid credentials", body = crate::http::openapi::ErrorDetail),
        (status = 404, description = "No such run visible to the caller, or no log kept for it (not executed, not started yet, on Kubernetes, or removed after its retention)", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn read(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((pipeline, run)): Path<(String, String)>,
) -> AppResult<Response> {
    let run = find_visible_run(&state.db, &user, &pipeline, &run).await?;
    if run.k8s_namespace.as_deref() != Some(local::NAMESPACE) {
        return Err(AppError::NotFound(
            match (&run.k8s_namespace, &run.k8s_job_name) {
                (Some(ns), Some(job)) => format!(
                    "This run executed on Kubernetes: its log is in its pods while the Job is kept (kubectl logs -n {ns} job/{job} --all-containers)."
                ),
                _ => "This run was not executed, so it has no log.".into(),
            },
        ));
    }
    let path = local::log_path(&state.config, run.id);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) if run.status == RunStatus::Starting => {
            return Err(AppError::NotFound(
                "This run has not started yet: it waits for a free slot of the local runner."
                    .into(),
            ));
        }
        Err(_) => {
            return Err(AppError::NotFound(
                "The log of this run is no longer kept (its working directory was removed after the retention period)."
                    .into(),
            ));
        }
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let mut head = Vec::new();
    if len > LOG_SERVE_MAX {
        file.seek(std::io::SeekFrom::Start(len - LOG_SERVE_MAX))
            .await
            .map_err(|e| AppError::Internal(anyhow::anyhow!("reading a run log: {e}")))?;
        head = format!("[... {} earlier bytes omitted ...]\n", len - LOG_SERVE_MAX).into_bytes();
    }
    // A log still being written is served up to its length now, without callback tokens (a
    // tool of a hostile repository may print its environment).
    let mut text = head;
    file.take(len.min(LOG_SERVE_MAX))
        .read_to_end(&mut text)
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("reading a run log: {e}")))?;
    let body = match crate::auth::run_token::redact(&String::from_utf8_lossy(&text)) {
        std::borrow::Cow::Owned(redacted) => Body::from(redacted),
        std::borrow::Cow::Borrowed(_) => Body::from(text),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}
