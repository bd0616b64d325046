//! What a Job says about its run: pure mapping from a `batch/v1` Job (read from the API server
//! or carried by an ApiServerSource event) to a [`JobObservation`].

use crate::runs::{RunStatus, launcher::JobObservation};
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{Job, JobCondition};

fn true_condition<'a>(job: &'a Job, kind: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
}

/// The run status a Job stands for. `deleted` says the Job is gone (a `delete` event, or being
/// deleted): a Job that disappears before finishing means the run failed.
pub fn observe(job: &Job, deleted: bool) -> JobObservation {
    if let Some(c) = true_condition(job, "Complete") {
        let completion = job
            .status
            .as_ref()
            .and_then(|s| s.completion_time.as_ref())
            .or(c.last_transition_time.as_ref())
            .map(|t| to_chrono(&t.0));
        return JobObservation {
            status: RunStatus::Succeeded,
            message: None,
            completion_time: completion.flatten(),
        };
    }
    if let Some(c) = true_condition(job, "Failed") {
        let reason = c.reason.as_deref().unwrap_or("Failed");
        let message = match c.message.as_deref() {
            Some(m) if !m.is_empty() => format!("Job failed ({reason}): {m}"),
            _ => format!("Job failed ({reason})."),
        };
        return JobObservation {
            status: RunStatus::Failed,
            message: Some(message),
            completion_time: c
                .last_transition_time
                .as_ref()
                .and_then(|t| to_chrono(&t.0)),
        };
    }
    if deleted || job.metadata.deletion_timestamp.is_some() {
        return JobObservation {
            status: RunStatus::Failed,
            message: Some(gone_message()),
            completion_time: job
                .metadata
                .deletion_timestamp
                .as_ref()
                .and_then(|t| to_chrono(&t.0)),
        };
    }
    JobObservation {
        status: RunStatus::Running,
        message: None,
        completion_time: None,
    }
}

/// A Kubernetes timestamp as chrono time.
fn to_chrono(t: &k8s_openapi::jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)
}

/// Why a run failed when its Job vanished before its outcome was recorded.
pub fn gone_message() -> String {
    "The run's Kubernetes Job was deleted before it finished.".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(status: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "aq-run-1", "namespace": "runs"},
            "spec": {"template": {"spec": {"containers": []}}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn running_complete_failed() {
        let o = observe(&job(json!({"active": 1})), false);
        assert_eq!(o.status, RunStatus::Running);
        let o = observe(
            &job(
                json!({"succeeded": 1, "completionTime": "2025-01-02T03:04:05Z",
                "conditions": [{"type": "Complete", "status": "True",
                                "lastTransitionTime": "2025-01-02T03:04:06Z"}]}),
            ),
            false,
        );
        assert_eq!(o.status, RunStatus::Succeeded);
        assert_eq!(
            o.completion_time.unwrap().to_rfc3339(),
            "2025-01-02T03:04:05+00:00"
        );
        let o = observe(
            &job(
                json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True",
                "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": "2025-01-02T03:04:06Z"}]}),
            ),
            false,
        );
        assert_eq!(o.status, RunStatus::Failed);
        assert_eq!(
            o.message.as_deref(),
            Some("Job failed (BackoffLimitExceeded): Job has reached the specified backoff limit")
        );
        assert!(o.completion_time.is_some());
        let o = observe(&job(json!({"active": 1})), true);
        assert_eq!(o.status, RunStatus::Failed);
        // A condition that is not True does not count.
        let o = observe(
            &job(json!({"conditions": [{"type": "Failed", "status": "False"}]})),
            false,
        );
        assert_eq!(o.status, RunStatus::Running);
    }
}
