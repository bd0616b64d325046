//! Prometheus metrics, served as text (format 0.0.4) at `GET /metrics`.
//!
//! Series (label values are bounded sets, never raw paths, ids or user names):
//! - `http_requests_total{method, route, status}` and `http_request_duration_seconds{route}`:
//!   `route` is the matched route template (`/api/pipelines/{id}`), `unmatched` for the 404
//!   fallback; unusual methods count as `OTHER`. Health probes and `/metrics` are not counted.
//! - `cloudevents_received_total{type_family, outcome}`: `type_family` is `health`, `execute`,
//!   `job` (ApiServerSource Job events), `wakeup` (the PingSource's outbox wake-up) or
//!   `trigger` (any other type, matched against triggers);
//!   `outcome` is `ok`, `accepted`, `duplicate`, `ignored`, `rejected` (a 4xx answer) or `error`
//!   (5xx, e.g. the database or the Kubernetes API is unavailable). Requests that are not a
//!   CloudEvent at all never reach dispatch: they show as 400s in `http_requests_total`.
//! - `run_launch_duration_seconds{launcher, outcome}`: time spent in the launcher per run.
//! - `pipeline_runs{status}`: a gauge computed on each scrape with one `GROUP BY` over the runs
//!   table. Counters live in one process and restart at zero with every cold start of a
//!   scale-to-zero service, so the number of runs per status is read where it is durable.
//! - `runs_refused_total{reason, via}`: runs refused by a per-user limit (`reason`
//!   `user_active_limit` or `user_queue_limit`, `via` `rest`, `event` or `trigger`; see
//!   `runs::quota`).
//! - `runs_waiting{reason}`: runs waiting in the local runner's queue, computed on scrape:
//!   `no_free_slot` (every slot is busy) or `user_active_limit` (their user has
//!   `RUNS_MAX_ACTIVE_PER_USER` runs executing); 0 for executors without a queue.
//! - `commit_statuses{forge, outcome}`: the commit-status outbox by forge (`github`, `gitlab`)
//!   and outcome (`queued`, `delivered`, `failed`), computed on scrape the same way; a growing
//!   `queued` means a forge is unreachable or a token is missing.
//!
//! Access: anyone who reaches the service may read the metrics, like the health probes, and the
//! route is outside the `Host` check because Prometheus scrapes pods by IP. The text holds only
//! aggregate counts; block `/metrics` at the ingress if even those should stay internal.
//! `docs/observability.md` has the details.

