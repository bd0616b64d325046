//! Commit statuses on GitHub and GitLab for runs started by a push or pull/merge-request event.
//!
//! Durable delivery through an outbox (`aq_commit_status`):
//! - a status is written by [`enqueue_for_run`] in the transaction that changes the run (its
//!   creation by a trigger event: `pending`; its end, [`crate::quality::conclude`]; a manual
//!   override), so it is never lost when the instance stops, scales to zero or the forge is down;
//! - after commit, [`kick`] delivers it from a spawned task, never on the request path;
//! - a failed delivery is retried with bounded exponential backoff, by later requests and
//!   events ([`poke`], one atomic read when nothing is due) and by the wake-up CloudEvent a
//!   Knative PingSource sends ([`WAKEUP_TYPES`], [`deliver_now`]);
//! - replicas claim a row with a lease (a conditional UPDATE), so two never post the same row;
//!   per (forge, repository, sha, context) only the oldest undelivered row is eligible, so
//!   statuses arrive in order.
//!
//! Tokens come from the environment only (`GITHUB_API_TOKEN__<owner>`, `GITHUB_API_TOKEN`,
//! `GITLAB_API_TOKEN__<namespace>`, `GITLAB_API_TOKEN`) and are looked up at delivery time;
//! they never reach the database, a log line or an error body.

mod forge;

use crate::{
    config::Config,
    db::entities::{
        commit_status,
        pipeline_run::{self, RunStatus, effective_quality},
        trigger_event,
    },
    error::AppResult,
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sea_orm::DatabaseConnection;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde_json::Value;
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
};

pub use forge::{Forge, Target, target_of};

/// CloudEvent types of the periodic wake-up: ours (for any scheduler), and a Knative
/// PingSource's (`knative/pingsource.yaml`; a PingSource cannot set the type).
pub const WAKEUP_TYPES: [&str; 2] = [
    "org.eoepca.application-quality.events.wakeup",
    "dev.knative.sources.ping",
];

/// Whether an event type is a wake-up.
pub fn is_wakeup(ty: &str) -> bool {
    WAKEUP_TYPES.contains(&ty)
}

/// Outcomes stored in `aq_commit_status.outcome`.
pub mod outcome {
    pub const QUEUED: &str = "queued";
    pub const DELIVERED: &str = "delivered";
    pub const FAILED: &str = "failed";
}

/// Rows looked at per round of a delivery pass.
const BATCH: u64 = 500;
/// Deliveries in flight at once (to different commits).
const CONCURRENCY: usize = 8;
/// Longest time between two checks of the outbox while this instance serves requests, so
/// rows another replica queued and could not deliver are not left waiting for the PingSource.
const RECHECK_MS: i64 = 60_000;

/// Which change of a run a status reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// The run was created (and is being launched): `pending`.
    Started,
    /// The run reached a terminal status: from its verdict.
    Ended,
    /// Staff overrode the verdict: from the manual value.
    Override,
}

/// The reference's mapping of a verdict or state word to a commit state (case-insensitive).
pub fn map_state(input: &str) -> Option<&'static str> {
    let s = input.to_ascii_lowercase();
    if s.starts_with("succ") || s.starts_with("pass") || s == "ok" || s == "yes" {
        Some("success")
    } else if s.starts_with("fail") || s == "nok" || s == "ko" || s == "no" {
        Some("failure")
    } else if s.starts_with("wait") || s == "pending" {
        Some("pending")
    } else if s.starts_with("err") {
        Some("error")
    } else {
        None
    }
}

/// The reference's description of each state.
fn description(state: &str) -> &'static str {
    match state {
        "pending" => "Best practices validation is being applied",
        "failure" => "Best practices validation failed",
        "success" => "Best practices validation is successful",
        _ => "Failed to apply best practices validation (internal error)",
    }
}

/// The state and description a run's status should have at `moment`.
fn state_for(run: &pipeline_run::Model, moment: Moment) -> (&'static str, String) {
    let state = match moment {
        Moment::Started => "pending",
        Moment::Override => map_state(effective_quality(&run.digest)).unwrap_or("failure"),
        Moment::Ended => match run.status {
            RunStatus::Succeeded => match effective_quality(&run.digest) {
                "pass" | "pass_with_comments" => "success",
                _ => "failure",
            },
            // The reference judged a failed run by its (often empty) counters, so a run that
            // produced no report could pass; a run that did not complete fails here.
            RunStatus::Failed | RunStatus::Killed => {
                return (
                    "failure",
                    format!("The quality pipeline did not complete ({}).", run.status),
                );
            }
            _ => {
                return (
                    "error",
                    "The quality pipeline was not executed.".to_string(),
                );
            }
        },
    };
    (state, description(state).to_string())
}

