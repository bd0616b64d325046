//! Periodic maintenance: retention of received events (`EVENT_RETENTION_DAYS`, default 30),
//! finished runs (`RUN_RETENTION_DAYS`) and job reports (`JOB_REPORT_RETENTION_DAYS`; both
//! default to keeping everything), and of signed-out sessions (`aq_revoked_session`) an hour
//! after the session would have expired anyway (the hour covers clocks of replicas that run
//! behind).
//!
//! [`run`] deletes expired rows in batches of `MAINTENANCE_BATCH_SIZE`, each batch one short
//! statement (`DELETE ... WHERE id IN (SELECT id ... ORDER BY time LIMIT n)`, on an index), so
//! a large backlog never holds the database (SQLite's single connection included) for long:
//! requests queued for a connection are served between two batches. Deleting a received event
//! deletes the trigger events recorded for it (they copy its headers and body); deleting a run
//! deletes its job reports; trigger events keep a null run.
//!
//! Nothing runs on a timer (a scale-to-zero service has no life between requests): requests
//! start a pass in the background ([`maybe_start`], called by the request layer) at most once
//! per `MAINTENANCE_INTERVAL_SECS` per instance, and never during the first half minute after
//! start, so cold starts stay clear. A periodic wake-up event may call [`run_now`] as well.
//! Passes of one instance never overlap; passes of several replicas may, which is harmless
//! (each batch deletes what is still there).

use crate::{
    config::Config,
    db::entities::{job_report, pipeline_run, received_event, revoked_session},
};
use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait,
};
use serde::Serialize;
use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicI64, Ordering},
};

/// Delay after start before requests may start the first pass (seconds).
const FIRST_PASS_DELAY_SECS: i64 = 30;
/// How long past its expiry a signed-out session's record is kept (seconds): a replica whose
/// clock runs behind still sees the session as live for that long.
pub const REVOCATION_GRACE_SECS: i64 = 3600;

/// Per-instance bookkeeping of the opportunistic passes.
#[derive(Debug)]
pub struct Maintenance {
    /// Unix time (seconds) before which requests do not start a pass.
    next_pass: AtomicI64,
    /// A pass is under way.
    running: AtomicBool,
}

impl Default for Maintenance {
    fn default() -> Self {
        Self {
            next_pass: AtomicI64::new(Utc::now().timestamp() + FIRST_PASS_DELAY_SECS),
            running: AtomicBool::new(false),
        }
    }
}

/// What a pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Received events (with their trigger events).
    pub events: u64,
    /// Finished runs (with their job reports).
    pub runs: u64,
    /// Job reports (of runs that are kept).
    pub job_reports: u64,
    /// Records of signed-out sessions that have expired.
    pub sessions: u64,
    /// Delete statements issued.
    pub batches: u64,
}

