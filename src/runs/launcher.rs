//! The seam between run bookkeeping and execution. The Kubernetes launcher (`crate::k8s`)
//! implements it for real clusters, the local runner (`crate::local`) with cwltool child
//! processes on this machine; [`RecordingLauncher`] stands in when nothing executes runs
//! (`EXECUTOR=off`), recording runs without executing them.

use super::service::RunService;
pub use crate::metrics::Waiting;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::{collections::BTreeMap, net::SocketAddr};

/// Everything needed to start one run.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    pub run_id: i64,
    pub pipeline_id: i64,
    /// Who started the run (executors with a queue serve users in turn).
    pub user_id: Option<i64>,
    /// Rendered CWL document (YAML text).
    pub cwl: String,
    /// Flattened parameters (`"<subworkflow>.<tool>.<input>"`, `pipeline_id`, `run_id`, `server_url`).
    pub params: BTreeMap<String, serde_json::Value>,
    /// Plain per-run callback token; only its hash is stored.
    pub callback_token: String,
    /// Base URL the pods call back to.
    pub callback_url: String,
    /// W3C trace context to annotate the objects with, if any.
    pub traceparent: Option<String>,
}

/// What a launch achieved.
#[derive(Debug, Clone, PartialEq)]
pub enum LaunchOutcome {
    /// Objects exist in the cluster (created now, or already there).
    Launched { namespace: String, job_name: String },
    /// Accepted, waiting for a free execution slot: the run stays `starting` with this
    /// message until the executor reports it `running`.
    Queued {
        namespace: String,
        job_name: String,
        message: String,
    },
    /// Nothing executes this run; it is recorded with this explanation.
    NotExecuted { message: String },
}

/// Execution-side view of a run, read from its Job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobObservation {
    /// `running`, `succeeded` or `failed` (see [`crate::runs::RunStatus`]).
    pub status: super::RunStatus,
    pub message: Option<String>,
    pub completion_time: Option<DateTime<Utc>>,
}

/// Why a launcher call failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The cluster could not be reached or refused us for now: retry later (503).
    #[error("Kubernetes API unavailable: {0}")]
    Unavailable(String),
    /// The executor refuses the run for good (invalid objects, quota, forbidden, tools that
    /// cannot run here): the run fails.
    #[error("the run was rejected: {0}")]
    Rejected(String),
}

/// Starts, observes and cancels runs.
#[async_trait]
pub trait Launcher: Send + Sync + 'static {
    /// Creates the run's objects. Must be idempotent: launching twice is harmless.
    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome, LaunchError>;
    /// Reads the run's Job once; `None` when it does not exist (or nothing executes runs).
    async fn observe(&self, run_id: i64) -> Result<Option<JobObservation>, LaunchError>;
    /// Deletes the run's Job and its pods; Ok when already gone.
    async fn cancel(&self, run_id: i64) -> Result<(), LaunchError>;
    /// Why run `run_id` failed, beyond what its Job says (best effort, bounded; `None` when
    /// nothing more is known).
    async fn failure_detail(&self, _run_id: i64) -> Option<String> {
        None
    }
    /// Short name for logs and `/api/settings/`.
    fn name(&self) -> &'static str;
    /// What this executor does, and why it was chosen, for the start-up log.
    fn describe(&self) -> String {
        self.name().to_string()
    }
    /// How a [`LaunchError::Rejected`] reads in the run's `status_message`.
    fn rejection_prefix(&self) -> &'static str {
        "Kubernetes rejected the run"
    }
    /// Called once the server listens: executors that report back (the local runner) keep a
    /// weak reference to the runs service, through which they move their runs, and learn the
    /// loopback address of the service.
    fn attach(&self, _runs: &RunService, _listening: SocketAddr) {}
    /// Called after a `Launched` or `Queued` outcome was stored: only then may an executor
    /// move the run further (so its own updates never race the launch record).
    fn recorded(&self, _run_id: i64) {}
    /// The `server_url` runs of this executor call back to, when it is not the configured one.
    fn callback_base_url(&self) -> Option<String> {
        None
    }
    /// The service is stopping: stop what this executor runs (their runs end `failed`).
    async fn shutdown(&self) {}
    /// Whether stored runs wait in this executor's own queue (the local runner) rather than
    /// starting at once (Kubernetes): decides which per-user limit refuses new runs
    /// (`crate::runs::quota`).
    fn queues(&self) -> bool {
        false
    }
    /// The runs waiting in this executor's queue, `None` without a queue.
    fn waiting(&self) -> Option<Waiting> {
        None
    }
}

/// Records runs without executing them: used when no Kubernetes cluster is configured.
/// Runs it receives end up `pending` with a message saying why.
pub struct RecordingLauncher {
    reason: String,
    launched: std::sync::Mutex<Vec<i64>>,
}

impl RecordingLauncher {
    /// A recorder that explains runs are not executed for `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            launched: Default::default(),
        }
    }

    /// Ids of the runs handed to this launcher, in order (tests read it).
    pub fn launched(&self) -> Vec<i64> {
        self.launched.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Launcher for RecordingLauncher {
    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        if let Ok(mut l) = self.launched.lock() {
            l.push(req.run_id);
        }
        Ok(LaunchOutcome::NotExecuted {
            message: self.reason.clone(),
        })
    }

    async fn observe(&self, _run_id: i64) -> Result<Option<JobObservation>, LaunchError> {
        Ok(None)
    }

    async fn cancel(&self, _run_id: i64) -> Result<(), LaunchError> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "recording"
    }

    fn describe(&self) -> String {
        format!("runs are recorded, not executed ({})", self.reason)
    }
}
