//! `backend_pipelinerun`: one execution of a pipeline, and what it takes to follow it on Kubernetes.

use sea_orm::{Iterable, entity::prelude::*};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "backend_pipelinerun")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub pipeline_id: i64,
    /// Calrissian usage report once known; `""` before (as the reference).
    #[sea_orm(column_type = "JsonBinary")]
    pub usage_report: Json,
    pub start_time: DateTimeUtc,
    pub completion_time: Option<DateTimeUtc>,
    /// Written only by the run state machine ([`crate::runs::transition`]).
    pub status: RunStatus,
    /// Why the run is in its status (launch error, failure reason, "no cluster configured").
    #[sea_orm(column_type = "Text", nullable)]
    pub status_message: Option<String>,
    /// Flattened parameters: `"<subworkflow>.<tool>.<input>"` plus `pipeline_id`, `run_id`, `server_url`.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub inputs: Option<Json>,
    /// The `{"parameters": ...}` document the run was requested with.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub parameters: Option<Json>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub output: Option<Json>,
    #[sea_orm(column_type = "Text", nullable)]
    pub executed_cwl: Option<String>,
    pub started_by_id: Option<i64>,
    /// Slug of the trigger that started the run, if any.
    pub triggered_by: Option<String>,
    /// SHA-256 (hex) of the per-run callback token; the token itself is never stored.
    pub callback_token_hash: Option<String>,
    /// Kubernetes namespace and Job name once launched.
    pub k8s_namespace: Option<String>,
    pub k8s_job_name: Option<String>,
    pub launched_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
    /// Summed job-report counters and the verdict, written when the run ends; `""` before
    /// (as the reference). See [`crate::quality`].
    #[sea_orm(column_type = "JsonBinary")]
    pub digest: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Status of a run, stored as its lower-case name (the reference's values plus `pending`).
/// Only the run state machine (`crate::runs::transition`) writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(100))")]
pub enum RunStatus {
    /// Created; objects being created in the cluster, or waiting for a local slot.
    #[sea_orm(string_value = "starting")]
    Starting,
    /// Recorded but not executed (no executor configured).
    #[sea_orm(string_value = "pending")]
    Pending,
    /// The Job (or the local process) exists.
    #[sea_orm(string_value = "running")]
    Running,
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Cancelled by a user.
    #[sea_orm(string_value = "killed")]
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
        Self::iter().find(|status| status.as_str() == s)
    }

    /// No further transition is expected.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Killed | RunStatus::Pending
        )
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// The verdicts stored in a run's digest are read here, below the verdict logic
// (`crate::quality`), because the commit-status outbox (`crate::statuses`), which the verdict
// logic feeds, reads them too.

/// `digest_quality` of a run as the API shows it: the computed verdict, `undefined` before the
/// run ended (the manual override is under `digest.manual`, as the reference).
pub fn digest_quality(digest: &Value) -> &str {
    match digest {
        Value::Object(m) if !m.is_empty() => m
            .get("digest_quality")
            .and_then(Value::as_str)
            .unwrap_or("undefined"),
        _ => "undefined",
    }
}

/// The verdict that counts for commit statuses: the manual one when staff set it, else the
/// computed one.
pub fn effective_quality(digest: &Value) -> &str {
    digest
        .get("manual")
        .and_then(|m| m.get("digest_quality"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| digest_quality(digest))
}