/// The state a run's end reports (`success`, `failure`, `error`), to tell whether a recomputed
/// digest changes it.
pub fn ended_state(run: &pipeline_run::Model) -> &'static str {
    state_for(run, Moment::Ended).0
}

/// The target URL of a run's status: `GITHUB_STATUS_TARGET_URL` with `{run_id}` and
/// `{pipeline_id}` replaced, or the run's API URL under `PUBLIC_URL`.
pub fn target_url(config: &Config, run: &pipeline_run::Model) -> String {
    match &config.statuses.github_status_target_url {
        Some(t) => t
            .replace("{run_id}", &run.id.to_string())
            .replace("{pipeline_id}", &run.pipeline_id.to_string()),
        None => format!(
            "{}/api/pipelines/{}/runs/{}/",
            config.server.public_url.trim_end_matches('/'),
            run.pipeline_id,
            run.id
        ),
    }
}

/// Queues the status of `run` at `moment` when the run was started by a GitHub or GitLab push
/// or pull/merge-request event and statuses are enabled for that forge. Runs inside the
/// caller's transaction; returns whether a row was queued.
pub async fn enqueue_for_run<C: ConnectionTrait>(
    db: &C,
    config: &Config,
    run: &pipeline_run::Model,
    moment: Moment,
) -> AppResult<bool> {
    if !config.statuses.github_status_enabled && !config.statuses.gitlab_status_enabled {
        return Ok(false);
    }
    let Some(event) = trigger_event::Entity::find()
        .filter(trigger_event::Column::PipelineRunId.eq(run.id))
        .order_by_asc(trigger_event::Column::Id)
        .one(db)
        .await?
    else {
        return Ok(false);
    };
    let body = event.event_body.clone().unwrap_or(Value::Null);
    let target = match target_of(&event.event_type, &body, config) {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(false),
        Err(why) => {
            tracing::warn!(run_id = run.id, event_type = %event.event_type, why, "no commit status for this event");
            return Ok(false);
        }
    };
    let (state, description) = state_for(run, moment);
    let now = Utc::now();
    commit_status::ActiveModel {
        run_id: Set(Some(run.id)),
        forge: Set(target.forge.as_str().into()),
        api_url: Set(target.api_url),
        repository: Set(target.repository),
        token_scope: Set(target.token_scope),
        sha: Set(target.sha),
        context: Set(config.statuses.status_context(target.forge).to_string()),
        state: Set(target.forge.state_name(state).into()),
        description: Set(description),
        target_url: Set(Some(target_url(config, run))),
        outcome: Set(outcome::QUEUED.into()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        lease_until: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        delivered_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(true)
}

/// The outbox's notifier: what a delivery pass needs (the database, the configuration, this
/// instance's delivery state), one reference-counted allocation that run bookkeeping, the web
/// layer and the event layer share (`kick` after a commit, `poke` on each request).
#[derive(Clone)]
pub struct Notifier(Arc<NotifierInner>);

/// The parts of a [`Notifier`].
pub struct NotifierInner {
    /// Connection pool.
    pub db: DatabaseConnection,
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Delivery state of this instance.
    pub outbox: Outbox,
}

impl Notifier {
    /// A notifier with a fresh delivery state.
    pub fn new(db: DatabaseConnection, config: Arc<Config>) -> Self {
        Self(Arc::new(NotifierInner {
            db,
            config,
            outbox: Outbox::default(),
        }))
    }
}

impl std::ops::Deref for Notifier {
    type Target = NotifierInner;

    fn deref(&self) -> &NotifierInner {
        &self.0
    }
}

/// Per-instance delivery state.
#[derive(Default)]
pub struct Outbox {
    running: AtomicBool,
    again: AtomicBool,
    /// Milliseconds since the epoch when queued rows may next be due (0: check at once, as
    /// after a start: rows left by an earlier instance are delivered on the first request).
    next_due_ms: AtomicI64,
    client: OnceLock<forge::HttpClient>,
}

impl Outbox {
    fn client(&self) -> Option<&forge::HttpClient> {
        if self.client.get().is_none() {
            match crate::replay::http_client(false) {
                Ok(c) => {
                    let _ = self.client.set(c);
                }
                Err(e) => {
                    tracing::error!(error = %e, "no HTTP client for commit statuses");
                    return None;
                }
            }
        }
        self.client.get()
    }
}

/// Starts a delivery pass in the background unless one is running (which then goes round once
/// more, so rows committed meanwhile are not missed).
pub fn kick(notifier: &Notifier) {
    let outbox = &notifier.outbox;
    outbox.again.store(true, Ordering::SeqCst);
    if outbox.running.swap(true, Ordering::SeqCst) {
        return;
    }
    let notifier = notifier.clone();
    tokio::spawn(async move {
        loop {
            notifier.outbox.again.store(false, Ordering::SeqCst);
            if let Err(e) = deliver_now(&notifier).await {
                tracing::warn!(error = %e, "commit status delivery pass failed");
                // Look again soon (the database may be back), not only at the next status.
                let retry = Utc::now().timestamp_millis()
                    + notifier
                        .config
                        .statuses
                        .commit_status_retry_base_ms
                        .min(60_000) as i64;
                notifier.outbox.next_due_ms.store(retry, Ordering::Relaxed);
            }
            notifier.outbox.running.store(false, Ordering::SeqCst);
            // A kick between the pass and the store above found `running` set and left.
            if !notifier.outbox.again.load(Ordering::SeqCst)
                || notifier.outbox.running.swap(true, Ordering::SeqCst)
            {
                break;
            }
        }
    });
}

/// Called on every request and event: starts a pass when queued rows may be due. One atomic
/// read otherwise.
pub fn poke(notifier: &Notifier) {
    if Utc::now().timestamp_millis() >= notifier.outbox.next_due_ms.load(Ordering::Relaxed) {
        // Until the pass has looked, later requests need not kick again.
        notifier
            .outbox
            .next_due_ms
            .store(i64::MAX, Ordering::Relaxed);
        kick(notifier);
    }
}

/// What a delivery pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub delivered: u64,
    pub retried: u64,
    pub failed: u64,
}

/// Delivers every due row, oldest first per commit and context, until none is due; then records
/// when the next one will be. Safe to run on several replicas at once.
pub async fn deliver_now(notifier: &Notifier) -> AppResult<PassReport> {
    let mut report = PassReport::default();
    // Bounded: a pass never spins, whatever other replicas do.
    for _ in 0..1000 {
        let queued = commit_status::Entity::find()
            .filter(commit_status::Column::Outcome.eq(outcome::QUEUED))
            .order_by_asc(commit_status::Column::Id)
            .limit(BATCH)
            .all(&notifier.db)
            .await?;
        let now = Utc::now();
        // Per (forge, repository, commit, context), in id order: the rows that are due from
        // the oldest on; a key whose oldest row is not due waits whole.
        type Key = (String, String, String, String, String);
        let mut keys: HashMap<Key, usize> = HashMap::new();
        let mut blocked: HashSet<Key> = HashSet::new();
        let mut due: Vec<Vec<commit_status::Model>> = Vec::new();
        let mut next_due: Option<DateTime<Utc>> = None;
        for row in queued {
            let key = (
                row.forge.clone(),
                row.api_url.clone(),
                row.repository.clone(),
                row.sha.clone(),
                row.context.clone(),
            );
            if blocked.contains(&key) {
                continue;
            }
            let ready_at = row
                .lease_until
                .map_or(row.next_attempt_at, |l| l.max(row.next_attempt_at));
            if ready_at > now {
                next_due = Some(next_due.map_or(ready_at, |n| n.min(ready_at)));
                blocked.insert(key);
                continue;
            }
            match keys.get(&key) {
                Some(&i) => due[i].push(row),
                None => {
                    keys.insert(key, due.len());
                    due.push(vec![row]);
                }
            }
        }
        if due.is_empty() {
            let recheck = Utc::now().timestamp_millis() + RECHECK_MS;
            let next = next_due.map_or(recheck, |n| n.timestamp_millis().min(recheck));
            notifier.outbox.next_due_ms.store(next, Ordering::Relaxed);
            return Ok(report);
        }
        let results: Vec<Vec<Delivery>> = futures::stream::iter(due)
            .map(|rows| deliver_in_order(notifier, rows))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for r in results.into_iter().flatten() {
            match r {
                Delivery::Delivered => report.delivered += 1,
                Delivery::Retry => report.retried += 1,
                Delivery::GaveUp => report.failed += 1,
            }
        }
    }
    Ok(report)
}

enum Delivery {
    Delivered,
    Retry,
    GaveUp,
}

/// Delivers the due rows of one commit and context one after the other; stops at the first that
/// is not delivered (or that another replica holds), so a later status never overtakes it.
async fn deliver_in_order(notifier: &Notifier, rows: Vec<commit_status::Model>) -> Vec<Delivery> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        match deliver_one(notifier, row).await {
            Some(Delivery::Delivered) => out.push(Delivery::Delivered),
            Some(other) => {
                out.push(other);
                break;
            }
            None => break,
        }
    }
    out
}

