//! What happens to a decoded event: health probes, `pipeline.execute`, Job status events from an
//! ApiServerSource, and trigger matching, with exactly-once run creation.
//!
//! Exactly once: `(source, id)` is unique in `aq_received_event`. The event row and its runs are
//! inserted in one transaction and committed before any launch; a concurrent or later duplicate
//! fails that insert (PostgreSQL makes the second INSERT wait for the first transaction), reads
//! the stored event and repeats its outcome with the same run ids. Runs that were stored but
//! never launched (the first delivery died, or the Kubernetes API was down) are launched by the
//! redelivery. Within one process deliveries of the same event are also serialised by a lock,
//! and across replicas a run is claimed with a conditional update before it is relaunched, so
//! one run is never launched twice at once.

use super::{
    cql2::{self, Context},
    decode::IncomingEvent,
    reply::{Reply, ReplyKind, Runs},
    triggers,
};
use crate::{
    config::Config,
    db::{
        self,
        entities::{pipeline_run, received_event, trigger, trigger_event, user},
    },
    error::{AppError, AppResult},
    runs::{self, RunRequest, quota},
    state::AppState,
    statuses,
    telemetry::{trace_id_of, valid_traceparent},
};
use chrono::{Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait,
    IntoActiveModel, QueryFilter, TransactionTrait, sea_query::Expr,
};
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
};

/// Event types that ask for a pipeline run (the plural is what the chart's Trigger filters
/// on; the singular is what the reference's documentation used).
pub const EXECUTE_TYPES: [&str; 2] = [
    "org.eoepca.application-quality.events.pipeline.execute",
    "org.eoepca.application-quality.event.pipeline.execute",
];

/// Outcomes stored in `aq_received_event.outcome`.
pub mod outcome {
    pub const ACCEPTED: &str = "accepted";
    pub const IGNORED: &str = "ignored";
    pub const REJECTED: &str = "rejected";
}

/// Whether the type is a health probe.
pub fn is_health(ty: &str) -> bool {
    ty.ends_with(".probes.health")
}

/// Handles one event and returns the reply (or an error with its status). The event's trace
/// context is settled first (see [`event_traceparent`]) and recorded on the request span; the
/// outcome is counted in the metrics.
pub async fn handle(state: &AppState, mut ev: IncomingEvent) -> AppResult<Reply> {
    ev.traceparent = event_traceparent(&ev);
    if let Some(id) = ev.traceparent.as_deref().and_then(trace_id_of) {
        tracing::Span::current().record("trace_id", id);
    }
    let family = type_family(&ev.ty);
    let result = handle_event(state, ev).await;
    state
        .runs
        .metrics
        .record_event(family, outcome_label(&result));
    result
}

/// The trace context handed to the launch: the HTTP `traceparent` header (the delivery's own
/// trace, which Knative's broker continues), else the CloudEvents distributed-tracing extension
/// attribute `traceparent` (`ce-traceparent` in binary mode). Malformed values are ignored.
pub fn event_traceparent(ev: &IncomingEvent) -> Option<String> {
    ev.traceparent
        .as_deref()
        .and_then(valid_traceparent)
        .or_else(|| {
            ev.attributes
                .get("traceparent")
                .and_then(Value::as_str)
                .and_then(valid_traceparent)
        })
}

/// The metrics label of an event type (a fixed set, whatever senders send).
pub fn type_family(ty: &str) -> &'static str {
    if is_health(ty) {
        "health"
    } else if statuses::is_wakeup(ty) {
        "wakeup"
    } else if EXECUTE_TYPES.contains(&ty) {
        "execute"
    } else if crate::k8s::job_events::is_job_event_type(ty) {
        "job"
    } else {
        "trigger"
    }
}

/// The metrics label of a dispatch result: the reply kind, `throttled` for a 429 (a per-user
/// limit; retried by the sender), `rejected` for another 4xx answer, `error` for a 5xx one.
fn outcome_label(result: &AppResult<Reply>) -> &'static str {
    match result {
        Ok(reply) => reply.kind.as_str(),
        Err(AppError::TooManyRequests { .. }) => "throttled",
        Err(e) if e.status().is_client_error() => "rejected",
        Err(_) => "error",
    }
}

