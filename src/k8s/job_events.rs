//! Job change events from a Knative ApiServerSource (to be written).

use crate::{error::AppResult, state::AppState};

/// Whether a CloudEvent type is an ApiServerSource resource event this module handles.
pub fn is_job_event_type(event_type: &str) -> bool {
    event_type.starts_with("dev.knative.apiserver.resource.")
}

/// Applies a Job change event (`data` = the Job object) to its run. Returns the run id when
/// the Job belongs to one of our runs, `None` when the event is not about our Jobs.
pub async fn handle(
    _state: &AppState,
    _event_type: &str,
    _data: &serde_json::Value,
) -> AppResult<Option<i64>> {
    Ok(None)
}