/// Starts a background pass if the interval has passed since the last one (cheap: one atomic
/// load on the request path otherwise).
pub fn maybe_start(db: &DatabaseConnection, config: &Arc<Config>, maintenance: &Arc<Maintenance>) {
    let interval = config.retention.maintenance_interval_secs;
    if interval == 0 {
        return;
    }
    let now = Utc::now().timestamp();
    let next = maintenance.next_pass.load(Ordering::Relaxed);
    if now < next {
        return;
    }
    let due = now.saturating_add(i64::try_from(interval).unwrap_or(i64::MAX));
    if maintenance
        .next_pass
        .compare_exchange(next, due, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let (db, config, maintenance) = (db.clone(), config.clone(), maintenance.clone());
    tokio::spawn(async move {
        let _ = run_now(&db, &config, &maintenance).await;
    });
}

/// Runs one pass now unless one is under way (then `None`). Errors are logged and returned.
pub async fn run_now(
    db: &DatabaseConnection,
    config: &Config,
    maintenance: &Maintenance,
) -> Option<Result<Report, DbErr>> {
    if maintenance.running.swap(true, Ordering::AcqRel) {
        return None;
    }
    let started = std::time::Instant::now();
    let result = run(db, config, Utc::now()).await;
    maintenance.running.store(false, Ordering::Release);
    match &result {
        Ok(r) => tracing::info!(
            events = r.events,
            runs = r.runs,
            job_reports = r.job_reports,
            sessions = r.sessions,
            batches = r.batches,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "maintenance pass"
        ),
        Err(e) => tracing::warn!(error = %e, "maintenance pass failed"),
    }
    Some(result)
}

/// Deletes everything expired at `now` under the configured retention, batch by batch.
pub async fn run(
    db: &DatabaseConnection,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Report, DbErr> {
    let batch = u64::from(config.retention.maintenance_batch_size.max(1));
    let mut report = Report::default();
    if let Some(cutoff) = cutoff(now, config.retention.event_retention_days) {
        loop {
            let ids = received_event::Entity::find()
                .select_only()
                .column(received_event::Column::Id)
                .filter(received_event::Column::ReceivedAt.lt(cutoff))
                .order_by_asc(received_event::Column::ReceivedAt)
                .limit(batch)
                .into_query();
            let n = received_event::Entity::delete_many()
                .filter(received_event::Column::Id.in_subquery(ids))
                .exec(db)
                .await?
                .rows_affected;
            report.events += n;
            report.batches += 1;
            if n < batch {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    if let Some(cutoff) = cutoff(now, config.retention.run_retention_days) {
        loop {
            let ids = pipeline_run::Entity::find()
                .select_only()
                .column(pipeline_run::Column::Id)
                .filter(pipeline_run::Column::CompletionTime.lt(cutoff))
                .order_by_asc(pipeline_run::Column::CompletionTime)
                .limit(batch)
                .into_query();
            let n = pipeline_run::Entity::delete_many()
                .filter(pipeline_run::Column::Id.in_subquery(ids))
                .exec(db)
                .await?
                .rows_affected;
            report.runs += n;
            report.batches += 1;
            if n < batch {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    if let Some(cutoff) = cutoff(now, config.retention.job_report_retention_days) {
        loop {
            let ids = job_report::Entity::find()
                .select_only()
                .column(job_report::Column::Id)
                .filter(job_report::Column::CreatedAt.lt(cutoff))
                .order_by_asc(job_report::Column::CreatedAt)
                .limit(batch)
                .into_query();
            let n = job_report::Entity::delete_many()
                .filter(job_report::Column::Id.in_subquery(ids))
                .exec(db)
                .await?
                .rows_affected;
            report.job_reports += n;
            report.batches += 1;
            if n < batch {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    // A signed-out session's record is useless once the session has expired everywhere.
    let expired = now - Duration::seconds(REVOCATION_GRACE_SECS);
    loop {
        let ids = revoked_session::Entity::find()
            .select_only()
            .column(revoked_session::Column::SessionId)
            .filter(revoked_session::Column::ExpiresAt.lt(expired))
            .order_by_asc(revoked_session::Column::ExpiresAt)
            .limit(batch)
            .into_query();
        let n = revoked_session::Entity::delete_many()
            .filter(revoked_session::Column::SessionId.in_subquery(ids))
            .exec(db)
            .await?
            .rows_affected;
        report.sessions += n;
        report.batches += 1;
        if n < batch {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(report)
}

/// The oldest time kept under a retention of `days` (`None`: keep forever).
fn cutoff(now: DateTime<Utc>, days: u32) -> Option<DateTime<Utc>> {
    (days > 0).then(|| now - Duration::days(i64::from(days)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_days_keeps_forever() {
        let now = Utc::now();
        assert_eq!(cutoff(now, 0), None);
        assert_eq!(cutoff(now, 30), Some(now - Duration::days(30)));
    }

    #[test]
    fn first_pass_waits_after_start() {
        let m = Maintenance::default();
        assert!(m.next_pass.load(Ordering::Relaxed) > Utc::now().timestamp());
    }
}