/// Claims, posts and settles one row; `None` when another replica holds it.
async fn deliver_one(notifier: &Notifier, row: commit_status::Model) -> Option<Delivery> {
    let config = &notifier.config;
    let timeout = config.statuses.commit_status_timeout;
    let now = Utc::now();
    let lease = now
        + chrono::Duration::milliseconds(
            config.statuses.commit_status_timeout.as_millis() as i64 + 30_000,
        );
    let claimed = commit_status::Entity::update_many()
        .col_expr(commit_status::Column::LeaseUntil, Expr::value(lease))
        .filter(commit_status::Column::Id.eq(row.id))
        .filter(commit_status::Column::Outcome.eq(outcome::QUEUED))
        .filter(
            Condition::any()
                .add(commit_status::Column::LeaseUntil.is_null())
                .add(commit_status::Column::LeaseUntil.lt(now)),
        )
        .exec(&notifier.db)
        .await;
    match claimed {
        Ok(r) if r.rows_affected == 1 => {}
        Ok(_) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "could not claim a commit status");
            return None;
        }
    }
    let result = match notifier.outbox.client() {
        Some(client) => forge::post(client, config, &row, timeout).await,
        None => Err(forge::PostError::retry("no HTTP client")),
    };
    let attempts = row.attempts.saturating_add(1);
    let mut active: commit_status::ActiveModel = row.clone().into();
    active.attempts = Set(attempts);
    active.lease_until = Set(None);
    let delivery = match result {
        Ok(()) => {
            active.outcome = Set(outcome::DELIVERED.into());
            active.delivered_at = Set(Some(Utc::now()));
            active.last_error = Set(None);
            tracing::info!(status_id = row.id, run_id = row.run_id, forge = %row.forge, repository = %row.repository, state = %row.state, attempts, "commit status delivered");
            Delivery::Delivered
        }
        Err(e) => {
            let give_up =
                !e.retryable || attempts >= config.statuses.commit_status_max_attempts as i32;
            active.last_error = Set(Some(e.message.clone()));
            if give_up {
                active.outcome = Set(outcome::FAILED.into());
                tracing::error!(status_id = row.id, run_id = row.run_id, forge = %row.forge, repository = %row.repository, attempts, error = %e.message, "commit status given up");
                Delivery::GaveUp
            } else {
                let backoff = backoff_ms(config, attempts);
                active.next_attempt_at =
                    Set(Utc::now() + chrono::Duration::milliseconds(backoff as i64));
                tracing::warn!(status_id = row.id, run_id = row.run_id, forge = %row.forge, repository = %row.repository, attempts, retry_in_ms = backoff, error = %e.message, "commit status delivery failed");
                Delivery::Retry
            }
        }
    };
    if let Err(e) = active.update(&notifier.db).await {
        // The lease expires and the row is delivered again: at worst a duplicate status, which
        // the forges treat as the same state.
        tracing::warn!(status_id = row.id, error = %e, "could not settle a commit status");
    }
    Some(delivery)
}

