//! Fair shares: per-user limits on runs executing and runs waiting, checked whenever a run is
//! about to be stored (REST, `pipeline.execute` events for the named user, triggers for the
//! trigger's owner).
//!
//! A run *waits* while it is `starting` (stored, not yet executing: in the local runner's queue,
//! or being launched) and *executes* while it is `running`. The local runner keeps runs waiting
//! and executes at most `RUNS_MAX_ACTIVE_PER_USER` of one user's at once (serving users in
//! turn, see `crate::local::queue`), so there a new run is refused only when the user already
//! has `RUNS_MAX_QUEUED_PER_USER` waiting. Executors without a queue (Kubernetes) start every
//! stored run at once, so there a new run is refused when the user already has
//! `RUNS_MAX_ACTIVE_PER_USER` runs starting or running.
//!
//! The check counts in the database, inside the transaction that stores the run, after locking
//! the user's row (PostgreSQL: `SELECT ... FOR UPDATE`; SQLite runs one transaction at a time
//! anyway): concurrent requests of one user, on any replica, are counted one after the other,
//! so the limits are exact. A refusal is 429 with `Retry-After`, which Knative retries for
//! events; nothing of the refused request is stored.

use crate::{
    db::entities::{pipeline_run, user},
    error::{AppError, AppResult},
    runs::{RunService, RunStatus},
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Select,
    sea_query::{Expr, ExprTrait},
};

/// `Retry-After` of a refusal (seconds): runs take minutes, so sooner is pointless.
pub const RETRY_AFTER_SECS: u64 = 30;

/// Where a run request came from (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `POST /api/pipelines/{id}/runs/`.
    Rest,
    /// A `pipeline.execute` event, for its `user`.
    Event,
    /// A trigger, for its owner.
    Trigger,
}

impl Via {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Rest => "rest",
            Via::Event => "event",
            Via::Trigger => "trigger",
        }
    }
}

/// Why a run was refused (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `RUNS_MAX_ACTIVE_PER_USER` runs starting or running, and no queue to wait in.
    UserActiveLimit,
    /// `RUNS_MAX_QUEUED_PER_USER` runs waiting for the local runner.
    UserQueueLimit,
}

impl Reason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UserActiveLimit => "user_active_limit",
            Reason::UserQueueLimit => "user_queue_limit",
        }
    }
}

/// The query counting a user's unfinished runs by status: one range of the index on
/// `(started_by_id, status)`, however many finished runs the user has. A `starting` run never
/// handed to the executor and untouched since `orphaned_before` is left out: the request that
/// stored it died before launching it (an event redelivery may still resume it), and it must
/// not hold its user's share for ever.
pub fn unfinished_select(
    user_id: i64,
    orphaned_before: DateTime<Utc>,
) -> Select<pipeline_run::Entity> {
    pipeline_run::Entity::find()
        .select_only()
        .column(pipeline_run::Column::Status)
        .column_as(Expr::col(pipeline_run::Column::Id).count(), "n")
        .filter(pipeline_run::Column::StartedById.eq(user_id))
        .filter(
            pipeline_run::Column::Status
                .is_in([RunStatus::Starting.as_str(), RunStatus::Running.as_str()]),
        )
        .filter(
            Condition::any()
                .add(pipeline_run::Column::Status.eq(RunStatus::Running.as_str()))
                .add(pipeline_run::Column::LaunchedAt.is_not_null())
                .add(pipeline_run::Column::UpdatedAt.gte(orphaned_before)),
        )
        .group_by(pipeline_run::Column::Status)
}

/// The user's runs that count: `(waiting, executing)`. `lease`: how long a stored run may
/// wait for its first launch (the request timeout and a margin, as for event redeliveries).
pub async fn unfinished_runs<C: ConnectionTrait>(
    db: &C,
    user_id: i64,
    lease: std::time::Duration,
) -> Result<(u64, u64), sea_orm::DbErr> {
    let orphaned_before = Utc::now() - chrono::Duration::from_std(lease).unwrap_or_default();
    let rows: Vec<(String, i64)> = unfinished_select(user_id, orphaned_before)
        .into_tuple()
        .all(db)
        .await?;
    let of = |s: RunStatus| {
        rows.iter()
            .find(|(status, _)| status == s.as_str())
            .map_or(0, |(_, n)| *n as u64)
    };
    Ok((of(RunStatus::Starting), of(RunStatus::Running)))
}

/// Locks the users' rows until the end of `txn`, in id order (so two transactions locking
/// several users cannot deadlock). A no-op on SQLite, which has no row locks and needs none.
pub async fn lock_users<C: ConnectionTrait>(txn: &C, ids: &[i64]) -> AppResult<()> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        user::Entity::find_by_id(id)
            .lock_exclusive()
            .one(txn)
            .await?;
    }
    Ok(())
}

/// The limit that refuses new runs with this executor (see the module documentation); 0: none.
fn limit(service: &RunService) -> u32 {
    if service.launcher.queues() {
        service.config.runs.runs_max_queued_per_user
    } else {
        service.config.runs.runs_max_active_per_user
    }
}

/// Whether new runs are checked at all ([`admit`] does nothing when the limit is 0).
pub fn applies(service: &RunService) -> bool {
    limit(service) > 0
}

/// Whether `user` may have one more run, counted inside `txn` (which then stores it): 429 with
/// `Retry-After` when not, counted in the metrics by reason and `via`.
pub async fn admit<C: ConnectionTrait>(
    txn: &C,
    service: &RunService,
    user: &user::Model,
    via: Via,
) -> AppResult<()> {
    let queues = service.launcher.queues();
    let max = limit(service);
    if max == 0 {
        return Ok(());
    }
    lock_users(txn, &[user.id]).await?;
    let lease = service.config.server.request_timeout + std::time::Duration::from_secs(5);
    let (waiting, executing) = unfinished_runs(txn, user.id, lease).await?;
    let refusal = if queues {
        let max = u64::from(max);
        (waiting >= max).then(|| {
            (
                Reason::UserQueueLimit,
                format!(
                    "{} {waiting} run(s) waiting for the local runner, the most allowed (RUNS_MAX_QUEUED_PER_USER={max}); retry when one has started.",
                    whose(user, via)
                ),
            )
        })
    } else {
        let max = u64::from(max);
        (waiting + executing >= max).then(|| {
            (
                Reason::UserActiveLimit,
                format!(
                    "{} {} run(s) starting or running, the most allowed (RUNS_MAX_ACTIVE_PER_USER={max}); retry when one has finished.",
                    whose(user, via),
                    waiting + executing
                ),
            )
        })
    };
    let Some((reason, detail)) = refusal else {
        return Ok(());
    };
    service
        .metrics
        .record_refused_run(reason.as_str(), via.as_str());
    tracing::info!(
        user = %user.username,
        reason = reason.as_str(),
        via = via.as_str(),
        waiting,
        executing,
        "run refused: per-user limit"
    );
    Err(AppError::TooManyRequests {
        detail,
        retry_after: RETRY_AFTER_SECS,
    })
}

/// The subject of a refusal's message: the caller, or the user named by an event or owning a
/// trigger.
fn whose(user: &user::Model, via: Via) -> String {
    match via {
        Via::Rest => "You have".into(),
        Via::Event => format!("The user '{}' has", user.username),
        Via::Trigger => format!("The owner '{}' of a matching trigger has", user.username),
    }
}