async fn handle_event(state: &AppState, ev: IncomingEvent) -> AppResult<Reply> {
    if is_health(&ev.ty) {
        return Ok(Reply::new(ReplyKind::Ok, &ev.id, "Healthy."));
    }
    if statuses::is_wakeup(&ev.ty) {
        // Awaited, not spawned: the PingSource's request keeps a scaled-to-zero instance up
        // until the due statuses are out.
        // Retention too: with no traffic the opportunistic passes never come.
        let (r, retention) = tokio::join!(
            statuses::deliver_now(&state.runs.notifier),
            crate::maintenance::run_now(&state.db, &state.config, &state.maintenance)
        );
        let r = r?;
        let retention = match retention {
            Some(Ok(done)) => format!(
                " Retention: {} events, {} runs, {} job reports, {} signed-out sessions deleted.",
                done.events, done.runs, done.job_reports, done.sessions
            ),
            Some(Err(_)) => " Retention: the pass failed (logged).".into(),
            None => " Retention: a pass is under way.".into(),
        };
        return Ok(Reply::new(
            ReplyKind::Ok,
            &ev.id,
            format!(
                "Commit statuses: {} delivered, {} to retry, {} given up.{retention}",
                r.delivered, r.retried, r.failed
            ),
        ));
    }
    if crate::k8s::job_events::is_job_event_type(&ev.ty) {
        let data = ev.data.clone().unwrap_or(Value::Null);
        return Ok(
            match crate::k8s::job_events::handle(&state.runs, &ev.ty, &data).await? {
                Some(run_id) => {
                    let mut r = Reply::new(ReplyKind::Ok, &ev.id, "Run status updated.");
                    r.runs = Runs::One(run_id);
                    r
                }
                None => Reply::new(ReplyKind::Ignored, &ev.id, "Not a Job of ours."),
            },
        );
    }
    // Deliveries of the same event wait for each other in this process, so a duplicate sees
    // the first one's committed and launched result instead of racing it.
    let lock = event_lock(state, &ev.source, &ev.id);
    let _guard = lock.lock().await;
    if let Some(stored) = find_stored(state, &ev).await? {
        return replay(state, &ev, stored).await;
    }
    let plan = if EXECUTE_TYPES.contains(&ev.ty.as_str()) {
        match plan_execute(state, &ev).await {
            Ok(p) => p,
            Err(e) => return reject(state, &ev, e).await,
        }
    } else {
        plan_triggers(state, &ev).await?
    };
    if plan.runs.is_empty() {
        return record_without_runs(state, &ev, plan).await;
    }
    execute_plan(state, &ev, plan).await
}

/// Runs an event should create.
struct Plan {
    /// Whether this is a direct execution (`run_id` in the reply) or trigger runs (`run_ids`).
    direct: bool,
    runs: Vec<PlannedRun>,
    /// Triggers that matched but cannot run, with the reason (recorded, not fatal).
    skipped: Vec<(trigger::Model, String)>,
}

struct PlannedRun {
    request: RunRequest,
    trigger: Option<trigger::Model>,
}

fn unprocessable(e: AppError) -> AppError {
    match e {
        AppError::Validation(fields) => AppError::Unprocessable(
            fields
                .iter()
                .map(|(f, m)| format!("{f}: {}", m.join(" ")))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        AppError::NotFound(m) | AppError::BadRequest(m) => AppError::Unprocessable(m),
        other => other,
    }
}

async fn plan_execute(state: &AppState, ev: &IncomingEvent) -> AppResult<Plan> {
    let Some(username) = ev.user.as_deref() else {
        return Err(AppError::Unprocessable(
            "The 'user' extension attribute (ce-user header) is required: the name of the user the pipeline runs as.".into(),
        ));
    };
    let user = user::Entity::find()
        .filter(user::Column::Username.eq(username))
        .one(&state.db)
        .await?
        .filter(|u| u.is_active)
        .ok_or_else(|| {
            AppError::Unprocessable(format!("Unknown or inactive user '{username}'."))
        })?;
    let pipeline_id = ev
        .subject
        .as_deref()
        .and_then(|s| s.strip_prefix("pipelines/"))
        .and_then(|id| id.parse::<i64>().ok())
        .ok_or_else(|| {
            AppError::Unprocessable(format!(
                "The subject must be 'pipelines/<id>' (ce-subject header), got {:?}.",
                ev.subject.as_deref().unwrap_or("")
            ))
        })?;
    let parameters = match &ev.data {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(m)) => m.get("parameters").cloned().unwrap_or_else(|| json!({})),
        Some(_) => {
            return Err(AppError::Unprocessable(
                "The event data must be an object {\"parameters\": {...}}.".into(),
            ));
        }
    };
    Ok(Plan {
        direct: true,
        runs: vec![PlannedRun {
            request: RunRequest {
                user,
                pipeline_id,
                parameters,
                triggered_by: None,
            },
            trigger: None,
        }],
        skipped: Vec::new(),
    })
}