/// Exponential backoff after `attempts` failures, capped.
pub fn backoff_ms(config: &Config, attempts: i32) -> u64 {
    let exp = attempts.saturating_sub(1).clamp(0, 30) as u32;
    config
        .statuses
        .commit_status_retry_base_ms
        .saturating_mul(1u64 << exp)
        .min(
            config
                .statuses
                .commit_status_retry_max_secs
                .saturating_mul(1000),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_as_the_reference() {
        for (input, state) in [
            ("pass", Some("success")),
            ("pass_with_comments", Some("success")),
            ("Succeeded", Some("success")),
            ("ok", Some("success")),
            ("fail", Some("failure")),
            ("KO", Some("failure")),
            ("pending", Some("pending")),
            ("waiting", Some("pending")),
            ("error", Some("error")),
            ("unknown", None),
            ("exception", None),
        ] {
            assert_eq!(map_state(input), state, "{input}");
        }
    }

    #[test]
    fn backoff_is_bounded() {
        let config = Config::from_iter([
            ("COMMIT_STATUS_RETRY_BASE_MS".to_string(), "100".to_string()),
            ("COMMIT_STATUS_RETRY_MAX_SECS".to_string(), "1".to_string()),
        ])
        .unwrap();
        assert_eq!(backoff_ms(&config, 1), 100);
        assert_eq!(backoff_ms(&config, 2), 200);
        assert_eq!(backoff_ms(&config, 4), 800);
        assert_eq!(backoff_ms(&config, 5), 1000);
        assert_eq!(backoff_ms(&config, 500), 1000);
    }
}
