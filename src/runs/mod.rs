//! Run bookkeeping: the one code path that creates runs (REST and CloudEvents both call
//! [`insert_run`] + [`launch`], or [`create_run`]), and what moves them afterwards. Every status
//! change goes through the state machine in [`transition`].
//!
//! Lifecycle (docs/ARCHITECTURE.md has the diagram):
//! `starting` -> `running` -> `succeeded` | `failed` | `killed`; `starting` -> `pending` when no
//! executor runs them; `starting` -> `failed` when the template does not render, the launch is
//! rejected or the API server is unreachable (an event redelivery resumes such a launch). A
//! queued local run stays `starting` (with a message) until its process starts.
//!
//! Every executor reports a run's progress through [`apply_observation`] (Kubernetes Job events
//! and reconcile-on-read) or [`finish`] (the local runner, with its output and usage); both are
//! the same move.

pub mod launcher;
pub mod quota;
pub mod service;
pub mod transition;

use crate::{
    auth::run_token,
    config::Config,
    db::entities::{pipeline, pipeline_run, trigger_event, user},
    error::{AppError, AppResult},
    pipelines::{PipelineGraph, params, render, repos},
    statuses,
};
use chrono::{SubsecRound, Utc};
use launcher::{JobObservation, LaunchError, LaunchOutcome, LaunchRequest};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DatabaseTransaction, EntityTrait,
    IntoActiveModel, TransactionTrait,
};
use serde_json::Value;
pub use service::{RunService, RunServiceInner};
use std::time::Duration;
use transition::{LaunchRecord, Patch, Transition};

pub use crate::db::entities::pipeline_run::RunStatus;

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
/// the template cannot be rendered, concluded in the same transaction), with `origin` (the
/// trigger event that started it, if any), inside the caller's transaction.
///
/// Every path that creates runs (REST, `pipeline.execute` events, triggers) comes here, so the
/// rules on user data hold on all of them: parameters are scalars of their declared types
/// ([`params::validate`]), the pipeline's stored defaults are checked again
/// ([`params::validate_stored_defaults`]), and every value the run will use is held to the
/// repository URL policy ([`repos::check_run`]).
pub async fn insert_run(
    txn: &DatabaseTransaction,
    config: &Config,
    callback_base: &str,
    req: &RunRequest,
    origin: Option<trigger_event::ActiveModel>,
) -> AppResult<pipeline_run::Model> {
    let pipeline = pipeline::Entity::find_by_id(req.pipeline_id)
        .one(txn)
        .await?
        .filter(|p| pipeline_visible(&req.user, p))
        .ok_or_else(pipeline_not_found)?;
    let graph = PipelineGraph::load(txn, pipeline).await?;
    params::validate(&graph, &req.parameters)?;
    params::validate_stored_defaults(&graph)?;
    repos::check_run(config, &graph, &req.parameters)?;
    let rendered = render::render(&graph);
    // Microseconds, as both databases keep them: the run's callback token is derived from it.
    let now = Utc::now().trunc_subsecs(6);
    let run = transition::create(
        txn,
        pipeline_run::ActiveModel {
            pipeline_id: Set(req.pipeline_id),
            usage_report: Set(Value::String(String::new())),
            start_time: Set(now),
            completion_time: Set(None),
            status_message: Set(None),
            inputs: Set(None),
            parameters: Set(Some(req.parameters.clone())),
            output: Set(None),
            executed_cwl: Set(rendered.as_ref().ok().cloned()),
            started_by_id: Set(Some(req.user.id)),
            triggered_by: Set(req.triggered_by.clone()),
            callback_token_hash: Set(None),
            k8s_namespace: Set(None),
            k8s_job_name: Set(None),
            launched_at: Set(None),
            updated_at: Set(now),
            digest: Set(Value::String(String::new())),
            ..Default::default()
        },
    )
    .await?;
    let inputs = params::flatten(&req.parameters, req.pipeline_id, run.id, callback_base);
    let mut active = run.into_active_model();
    active.inputs = Set(Some(serde_json::to_value(inputs).unwrap_or_default()));
    let run = active.update(txn).await?;
    if let Some(mut origin) = origin {
        origin.pipeline_run_id = Set(Some(run.id));
        origin.insert(txn).await?;
    }
    let Err(e) = rendered else {
        return Ok(run);
    };
    let patch = Patch {
        message: Some(e.to_string()),
        completion_time: Some(now),
        ..Default::default()
    };
    let failed = transition::transition(
        txn,
        config,
        run.id,
        RunStatus::Starting,
        RunStatus::Failed,
        patch,
    )
    .await?;
    Ok(failed.into_run())
}