async fn plan_triggers(state: &AppState, ev: &IncomingEvent) -> AppResult<Plan> {
    let null = Value::Null;
    let ctx = Context {
        data: ev.data.as_ref().unwrap_or(&null),
        ce: &ev.attributes,
    };
    let mut plan = Plan {
        direct: false,
        runs: Vec::new(),
        skipped: Vec::new(),
    };
    for (t, _ty) in triggers::candidates(&state.db, &ev.ty).await? {
        let matched = match cql2::parse(&t.cql2_filter) {
            Ok(expr) => expr.matches(&ctx),
            Err(e) => {
                tracing::warn!(trigger = %t.slug, error = %e, "stored filter does not parse");
                false
            }
        };
        if !matched {
            continue;
        }
        let owner = match t.owner_id {
            Some(id) => user::Entity::find_by_id(id).one(&state.db).await?,
            None => None,
        };
        let Some(owner) = owner.filter(|u| u.is_active) else {
            plan.skipped
                .push((t, "The trigger has no active owner to run as.".into()));
            continue;
        };
        match triggers::build_parameters(&t, &ctx) {
            Ok(parameters) => plan.runs.push(PlannedRun {
                request: RunRequest {
                    user: owner,
                    pipeline_id: t.pipeline_id,
                    parameters,
                    triggered_by: Some(t.slug.clone()),
                },
                trigger: Some(t),
            }),
            Err(e) => plan.skipped.push((t, e)),
        }
    }
    Ok(plan)
}

fn event_row(
    ev: &IncomingEvent,
    outcome: &str,
    message: Option<String>,
) -> received_event::ActiveModel {
    received_event::ActiveModel {
        source: Set(ev.source.clone()),
        event_id: Set(ev.id.clone()),
        event_type: Set(ev.ty.clone()),
        subject: Set(ev.subject.clone()),
        event_time: Set(ev.time),
        user: Set(ev.user.clone()),
        data: Set(ev.data.clone()),
        headers: Set(ev.headers_json()),
        outcome: Set(outcome.into()),
        message: Set(message),
        run_ids: Set(json!([])),
        pipeline_id: Set(None),
        received_at: Set(Utc::now()),
        ..Default::default()
    }
}

async fn find_stored(
    state: &AppState,
    ev: &IncomingEvent,
) -> AppResult<Option<received_event::Model>> {
    Ok(received_event::Entity::find()
        .filter(received_event::Column::Source.eq(ev.source.as_str()))
        .filter(received_event::Column::EventId.eq(ev.id.as_str()))
        .one(&state.db)
        .await?)
}

/// The stored event after a unique violation (it must exist: the other insert committed).
async fn stored_after_conflict(state: &AppState, ev: &IncomingEvent) -> AppResult<Reply> {
    match find_stored(state, ev).await? {
        Some(stored) => replay(state, ev, stored).await,
        None => Err(AppError::Conflict(
            "A concurrent delivery of this event is being processed; retry.".into(),
        )),
    }
}

/// Records a non-retryable refusal (so staff can see it) and returns it as a 422.
async fn reject(state: &AppState, ev: &IncomingEvent, e: AppError) -> AppResult<Reply> {
    let e = unprocessable(e);
    let AppError::Unprocessable(message) = &e else {
        return Err(e);
    };
    if let Err(db_err) = event_row(ev, outcome::REJECTED, Some(message.clone()))
        .insert(&state.db)
        .await
        && !db::is_unique_violation(&db_err)
    {
        tracing::warn!(error = %db_err, "could not record a rejected event");
    }
    Err(e)
}

