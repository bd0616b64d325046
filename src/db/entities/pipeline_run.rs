//! `backend_pipelinerun`: one execution of a pipeline, and what it takes to follow it on Kubernetes.

use crate::runs::RunStatus;
use sea_orm::entity::prelude::*;

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