/// Whether [`launch`] would (re)start this run: stored, rendered, and never launched.
pub fn needs_launch(run: &pipeline_run::Model) -> bool {
    run.launched_at.is_none()
        && run.executed_cwl.is_some()
        && matches!(run.status, RunStatus::Starting | RunStatus::Failed)
}

/// Hands a stored run to the launcher and records the outcome. Idempotent: a run that was
/// launched already is returned as it is. An unreachable cluster marks the run failed with
/// the reason and returns 503, so an event redelivery can resume the launch. A run cancelled
/// while it was being launched stays `killed`, and what the launch started is stopped.
pub async fn launch(
    service: &RunService,
    run: pipeline_run::Model,
    traceparent: Option<String>,
) -> AppResult<pipeline_run::Model> {
    if !needs_launch(&run) {
        return Ok(run);
    }
    if let Some(why) = structured_input(&run) {
        return refuse_launch(service, run, why).await;
    }
    // The same token on every attempt: a resumed launch may meet pods of an earlier attempt.
    let token = run_token::derive(
        &service.run_token_key,
        run.id,
        run.start_time.timestamp_micros(),
    );
    let mut active = run.clone().into_active_model();
    active.callback_token_hash = Set(Some(run_token::hash(&token)));
    active.updated_at = Set(Utc::now());
    let run = active.update(&service.db).await?;
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
        callback_url: service.callback_base_url(),
        traceparent,
    };
    let started = std::time::Instant::now();
    let outcome = service.launcher.launch(&req).await;
    let elapsed = started.elapsed();
    let outcome_label = match &outcome {
        Ok(LaunchOutcome::Launched { .. }) => "launched",
        Ok(LaunchOutcome::Queued { .. }) => "queued",
        Ok(LaunchOutcome::NotExecuted { .. }) => "not_executed",
        Err(LaunchError::Rejected(_)) => "rejected",
        Err(LaunchError::Unavailable(_)) => "unavailable",
    };
    service
        .metrics
        .observe_launch(service.launcher.name(), outcome_label, elapsed);
    tracing::info!(
        run_id = run.id,
        launcher = service.launcher.name(),
        elapsed_ms = elapsed.as_millis() as u64,
        outcome = outcome_label,
        trace_id = req
            .traceparent
            .as_deref()
            .and_then(crate::telemetry::trace_id_of),
        "launch"
    );
    let now = Utc::now();
    let launched = |job: Option<(String, String)>| LaunchRecord {
        launched_at: Some(now),
        job,
    };
    let (to, message, record, result) = match outcome {
        Ok(LaunchOutcome::Launched {
            namespace,
            job_name,
        }) => (
            RunStatus::Running,
            None,
            launched(Some((namespace, job_name))),
            Ok(()),
        ),
        Ok(LaunchOutcome::Queued {
            namespace,
            job_name,
            message,
        }) => (
            RunStatus::Starting,
            Some(message),
            launched(Some((namespace, job_name))),
            Ok(()),
        ),
        Ok(LaunchOutcome::NotExecuted { message }) => {
            (RunStatus::Pending, Some(message), launched(None), Ok(()))
        }
        Err(LaunchError::Rejected(message)) => (
            RunStatus::Failed,
            Some(format!(
                "{}: {message}",
                service.launcher.rejection_prefix()
            )),
            launched(None),
            Ok(()),
        ),
        Err(LaunchError::Unavailable(message)) => (
            RunStatus::Failed,
            Some(format!(
                "Launch failed, Kubernetes API unavailable: {message}. A redelivered event resumes the launch."
            )),
            // Not launched: a redelivered event resumes it.
            LaunchRecord::default(),
            Err(AppError::Unavailable {
                detail: format!("The Kubernetes API is unavailable ({message}); retry later."),
                retry_after: 10,
            }),
        ),
    };
    // Launched and queued runs go on with the executor; every other outcome ends the run here
    // (and concludes it, in the same transaction).
    let placed = matches!(to, RunStatus::Running | RunStatus::Starting);
    let patch = Patch {
        message,
        completion_time: Some(now),
        launch: Some(record),
        ..Default::default()
    };
    let run_id = run.id;
    match transition::apply(service, run_id, run.status, to, patch).await? {
        Transition::Moved { run, .. } => {
            if placed {
                service.launcher.recorded(run_id);
            }
            result.map(|()| run)
        }
        Transition::Lost(current) => {
            // Only a cancel moves a run while it is being launched (a second launch must first
            // claim it): the executor must not run it.
            if placed && current.status == RunStatus::Killed {
                if let Err(e) = service.launcher.cancel(run_id).await {
                    tracing::warn!(run_id, error = %e, "cannot stop a run cancelled during its launch");
                }
                service.launcher.recorded(run_id);
            }
            Ok(current)
        }
    }
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