/// Events that create no run: nothing matched, or matched triggers could not run.
async fn record_without_runs(state: &AppState, ev: &IncomingEvent, plan: Plan) -> AppResult<Reply> {
    let message = if plan.skipped.is_empty() {
        "No trigger matches this event.".to_string()
    } else {
        skipped_message(&plan.skipped)
    };
    let txn = state.db.begin().await?;
    let stored = match event_row(ev, outcome::IGNORED, Some(message.clone()))
        .insert(&txn)
        .await
    {
        Ok(row) => row,
        Err(e) if db::is_unique_violation(&e) => {
            txn.rollback().await?;
            return stored_after_conflict(state, ev).await;
        }
        Err(e) => return Err(e.into()),
    };
    for (t, _) in &plan.skipped {
        trigger_event_row(ev, t, stored.id, None)
            .insert(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(Reply::new(ReplyKind::Ignored, &ev.id, message))
}

fn skipped_message(skipped: &[(trigger::Model, String)]) -> String {
    skipped
        .iter()
        .map(|(t, why)| format!("Trigger '{}' skipped: {why}", t.slug))
        .collect::<Vec<_>>()
        .join(" ")
}

fn trigger_event_row(
    ev: &IncomingEvent,
    t: &trigger::Model,
    received_id: i64,
    run_id: Option<i64>,
) -> trigger_event::ActiveModel {
    trigger_event::ActiveModel {
        trigger_id: Set(t.slug.clone()),
        received_event_id: Set(Some(received_id)),
        source: Set(ev.source.clone()),
        event_time: Set(ev.time_or_now()),
        event_type: Set(ev.ty.clone()),
        event_headers: Set(Some(ev.headers_json())),
        event_body: Set(ev.data.clone()),
        pipeline_run_id: Set(run_id),
        ..Default::default()
    }
}

/// Inserts the event and its runs in one transaction, commits, then launches.
async fn execute_plan(state: &AppState, ev: &IncomingEvent, mut plan: Plan) -> AppResult<Reply> {
    let callback = state.runs.callback_base_url();
    let txn = state.db.begin().await?;
    let stored = match event_row(ev, outcome::ACCEPTED, None).insert(&txn).await {
        Ok(row) => row,
        Err(e) if db::is_unique_violation(&e) => {
            txn.rollback().await?;
            return stored_after_conflict(state, ev).await;
        }
        Err(e) => return Err(e.into()),
    };
    // Fair shares: every user a run would start as must be within their limits, counted in
    // this transaction. A refusal rolls the whole event back (nothing recorded) and answers
    // 429, which Knative retries: a later delivery is then processed afresh, exactly once.
    let via = if plan.direct {
        quota::Via::Event
    } else {
        quota::Via::Trigger
    };
    if quota::applies(&state.runs) {
        let users: Vec<i64> = plan.runs.iter().map(|p| p.request.user.id).collect();
        quota::lock_users(&txn, &users).await?;
    }
    let mut created: Vec<(pipeline_run::Model, Option<trigger::Model>)> = Vec::new();
    for planned in std::mem::take(&mut plan.runs) {
        if let Err(e) = quota::admit(&txn, &state.runs, &planned.request.user, via).await {
            txn.rollback().await?;
            return Err(e);
        }
        if plan.direct {
            match runs::insert_run(&txn, &state.config, &callback, &planned.request, None).await {
                Ok(run) => created.push((run, None)),
                Err(e) => {
                    txn.rollback().await?;
                    return reject(state, ev, e).await;
                }
            }
            continue;
        }
        // A trigger whose parameters no longer validate must not block the other triggers:
        // each trigger's run gets its own savepoint.
        let t = planned.trigger.expect("trigger runs carry their trigger");
        let sp = txn.begin().await?;
        let origin = trigger_event_row(ev, &t, stored.id, None);
        match runs::insert_run(
            &sp,
            &state.config,
            &callback,
            &planned.request,
            Some(origin),
        )
        .await
        {
            Ok(run) => {
                sp.commit().await?;
                created.push((run, Some(t)));
            }
            Err(e @ (AppError::Validation(_) | AppError::NotFound(_))) => {
                sp.rollback().await?;
                let why = match unprocessable(e) {
                    AppError::Unprocessable(m) => m,
                    other => other.to_string(),
                };
                plan.skipped.push((t, why));
            }
            Err(e) => {
                sp.rollback().await?;
                return Err(e);
            }
        }
    }
    let message = finish_record(&txn, &state.config, ev, &stored, &plan, &created).await?;
    txn.commit().await?;
    statuses::kick(&state.runs.notifier);
    let mut launched = Vec::with_capacity(created.len());
    for (run, _) in created {
        launched.push(launch_owned(state, run, ev.traceparent.clone()).await?);
    }
    Ok(accepted_reply(ev, plan.direct, &launched, message))
}

/// Writes run ids, outcome and trigger events of a processed event (inside its transaction).
async fn finish_record(
    txn: &DatabaseTransaction,
    config: &Config,
    ev: &IncomingEvent,
    stored: &received_event::Model,
    plan: &Plan,
    created: &[(pipeline_run::Model, Option<trigger::Model>)],
) -> AppResult<String> {
    let run_ids: Vec<i64> = created.iter().map(|(r, _)| r.id).collect();
    let mut message = if plan.direct {
        "Pipeline execution created.".to_string()
    } else {
        format!(
            "{} pipeline execution(s) created by triggers.",
            run_ids.len()
        )
    };
    if !plan.skipped.is_empty() {
        message = format!("{message} {}", skipped_message(&plan.skipped));
    }
    for (run, t) in created {
        // The commit's status, in this transaction: `pending` for a run about to launch (one
        // that failed already, its template not rendering, was concluded when stored).
        if t.is_some() && !run.status.is_terminal() {
            statuses::enqueue_for_run(txn, config, run, statuses::Moment::Started).await?;
        }
    }
    for (t, _) in &plan.skipped {
        trigger_event_row(ev, t, stored.id, None)
            .insert(txn)
            .await?;
    }
    let mut am = stored.clone().into_active_model();
    am.run_ids = Set(json!(run_ids));
    am.pipeline_id = Set(created.first().map(|(r, _)| r.pipeline_id));
    am.message = Set(Some(message.clone()));
    if run_ids.is_empty() {
        am.outcome = Set(outcome::IGNORED.into());
    }
    am.update(txn).await?;
    Ok(message)
}

fn accepted_reply(
    ev: &IncomingEvent,
    direct: bool,
    runs: &[pipeline_run::Model],
    message: String,
) -> Reply {
    let kind = if runs.is_empty() {
        ReplyKind::Ignored
    } else {
        ReplyKind::Accepted
    };
    let mut reply = Reply::new(kind, &ev.id, message);
    reply.pipeline_id = runs.first().map(|r| r.pipeline_id);
    reply.runs = match (direct, runs) {
        (true, [run]) => Runs::One(run.id),
        _ => Runs::Many(runs.iter().map(|r| r.id).collect()),
    };
    reply
}

/// Launches a run this delivery just committed (no one else can be launching it yet, except a
/// redelivery on another replica, which must first claim it; see [`resume_launch`]).
async fn launch_owned(
    state: &AppState,
    run: pipeline_run::Model,
    traceparent: Option<String>,
) -> AppResult<pipeline_run::Model> {
    runs::launch(&state.runs, run, traceparent).await
}

/// A run that was stored but never launched is relaunched only when no other delivery can
/// still be launching it: its last update is older than the request timeout (the first
/// delivery is gone), or its launch already failed. The claim is a conditional update, so two
/// replicas cannot both win it.
async fn resume_launch(
    state: &AppState,
    run: pipeline_run::Model,
    traceparent: Option<String>,
) -> AppResult<pipeline_run::Model> {
    if !runs::needs_launch(&run) {
        return Ok(run);
    }
    let lease = Duration::seconds(state.config.server.request_timeout.as_secs() as i64 + 5);
    let failed_before = run.status == runs::RunStatus::Failed;
    let age = Utc::now() - run.updated_at;
    if !failed_before && age < lease {
        let wait = (lease - age).num_seconds().max(1) as u64;
        return Err(AppError::Unavailable {
            detail: "The first delivery of this event is still launching its run; retry later."
                .into(),
            retry_after: wait,
        });
    }
    let now = Utc::now();
    let claimed = pipeline_run::Entity::update_many()
        .col_expr(pipeline_run::Column::UpdatedAt, Expr::value(now))
        .filter(pipeline_run::Column::Id.eq(run.id))
        .filter(pipeline_run::Column::LaunchedAt.is_null())
        .filter(pipeline_run::Column::UpdatedAt.eq(run.updated_at))
        .exec(&state.db)
        .await?;
    if claimed.rows_affected != 1 {
        return Err(AppError::Unavailable {
            detail: "Another delivery of this event is launching its run; retry later.".into(),
            retry_after: 2,
        });
    }
    let mut run = run;
    run.updated_at = now;
    runs::launch(&state.runs, run, traceparent).await
}

/// Repeats the stored outcome of an event seen before, resuming launches it left undone.
async fn replay(
    state: &AppState,
    ev: &IncomingEvent,
    stored: received_event::Model,
) -> AppResult<Reply> {
    let message = stored.message.clone().unwrap_or_default();
    if stored.outcome == outcome::REJECTED {
        return Err(AppError::Unprocessable(message));
    }
    let ids: Vec<i64> = serde_json::from_value(stored.run_ids.clone()).unwrap_or_default();
    let mut by_id: HashMap<i64, pipeline_run::Model> = if ids.is_empty() {
        HashMap::new()
    } else {
        pipeline_run::Entity::find()
            .filter(pipeline_run::Column::Id.is_in(ids.clone()))
            .all(&state.db)
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect()
    };
    for id in &ids {
        if let Some(run) = by_id.remove(id) {
            let run = resume_launch(state, run, ev.traceparent.clone()).await?;
            by_id.insert(*id, run);
        }
    }
    let direct = EXECUTE_TYPES.contains(&stored.event_type.as_str());
    let mut reply = Reply::new(
        ReplyKind::Duplicate,
        &ev.id,
        format!(
            "Already received at {}. {message}",
            stored.received_at.to_rfc3339()
        ),
    );
    reply.pipeline_id = stored.pipeline_id;
    reply.runs = match (direct, ids.as_slice()) {
        (true, [id]) => Runs::One(*id),
        (true, []) => Runs::None,
        _ => Runs::Many(ids),
    };
    Ok(reply)
}

type KeyLock = Arc<tokio::sync::Mutex<()>>;

/// Locks by (server instance, source, id). The instance is the address of the state's shared
/// configuration, so two servers in one process (tests playing replicas) do not share locks.
type LockKey = (usize, String, String);

static EVENT_LOCKS: LazyLock<Mutex<HashMap<LockKey, KeyLock>>> = LazyLock::new(Default::default);

/// The in-process lock of one event key. Entries nobody else holds are dropped on the way, so
/// the map stays as small as the number of events in flight.
fn event_lock(state: &AppState, source: &str, id: &str) -> KeyLock {
    let instance = Arc::as_ptr(&state.config) as usize;
    let mut map = EVENT_LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    map.retain(|_, l| Arc::strong_count(l) > 1);
    map.entry((instance, source.to_owned(), id.to_owned()))
        .or_default()
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_execute_types() {
        assert!(is_health("org.eoepca.application-quality.probes.health"));
        assert!(!is_health("org.eoepca.application-quality.probes.healthy"));
        assert!(EXECUTE_TYPES.contains(&"org.eoepca.application-quality.event.pipeline.execute"));
    }

    #[test]
    fn type_families_are_bounded() {
        assert_eq!(
            type_family("org.eoepca.application-quality.probes.health"),
            "health"
        );
        assert_eq!(type_family(EXECUTE_TYPES[0]), "execute");
        assert_eq!(type_family("com.github.push"), "trigger");
        assert_eq!(
            outcome_label(&Err(AppError::Unprocessable("x".into()))),
            "rejected"
        );
        assert_eq!(
            outcome_label(&Err(AppError::TooManyRequests {
                detail: "x".into(),
                retry_after: 30
            })),
            "throttled"
        );
        assert_eq!(
            outcome_label(&Err(AppError::Unavailable {
                detail: "down".into(),
                retry_after: 1
            })),
            "error"
        );
    }

    #[test]
    fn validation_becomes_422() {
        let e = unprocessable(AppError::field("parameters.x", "Unknown subworkflow."));
        assert!(matches!(&e, AppError::Unprocessable(m) if m.contains("parameters.x")));
        assert_eq!(e.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
    }
}
