//! Run bookkeeping: the one code path that creates runs (REST and CloudEvents both call
//! [`insert_run`] + [`launch`], or [`create_run`]), and the transitions that follow a run's Job.
//!
//! Lifecycle (docs/ARCHITECTURE.md has the diagram):
//! `starting` -> `running` -> `succeeded` | `failed` | `killed`; `starting` -> `pending` when no
//! executor runs them; `starting` -> `failed` when the launch is rejected or the API server is
//! unreachable (an event redelivery resumes such a launch). A queued local run stays `starting`
//! (with a message) until its process starts.
//!
//! Every executor ends a run through [`finish`] (Kubernetes Job events and reconcile-on-read
//! through [`apply_observation`], the local runner with its output and usage).

pub mod launcher;
pub mod quota;

use crate::{
    auth::run_token,
    db::entities::{pipeline, pipeline_run, user},
    error::{AppError, AppResult},
    pipelines::{PipelineGraph, params, render, repos},
    quality,
    state::AppState,
    statuses,
};
use chrono::{SubsecRound, Utc};
use launcher::{JobObservation, LaunchError, LaunchOutcome, LaunchRequest};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter, TransactionTrait, sea_query::Expr,
};
use serde_json::Value;
use std::time::Duration;

/// Status of a run, stored as its lower-case name (the reference's values plus `pending`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Created; objects being created in the cluster.
    Starting,
    /// Recorded but not executed (no cluster configured).
    Pending,
    /// The Job exists.
    Running,
    Succeeded,
    Failed,
    /// Cancelled by a user.
    Killed,
}

impl RunStatus {
    /// The stored/serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Starting => "starting",
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Killed => "killed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "starting" => RunStatus::Starting,
            "pending" => RunStatus::Pending,
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "killed" => RunStatus::Killed,
            _ => return None,
        })
    }

    /// No further transition is expected.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Killed | RunStatus::Pending
        )
    }
}

/// Who asks for which run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub user: user::Model,
    pub pipeline_id: i64,
    /// The `parameters` object: `{subworkflow: {tool: {input: value}}}`.
    pub parameters: Value,
    pub triggered_by: Option<String>,
}

/// Whether `user` may see (and so run) `pipeline`: staff, owner, or public.
pub fn pipeline_visible(user: &user::Model, pipeline: &pipeline::Model) -> bool {
    user.is_staff || pipeline.owner_id.is_none() || pipeline.owner_id == Some(user.id)
}

/// Error for a pipeline that does not exist or is not visible (the two are indistinguishable).
pub fn pipeline_not_found() -> AppError {
    AppError::NotFound("No Pipeline matches the given query.".into())
}