/// Ends a run that must not be launched as `failed` with `why`, through the state machine
/// like any other end (concluded once).
async fn refuse_launch(
    service: &RunService,
    run: pipeline_run::Model,
    why: String,
) -> AppResult<pipeline_run::Model> {
    let now = Utc::now();
    let patch = Patch {
        message: Some(why),
        completion_time: Some(now),
        launch: Some(transition::LaunchRecord {
            launched_at: Some(now),
            job: None,
        }),
        ..Default::default()
    };
    Ok(
        transition::apply(service, run.id, run.status, RunStatus::Failed, patch)
            .await?
            .into_run(),
    )
}

/// Validates, stores and launches a run: what `POST .../runs/` does, within the caller's
/// per-user limits ([`quota::admit`]: 429 beyond them).
pub async fn create_run(
    service: &RunService,
    req: &RunRequest,
    traceparent: Option<String>,
) -> AppResult<pipeline_run::Model> {
    // One transaction: the run row and its inputs (a second statement) are stored together,
    // so losing the database between them cannot leave a run without its data.
    let txn = service.db.begin().await?;
    quota::admit(&txn, service, &req.user, quota::Via::Rest).await?;
    let run = insert_run(
        &txn,
        &service.config,
        &service.callback_base_url(),
        req,
        None,
    )
    .await?;
    txn.commit().await?;
    if run.status.is_terminal() {
        statuses::kick(&service.notifier);
    }
    launch(service, run, traceparent).await
}

/// Moves a run to the status its executor observed (its Kubernetes Job; reconcile on read),
/// with what the executor collected. Terminal runs are left alone, so stale, replayed or
/// late observations cannot move a run backwards; an observation that loses to another
/// writer is retried from where that writer left the run, as long as the run has not ended.
async fn observe(
    service: &RunService,
    mut run: pipeline_run::Model,
    obs: &JobObservation,
    results: RunResults,
) -> AppResult<pipeline_run::Model> {
    // Bounded: each lost attempt means the run moved, and a run moves a few times at most.
    for _ in 0..4 {
        if run.status.is_terminal() || run.status == obs.status {
            break;
        }
        let patch = Patch {
            message: obs.message.clone(),
            completion_time: obs.completion_time,
            launch: None,
            results: results.clone(),
        };
        match transition::apply(service, run.id, run.status, obs.status, patch).await? {
            Transition::Moved { run, .. } => return Ok(run),
            Transition::Lost(current) => run = current,
        }
    }
    Ok(run)
}

