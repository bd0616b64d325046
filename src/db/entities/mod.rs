//! SeaORM entities, one module per table. Table names follow the reference backend
//! (`backend_*`, `auth_user`) so dashboards that query the database directly keep working.

pub mod command_line_tool;
pub mod commit_status;
pub mod identity;
pub mod job_report;
pub mod kv_setting;
pub mod pipeline;
pub mod pipeline_run;
pub mod pipeline_tool;
pub mod received_event;
pub mod revoked_session;
pub mod subworkflow;
pub mod subworkflow_tag;
pub mod subworkflow_tool;
pub mod tag;
pub mod trigger;
pub mod trigger_event;
pub mod trigger_type;
pub mod user;