/// Validates the request, renders the CWL and stores the run as `starting` (or `failed` when
/// the template cannot be rendered). Runs inside the caller's transaction when given one.
///
/// Every path that creates runs (REST, `pipeline.execute` events, triggers) comes here, so the
/// rules on user data hold on all of them: parameters are scalars of their declared types
/// ([`params::validate`]), the pipeline's stored defaults are checked again
/// ([`params::validate_stored_defaults`]), and every value the run will use is held to the
/// repository URL policy ([`repos::check_run`]).
pub async fn insert_run<C: ConnectionTrait>(
    db: &C,
    config: &crate::config::Config,
    callback_base: &str,
    req: &RunRequest,
) -> AppResult<pipeline_run::Model> {
    let pipeline = pipeline::Entity::find_by_id(req.pipeline_id)
        .one(db)
        .await?
        .filter(|p| pipeline_visible(&req.user, p))
        .ok_or_else(pipeline_not_found)?;
    let graph = PipelineGraph::load(db, pipeline).await?;
    params::validate(&graph, &req.parameters)?;
    params::validate_stored_defaults(&graph)?;
    repos::check_run(config, &graph, &req.parameters)?;
    let rendered = render::render(&graph);
    // Microseconds, as both databases keep them: the run's callback token is derived from it.
    let now = Utc::now().trunc_subsecs(6);
    let (status, message, cwl, completion) = match &rendered {
        Ok(cwl) => (RunStatus::Starting, None, Some(cwl.clone()), None),
        Err(e) => (RunStatus::Failed, Some(e.to_string()), None, Some(now)),
    };
    let run = pipeline_run::ActiveModel {
        pipeline_id: Set(req.pipeline_id),
        usage_report: Set(Value::String(String::new())),
        start_time: Set(now),
        completion_time: Set(completion),
        status: Set(status.as_str().into()),
        status_message: Set(message),
        inputs: Set(None),
        parameters: Set(Some(req.parameters.clone())),
        output: Set(None),
        executed_cwl: Set(cwl),
        started_by_id: Set(Some(req.user.id)),
        triggered_by: Set(req.triggered_by.clone()),
        callback_token_hash: Set(None),
        k8s_namespace: Set(None),
        k8s_job_name: Set(None),
        launched_at: Set(None),
        updated_at: Set(now),
        digest: Set(Value::String(String::new())),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let inputs = params::flatten(&req.parameters, req.pipeline_id, run.id, callback_base);
    let mut active = run.into_active_model();
    active.inputs = Set(Some(serde_json::to_value(inputs).unwrap_or_default()));
    Ok(active.update(db).await?)
}

/// Whether [`launch`] would (re)start this run: stored, rendered, and never launched.
pub fn needs_launch(run: &pipeline_run::Model) -> bool {
    run.launched_at.is_none()
        && run.executed_cwl.is_some()
        && matches!(
            RunStatus::parse(&run.status),
            Some(RunStatus::Starting | RunStatus::Failed)
        )
}

/// Hands a stored run to the launcher and records the outcome. Idempotent: a run that was
/// launched already is returned as it is. An unreachable cluster marks the run failed with
/// the reason and returns 503, so an event redelivery can resume the launch.
pub async fn launch(
    state: &AppState,
    run: pipeline_run::Model,
    traceparent: Option<String>,
) -> AppResult<pipeline_run::Model> {
    if !needs_launch(&run) {
        return Ok(run);
    }
    if let Some(why) = structured_input(&run) {
        return refuse_launch(state, run, why).await;
    }
    // The same token on every attempt: a resumed launch may meet pods of an earlier attempt.
    let token = run_token::derive(
        &state.run_token_key,
        run.id,
        run.start_time.timestamp_micros(),
    );
    let mut active = run.clone().into_active_model();
    active.callback_token_hash = Set(Some(run_token::hash(&token)));
    active.updated_at = Set(Utc::now());
    let run = active.update(&state.db).await?;
    let params = run
        .inputs
        .as_ref()
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let req = LaunchRequest {
        run_id: run.id,
        pipeline_id: run.pipeline_id,
        user_id: run.started_by_id,
        cwl: run.executed_cwl.clone().unwrap_or_default(),
        params,
        callback_token: token,
        callback_url: state.callback_base_url(),
        traceparent,
    };
    let started = std::time::Instant::now();
    let outcome = state.launcher.launch(&req).await;
    let elapsed = started.elapsed();
    let outcome_label = match &outcome {
        Ok(LaunchOutcome::Launched { .. }) => "launched",
        Ok(LaunchOutcome::Queued { .. }) => "queued",
        Ok(LaunchOutcome::NotExecuted { .. }) => "not_executed",
        Err(LaunchError::Rejected(_)) => "rejected",
        Err(LaunchError::Unavailable(_)) => "unavailable",
    };
    state
        .metrics
        .observe_launch(state.launcher.name(), outcome_label, elapsed);
    tracing::info!(
        run_id = run.id,
        launcher = state.launcher.name(),
        elapsed_ms = elapsed.as_millis() as u64,
        outcome = outcome_label,
        trace_id = req
            .traceparent
            .as_deref()
            .and_then(crate::http::extract::trace_id_of),
        "launch"
    );
    let now = Utc::now();
    let run_id = run.id;
    // Launched and queued runs go on; every other outcome ends the run here.
    let ended = !matches!(
        outcome,
        Ok(LaunchOutcome::Launched { .. } | LaunchOutcome::Queued { .. })
    );
    let mut active = run.into_active_model();
    active.updated_at = Set(now);
    let mut follow = false;
    let result = match outcome {
        Ok(LaunchOutcome::Launched {
            namespace,
            job_name,
        }) => {
            active.status = Set(RunStatus::Running.as_str().into());
            active.status_message = Set(None);
            active.k8s_namespace = Set(Some(namespace));
            active.k8s_job_name = Set(Some(job_name));
            active.launched_at = Set(Some(now));
            active.completion_time = Set(None);
            follow = true;
            Ok(())
        }
        Ok(LaunchOutcome::Queued {
            namespace,
            job_name,
            message,
        }) => {
            active.status = Set(RunStatus::Starting.as_str().into());
            active.status_message = Set(Some(message));
            active.k8s_namespace = Set(Some(namespace));
            active.k8s_job_name = Set(Some(job_name));
            active.launched_at = Set(Some(now));
            active.completion_time = Set(None);
            follow = true;
            Ok(())
        }
        Ok(LaunchOutcome::NotExecuted { message }) => {
            active.status = Set(RunStatus::Pending.as_str().into());
            active.status_message = Set(Some(message));
            active.launched_at = Set(Some(now));
            Ok(())
        }
        Err(LaunchError::Rejected(message)) => {
            active.status = Set(RunStatus::Failed.as_str().into());
            active.status_message = Set(Some(format!(
                "{}: {message}",
                state.launcher.rejection_prefix()
            )));
            active.launched_at = Set(Some(now));
            active.completion_time = Set(Some(now));
            Ok(())
        }
        Err(LaunchError::Unavailable(message)) => {
            active.status = Set(RunStatus::Failed.as_str().into());
            active.status_message = Set(Some(format!(
                "Launch failed, Kubernetes API unavailable: {message}. A redelivered event resumes the launch."
            )));
            active.completion_time = Set(Some(now));
            Err(AppError::Unavailable {
                detail: format!("The Kubernetes API is unavailable ({message}); retry later."),
                retry_after: 10,
            })
        }
    };
    // A launch that ended the run (rejected, unavailable, or nothing executes runs) concludes
    // it in the same transaction.
    let txn = state.db.begin().await?;
    let mut run = active.update(&txn).await?;
    if ended {
        run = quality::conclude(&txn, &state.config, run).await?;
    }
    txn.commit().await?;
    if ended {
        statuses::kick(state);
    }
    if follow {
        state.launcher.recorded(run_id);
    }
    result.map(|()| run)
}

/// A stored input that is not a scalar (or a list of scalars), or whose name starts with `$`:
/// possible only for a run stored before these rules and launched now (an event redelivery
/// resuming its launch). Such a run is refused rather than handed to the runner.
fn structured_input(run: &pipeline_run::Model) -> Option<String> {
    let scalar = |v: &Value| !matches!(v, Value::Object(_) | Value::Array(_));
    run.inputs
        .as_ref()
        .and_then(Value::as_object)?
        .iter()
        .find(|(k, v)| {
            k.starts_with('$')
                || match v {
                    Value::Array(items) => !items.iter().all(scalar),
                    other => !scalar(other),
                }
        })
        .map(|(k, _)| {
            format!(
                "Refused before launch: the stored input {k:?} is not a scalar value (user data never becomes CWL structure). Start a new run."
            )
        })
}

/// Ends a run that must not be launched as `failed` with `why`, concluded like any other.
async fn refuse_launch(
    state: &AppState,
    run: pipeline_run::Model,
    why: String,
) -> AppResult<pipeline_run::Model> {
    let now = Utc::now();
    let mut active = run.into_active_model();
    active.status = Set(RunStatus::Failed.as_str().into());
    active.status_message = Set(Some(why));
    active.launched_at = Set(Some(now));
    active.completion_time = Set(Some(now));
    active.updated_at = Set(now);
    let txn = state.db.begin().await?;
    let run = active.update(&txn).await?;
    let run = quality::conclude(&txn, &state.config, run).await?;
    txn.commit().await?;
    statuses::kick(state);
    Ok(run)
}

/// Validates, stores and launches a run: what `POST .../runs/` does, within the caller's
/// per-user limits ([`quota::admit`]: 429 beyond them).
pub async fn create_run(
    state: &AppState,
    req: &RunRequest,
    traceparent: Option<String>,
) -> AppResult<pipeline_run::Model> {
    // One transaction: the run row and its inputs (a second statement) are stored together,
    // so losing the database between them cannot leave a run without its data.
    let txn = state.db.begin().await?;
    quota::admit(&txn, state, &req.user, quota::Via::Rest).await?;
    let run = insert_run(&txn, &state.config, &state.callback_base_url(), req).await?;
    txn.commit().await?;
    launch(state, run, traceparent).await
}

/// Applies what the executor says about a run (its Kubernetes Job, the local runner). Terminal
/// runs are left alone, so stale or replayed observations cannot move a run backwards. A run
/// that ends here is concluded ([`quality::conclude`]: digest, verdict, commit status) in the
/// same transaction, and its status is delivered after commit.
pub async fn apply_observation(
    state: &AppState,
    run: pipeline_run::Model,
    obs: &JobObservation,
) -> AppResult<pipeline_run::Model> {
    let current = RunStatus::parse(&run.status);
    if current.is_some_and(RunStatus::is_terminal) || current == Some(obs.status) {
        return Ok(run);
    }
    let id = run.id;
    let from = run.status.clone();
    let mut active = run.into_active_model();
    active.status = Set(obs.status.as_str().into());
    active.status_message = Set(obs.message.clone());
    if obs.status.is_terminal() {
        active.completion_time = Set(Some(obs.completion_time.unwrap_or_else(Utc::now)));
    }
    active.updated_at = Set(Utc::now());
    let txn = state.db.begin().await?;
    let (run, ended) = match observe_in(&txn, &state.config, id, from, active, obs).await? {
        Some(moved) => moved,
        None => {
            txn.rollback().await?;
            return pipeline_run::Entity::find_by_id(id)
                .one(&state.db)
                .await?
                .ok_or_else(|| {
                    AppError::NotFound("No PipelineRun matches the given query.".into())
                });
        }
    };
    txn.commit().await?;
    if ended {
        statuses::kick(state);
    }
    Ok(run)
}

/// The stored part of [`apply_observation`], inside the caller's transaction: moves run `id`
/// out of status `from` (only one observer can: two replicas may apply the same event) and
/// concludes it when it ended. `None` when someone else moved it first.
async fn observe_in<C: ConnectionTrait>(
    txn: &C,
    config: &crate::config::Config,
    id: i64,
    from: String,
    active: pipeline_run::ActiveModel,
    obs: &JobObservation,
) -> AppResult<Option<(pipeline_run::Model, bool)>> {
    let moved = pipeline_run::Entity::update_many()
        .col_expr(
            pipeline_run::Column::Status,
            Expr::value(obs.status.as_str()),
        )
        .filter(pipeline_run::Column::Id.eq(id))
        .filter(pipeline_run::Column::Status.eq(from))
        .exec(txn)
        .await?;
    if moved.rows_affected != 1 {
        return Ok(None);
    }
    let mut run = active.update(txn).await?;
    let ended = obs.status.is_terminal();
    if ended {
        run = quality::conclude(txn, config, run).await?;
    }
    Ok(Some((run, ended)))
}

/// What an executor collected when a run ended.
#[derive(Debug, Clone, Default)]
pub struct RunResults {
    /// The CWL output object.
    pub output: Option<Value>,
    /// Resource usage (Calrissian's usage report, or the local runner's).
    pub usage_report: Option<Value>,
}

/// When the run ended, for its callback token's scope: its completion time, or its last
/// change for a terminal run without one (`pending`); `None` while it runs.
pub fn ended_at(run: &pipeline_run::Model) -> Option<chrono::DateTime<Utc>> {
    RunStatus::parse(&run.status)
        .is_some_and(RunStatus::is_terminal)
        .then(|| run.completion_time.unwrap_or(run.updated_at))
}

/// Checks a callback (job report or results) of `run` made with `token`: the token must be the
/// run's (403), and the run must not have ended longer than `CALLBACK_GRACE_SECS` ago (403: the
/// token is out of scope for good).
pub fn authorize_callback(
    config: &crate::config::Config,
    run: &pipeline_run::Model,
    token: &str,
) -> AppResult<()> {
    let authorised = run
        .callback_token_hash
        .as_deref()
        .is_some_and(|h| run_token::matches(token, h));
    if !authorised {
        return Err(AppError::Forbidden(
            "This callback token does not belong to this run.".into(),
        ));
    }
    let ended = ended_at(run);
    if !run_token::in_scope(ended, config.callback_grace_secs, Utc::now()) {
        return Err(AppError::Forbidden(format!(
            "This run ended at {}: its callback token expired {} s later (CALLBACK_GRACE_SECS).",
            ended.map(|e| e.to_rfc3339()).unwrap_or_default(),
            config.callback_grace_secs
        )));
    }
    Ok(())
}

/// Whether results were stored already (`usage_report` is `""` until then, as the reference).
pub fn has_results(run: &pipeline_run::Model) -> bool {
    run.output.is_some() || run.usage_report != Value::String(String::new())
}

/// Stores a run's results once: later deliveries (retries, a replayed pod) are ignored.
/// Returns the run and whether anything was stored.
pub async fn store_results<C: ConnectionTrait>(
    db: &C,
    run: pipeline_run::Model,
    results: RunResults,
) -> AppResult<(pipeline_run::Model, bool)> {
    let RunResults {
        output,
        usage_report,
    } = results;
    let (output, usage) = (
        output.filter(|v| !v.is_null()),
        usage_report.filter(|v| !v.is_null()),
    );
    if has_results(&run) || (output.is_none() && usage.is_none()) {
        return Ok((run, false));
    }
    let mut active = run.into_active_model();
    active.output = Set(output);
    if let Some(usage) = usage {
        active.usage_report = Set(usage);
    }
    active.updated_at = Set(Utc::now());
    Ok((active.update(db).await?, true))
}

/// A run ended (or moved) as an executor saw it: its results, its new status and its
/// conclusion (digest, verdict, commit status) stored together. The local runner's way in;
/// Kubernetes runs get their results through the callback and their status through
/// [`apply_observation`], which shares the stored part ([`observe_in`]).
pub async fn finish(
    state: &AppState,
    run_id: i64,
    obs: &JobObservation,
    results: RunResults,
) -> AppResult<Option<pipeline_run::Model>> {
    let txn = state.db.begin().await?;
    let Some(run) = pipeline_run::Entity::find_by_id(run_id).one(&txn).await? else {
        return Ok(None);
    };
    let current = RunStatus::parse(&run.status);
    if current.is_some_and(RunStatus::is_terminal) || current == Some(obs.status) {
        return Ok(Some(run));
    }
    let (run, _) = store_results(&txn, run, results).await?;
    let from = run.status.clone();
    let mut active = run.clone().into_active_model();
    active.status = Set(obs.status.as_str().into());
    active.status_message = Set(obs.message.clone());
    if obs.status.is_terminal() {
        active.completion_time = Set(Some(obs.completion_time.unwrap_or_else(Utc::now)));
    }
    active.updated_at = Set(Utc::now());
    let Some((run, ended)) = observe_in(&txn, &state.config, run_id, from, active, obs).await?
    else {
        txn.rollback().await?;
        return Ok(pipeline_run::Entity::find_by_id(run_id)
            .one(&state.db)
            .await?);
    };
    txn.commit().await?;
    if ended {
        statuses::kick(state);
    }
    Ok(Some(run))
}

/// Marks a queued run `running` when its execution starts. False when the run is no longer
/// `starting` (cancelled while it waited).
pub async fn mark_running(state: &AppState, run_id: i64) -> AppResult<bool> {
    let result = pipeline_run::Entity::update_many()
        .col_expr(
            pipeline_run::Column::Status,
            Expr::value(RunStatus::Running.as_str()),
        )
        .col_expr(
            pipeline_run::Column::StatusMessage,
            Expr::value(Option::<String>::None),
        )
        .col_expr(pipeline_run::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(pipeline_run::Column::Id.eq(run_id))
        .filter(pipeline_run::Column::Status.eq(RunStatus::Starting.as_str()))
        .exec(&state.db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Reconcile on read: a launched, non-terminal run checks its Job once, within a bounded time.
/// Failures are logged and the stored run is returned unchanged.
pub async fn reconcile(state: &AppState, run: pipeline_run::Model) -> pipeline_run::Model {
    let active =
        RunStatus::parse(&run.status) == Some(RunStatus::Running) && run.k8s_job_name.is_some();
    if !active {
        return run;
    }
    let budget = Duration::from_millis(state.config.kube_timeout_ms.min(2000));
    match tokio::time::timeout(budget, state.launcher.observe(run.id)).await {
        Ok(Ok(Some(obs))) => match apply_observation(state, run.clone(), &obs).await {
            Ok(updated) => updated,
            Err(e) => {
                tracing::warn!(run_id = run.id, error = %e, "could not store observed status");
                run
            }
        },
        Ok(Ok(None)) => run,
        Ok(Err(e)) => {
            tracing::warn!(run_id = run.id, error = %e, "reconcile on read failed");
            run
        }
        Err(_) => {
            tracing::warn!(run_id = run.id, "reconcile on read timed out");
            run
        }
    }
}

/// Cancels a run: deletes its Job (and pods) and marks it `killed`. Terminal runs are returned
/// unchanged.
pub async fn cancel(state: &AppState, run: pipeline_run::Model) -> AppResult<pipeline_run::Model> {
    if RunStatus::parse(&run.status).is_some_and(RunStatus::is_terminal) {
        return Ok(run);
    }
    if run.k8s_job_name.is_some() {
        state.launcher.cancel(run.id).await.map_err(|e| match e {
            LaunchError::Unavailable(m) => AppError::Unavailable {
                detail: format!("The Kubernetes API is unavailable ({m}); retry later."),
                retry_after: 10,
            },
            LaunchError::Rejected(m) => {
                AppError::Conflict(format!("Kubernetes refused to delete the run's Job: {m}"))
            }
        })?;
    }
    let now = Utc::now();
    let mut active = run.into_active_model();
    active.status = Set(RunStatus::Killed.as_str().into());
    active.status_message = Set(Some("Cancelled by a user.".into()));
    active.completion_time = Set(Some(now));
    active.updated_at = Set(now);
    let txn = state.db.begin().await?;
    let run = active.update(&txn).await?;
    let run = quality::conclude(&txn, &state.config, run).await?;
    txn.commit().await?;
    statuses::kick(state);
    Ok(run)
}