/// Applies what the executor says about a run (its Kubernetes Job, read or reported by an
/// event). A run that ends here is concluded ([`crate::quality::conclude`]: digest, verdict,
/// commit status) in the same transaction, and its status is delivered after commit.
pub async fn apply_observation(
    service: &RunService,
    run: pipeline_run::Model,
    obs: &JobObservation,
) -> AppResult<pipeline_run::Model> {
    observe(service, run, obs, RunResults::default()).await
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
    run.status
        .is_terminal()
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
    if !run_token::in_scope(ended, config.runs.callback_grace_secs, Utc::now()) {
        return Err(AppError::Forbidden(format!(
            "This run ended at {}: its callback token expired {} s later (CALLBACK_GRACE_SECS).",
            ended.map(|e| e.to_rfc3339()).unwrap_or_default(),
            config.runs.callback_grace_secs
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
/// conclusion (digest, verdict, commit status) stored together. The local runner's way in
/// (Kubernetes runs get their results through the callback); the same move as
/// [`apply_observation`]. `None` when the run does not exist.
pub async fn finish(
    service: &RunService,
    run_id: i64,
    obs: &JobObservation,
    results: RunResults,
) -> AppResult<Option<pipeline_run::Model>> {
    let Some(run) = pipeline_run::Entity::find_by_id(run_id)
        .one(&service.db)
        .await?
    else {
        return Ok(None);
    };
    observe(service, run, obs, results).await.map(Some)
}

/// Marks a queued run `running` when its execution starts. False when the run is no longer
/// `starting` (cancelled while it waited).
pub async fn mark_running(service: &RunService, run_id: i64) -> AppResult<bool> {
    let moved = transition::apply(
        service,
        run_id,
        RunStatus::Starting,
        RunStatus::Running,
        Patch::default(),
    )
    .await?;
    Ok(matches!(moved, Transition::Moved { .. }))
}

/// Reconcile on read: a launched, non-terminal run checks its Job once, within a bounded time.
/// Failures are logged and the stored run is returned unchanged.
pub async fn reconcile(service: &RunService, run: pipeline_run::Model) -> pipeline_run::Model {
    if run.status != RunStatus::Running || run.k8s_job_name.is_none() {
        return run;
    }
    let budget = service
        .config
        .kubernetes
        .kube_timeout
        .min(Duration::from_secs(2));
    match tokio::time::timeout(budget, service.launcher.observe(run.id)).await {
        Ok(Ok(Some(obs))) => match apply_observation(service, run.clone(), &obs).await {
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

/// Cancels a run: marks it `killed`, then has the executor delete its Job (and pods) or stop
/// its process. In that order, an end the executor reports meanwhile (a Job `Complete`, the
/// delete the cancel itself causes) loses to `killed`, or wins before it and the cancel
/// changes nothing: the run ends once. Runs that ended otherwise are returned unchanged; a
/// killed run whose Job could not be deleted (503) is asked again by the next cancel.
pub async fn cancel(
    service: &RunService,
    run: pipeline_run::Model,
) -> AppResult<pipeline_run::Model> {
    let mut run = run;
    // Bounded: a lost attempt means the run moved (`starting` -> `running`, or it ended).
    for _ in 0..4 {
        if run.status.is_terminal() {
            break;
        }
        let patch = Patch {
            message: Some("Cancelled by a user.".into()),
            ..Default::default()
        };
        match transition::apply(service, run.id, run.status, RunStatus::Killed, patch).await? {
            Transition::Moved { run: killed, .. } => {
                run = killed;
                break;
            }
            Transition::Lost(current) => run = current,
        }
    }
    if run.status == RunStatus::Killed && run.k8s_job_name.is_some() {
        service.launcher.cancel(run.id).await.map_err(|e| match e {
            LaunchError::Unavailable(m) => AppError::Unavailable {
                detail: format!(
                    "The run is cancelled, but the Kubernetes API is unavailable to delete its Job ({m}); cancel again to retry."
                ),
                retry_after: 10,
            },
            LaunchError::Rejected(m) => AppError::Conflict(format!(
                "The run is cancelled, but Kubernetes refused to delete its Job: {m}"
            )),
        })?;
    }
    Ok(run)
}