use crate::db::entities::{
    commit_status,
    pipeline_run::{self, RunStatus},
};
use axum::http::{Method, StatusCode};
use prometheus_client::{
    encoding::{EncodeLabelSet, prometheus_text},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use sea_orm::{
    DatabaseConnection, EntityTrait, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use std::time::Duration;

/// Buckets of the request latency histogram (seconds).
const HTTP_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Buckets of the launch latency histogram (seconds): a launch is a few API-server calls.
const LAUNCH_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every run status, so each has a series even when no run has it.
const STATUSES: [RunStatus; 6] = [
    RunStatus::Starting,
    RunStatus::Pending,
    RunStatus::Running,
    RunStatus::Succeeded,
    RunStatus::Failed,
    RunStatus::Killed,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    type_family: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaunchLabels {
    launcher: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    reason: &'static str,
    via: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboxLabels {
    forge: &'static str,
    outcome: &'static str,
}

/// Every forge and outbox outcome, so each has a series.
const FORGES: [&str; 2] = ["github", "gitlab"];
const OUTCOMES: [&str; 3] = [
    crate::statuses::outcome::QUEUED,
    crate::statuses::outcome::DELIVERED,
    crate::statuses::outcome::FAILED,
];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

fn launch_histogram() -> Histogram {
    Histogram::new(LAUNCH_BUCKETS)
}

/// Runs waiting in an executor's queue, by why they wait (the `runs_waiting` gauge).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    /// Waiting for a free slot.
    pub for_slot: usize,
    /// Their user already has `RUNS_MAX_ACTIVE_PER_USER` runs executing.
    pub for_user_limit: usize,
}

/// The registry and handles to its metrics (one per server instance; cheap to share).
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    events: Family<EventLabels, Counter>,
    launches: HistogramFamily<LaunchLabels>,
    runs: Family<StatusLabels, Gauge>,
    refused: Family<RefusedLabels, Counter>,
    waiting: Family<ReasonLabels, Gauge>,
    statuses: Family<OutboxLabels, Gauge>,
    /// Scrapes set the run gauge and encode under this lock, so two concurrent scrapes cannot
    /// interleave a reset with an encoding.
    scrape: tokio::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with every series of this service registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, matched route template and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(http_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by matched route template",
            http_duration.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "cloudevents_received",
            "CloudEvents dispatched, by type family and outcome",
            events.clone(),
        );
        let launches: HistogramFamily<LaunchLabels> =
            Family::new_with_constructor(launch_histogram);
        registry.register(
            "run_launch_duration_seconds",
            "Time the launcher took to start a run, by launcher and outcome",
            launches.clone(),
        );
        let runs = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "pipeline_runs",
            "Pipeline runs stored in the database, by status (computed on scrape)",
            runs.clone(),
        );
        let refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "runs_refused",
            "Runs refused by a per-user limit, by reason and where the request came from",
            refused.clone(),
        );
        let waiting = Family::<ReasonLabels, Gauge>::default();
        registry.register(
            "runs_waiting",
            "Runs waiting in the local runner's queue, by why they wait (computed on scrape)",
            waiting.clone(),
        );
        let statuses = Family::<OutboxLabels, Gauge>::default();
        registry.register(
            "commit_statuses",
            "Commit statuses in the outbox, by forge and outcome (computed on scrape)",
            statuses.clone(),
        );
        Metrics {
            registry,
            http_requests,
            http_duration,
            events,
            launches,
            runs,
            refused,
            waiting,
            statuses,
            scrape: tokio::sync::Mutex::new(()),
        }
    }

    /// Counts one answered request. `route` is the matched template, `None` for the fallback.
    pub fn record_request(
        &self,
        method: &Method,
        route: Option<&str>,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let route = route.unwrap_or("unmatched").to_owned();
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method_label(method),
                route: route.clone(),
                status: status.as_u16(),
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one dispatched event (labels from [`crate::events::dispatch`]'s fixed sets).
    pub fn record_event(&self, type_family: &'static str, outcome: &'static str) {
        self.events
            .get_or_create(&EventLabels {
                type_family,
                outcome,
            })
            .inc();
    }

    /// Records how long one launch took.
    pub fn observe_launch(&self, launcher: &'static str, outcome: &'static str, elapsed: Duration) {
        self.launches
            .get_or_create(&LaunchLabels { launcher, outcome })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one run refused by a per-user limit (labels from `runs::quota`'s fixed sets).
    pub fn record_refused_run(&self, reason: &'static str, via: &'static str) {
        self.refused
            .get_or_create(&RefusedLabels { reason, via })
            .inc();
    }

    /// The text exposition, with the run gauge read from the database first (and the local
    /// queue's `waiting`, when there is a queue). When that query fails the gauge is left out
    /// (no stale numbers) and the rest is still served.
    pub async fn render(&self, db: &DatabaseConnection, waiting: Option<Waiting>) -> String {
        let _guard = self.scrape.lock().await;
        let waiting = waiting.unwrap_or_default();
        for (reason, n) in [
            ("no_free_slot", waiting.for_slot),
            ("user_active_limit", waiting.for_user_limit),
        ] {
            self.waiting
                .get_or_create(&ReasonLabels { reason })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        match runs_by_status(db).await {
            Ok(counts) => {
                for status in STATUSES {
                    let n = counts
                        .iter()
                        .find(|(s, _)| s == status.as_str())
                        .map_or(0, |(_, n)| *n);
                    self.runs
                        .get_or_create(&StatusLabels {
                            status: status.as_str(),
                        })
                        .set(n);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot count runs by status");
                self.runs.clear();
            }
        }
        match statuses_by_outcome(db).await {
            Ok(counts) => {
                for forge in FORGES {
                    for outcome in OUTCOMES {
                        let n = counts
                            .iter()
                            .find(|(f, o, _)| f == forge && o == outcome)
                            .map_or(0, |(_, _, n)| *n);
                        self.statuses
                            .get_or_create(&OutboxLabels { forge, outcome })
                            .set(n);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot count commit statuses");
                self.statuses.clear();
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail; an error here would be a bug in the encoder.
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics: encoding failed");
        }
        out
    }
}

/// The method as a bounded label value.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// `(status, count)` of all runs, one query.
async fn runs_by_status(db: &DatabaseConnection) -> Result<Vec<(String, i64)>, sea_orm::DbErr> {
    pipeline_run::Entity::find()
        .select_only()
        .column(pipeline_run::Column::Status)
        .column_as(Expr::col(pipeline_run::Column::Id).count(), "n")
        .group_by(pipeline_run::Column::Status)
        .into_tuple::<(String, i64)>()
        .all(db)
        .await
}

/// `(forge, outcome, count)` of the commit-status outbox, one query.
async fn statuses_by_outcome(
    db: &DatabaseConnection,
) -> Result<Vec<(String, String, i64)>, sea_orm::DbErr> {
    commit_status::Entity::find()
        .select_only()
        .column(commit_status::Column::Forge)
        .column(commit_status::Column::Outcome)
        .column_as(Expr::col(commit_status::Column::Id).count(), "n")
        .group_by(commit_status::Column::Forge)
        .group_by(commit_status::Column::Outcome)
        .into_tuple::<(String, String, i64)>()
        .all(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
    }

    #[test]
    fn text_has_the_series() {
        let m = Metrics::new();
        m.record_request(
            &Method::GET,
            Some("/api/pipelines/{id}"),
            StatusCode::OK,
            Duration::from_millis(3),
        );
        m.record_request(&Method::GET, None, StatusCode::NOT_FOUND, Duration::ZERO);
        m.record_event("execute", "accepted");
        m.observe_launch("recording", "not_executed", Duration::from_millis(1));
        m.record_refused_run("user_queue_limit", "trigger");
        let mut out = String::new();
        prometheus_text::encode(&mut out, &m.registry).unwrap();
        assert!(
            out.contains(
                r#"http_requests_total{method="GET",route="/api/pipelines/{id}",status="200"} 1"#
            ),
            "{out}"
        );
        assert!(
            out.contains(r#"http_requests_total{method="GET",route="unmatched",status="404"} 1"#),
            "{out}"
        );
        assert!(
            out.contains(
                r#"http_request_duration_seconds_bucket{route="/api/pipelines/{id}",le="0.005"} 1"#
            ),
            "{out}"
        );
        assert!(
            out.contains(
                r#"cloudevents_received_total{type_family="execute",outcome="accepted"} 1"#
            ),
            "{out}"
        );
        assert!(
            out.contains(r#"run_launch_duration_seconds_count{launcher="recording",outcome="not_executed"} 1"#),
            "{out}"
        );
        assert!(
            out.contains(r#"runs_refused_total{reason="user_queue_limit",via="trigger"} 1"#),
            "{out}"
        );
        // The run gauge is filled by a scrape (it reads the database).
        assert!(!out.contains("pipeline_runs{"), "{out}");
    }
}
