//! What a Job says about its run: pure mapping from a `batch/v1` Job (read from the API server
//! or carried by an ApiServerSource event) to a [`JobObservation`].

use crate::runs::{RunStatus, launcher::JobObservation};
use chrono::{DateTime, Utc};
use k8s_openapi::api::{
    batch::v1::{Job, JobCondition},
    core::v1::{ContainerStatus, Pod},
};

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

/// A Job's failure message followed by what its pods said.
pub fn with_detail(job_message: Option<&str>, detail: &str) -> String {
    match job_message {
        Some(m) => format!("{} {detail}", m.trim_end()),
        None => detail.to_string(),
    }
}

/// Longest failure detail kept in a run's `status_message`.
const DETAIL_MAX_CHARS: usize = 1500;

/// What the pods of a failed Job say about the failure, for the run's `status_message`: the
/// Calrissian container's termination message (the tail of its log, which the kubelet keeps
/// thanks to `terminationMessagePolicy: FallbackToLogsOnError`) without its INFO lines, a
/// container that never started (image not found, missing Secret), or the launcher's
/// failure to post the results. `None` when the pods say nothing useful (they may be gone
/// already).
pub fn failure_detail(pods: &[Pod]) -> Option<String> {
    let mut parts = Vec::new();
    for pod in pods {
        for c in container_statuses(pod) {
            if let Some(d) = container_detail(c) {
                parts.push(d);
            }
        }
    }
    if parts.is_empty() {
        return None;
    }
    let mut text = parts.join(" ");
    if text.chars().count() > DETAIL_MAX_CHARS {
        // The end of a log says most: keep it.
        let skip = text.chars().count() - DETAIL_MAX_CHARS;
        text = format!("…{}", text.chars().skip(skip + 1).collect::<String>());
    }
    Some(text)
}

/// Every container status of a pod, init containers first (none while it has no status).
fn container_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let st = pod.status.as_ref();
    let init = st.and_then(|s| s.init_container_statuses.as_ref());
    let main = st.and_then(|s| s.container_statuses.as_ref());
    init.into_iter().flatten().chain(main.into_iter().flatten())
}

fn container_detail(c: &ContainerStatus) -> Option<String> {
    let state = c.state.as_ref()?;
    if let Some(t) = &state.terminated {
        if t.exit_code == 0 {
            return None;
        }
        let log = t.message.as_deref().map(log_errors).unwrap_or_default();
        let reason = t.reason.as_deref().unwrap_or("Error");
        return Some(if log.is_empty() {
            format!("{}: exited {} ({reason}).", c.name, t.exit_code)
        } else {
            format!("{}: exited {} ({reason}): {log}", c.name, t.exit_code)
        });
    }
    let w = state.waiting.as_ref()?;
    let reason = w.reason.as_deref()?;
    // Waiting to start for a reason that is not just "being created": the pod cannot run.
    if reason == "ContainerCreating" || reason == "PodInitializing" {
        return None;
    }
    Some(match w.message.as_deref() {
        Some(m) if !m.is_empty() => format!("{}: {reason}: {m}", c.name),
        _ => format!("{}: {reason}.", c.name),
    })
}

/// A log tail without terminal colours, INFO lines and runs of blanks, on one line.
fn log_errors(log: &str) -> String {
    let plain = strip_ansi(log);
    let kept: Vec<&str> = plain
        .lines()
        .filter(|l| !l.trim_start().starts_with("INFO"))
        .collect();
    kept.join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameters, then one final byte in @..~.
            for n in chars.by_ref() {
                if ('@'..='~').contains(&n) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Waiting reasons of a container whose image cannot be had. `InvalidImageName` and
/// `ErrImageNeverPull` never change; the others may be a registry's passing failure, so they
/// count once the pod has tried for the grace period.
const PULL_FOR_GOOD: &[&str] = &["InvalidImageName", "ErrImageNeverPull"];
const PULL_FAILING: &[&str] = &["ErrImagePull", "ImagePullBackOff", "RegistryUnavailable"];

/// A running run that cannot go on: one of its pods (the Job's, or a step pod Calrissian
/// started, which carry the run's labels) cannot pull its image, for good or for longer than
/// `grace` since the pod was created. Calrissian waits for such a step pod for ever, so the run
/// would otherwise last until its deadline. The message names the pod, the container, the image
/// and the kubelet's reason.
pub fn image_pull_failure(
    pods: &[Pod],
    now: DateTime<Utc>,
    grace: chrono::Duration,
) -> Option<String> {
    for pod in pods {
        let created = pod
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| to_chrono(&t.0));
        for c in container_statuses(pod) {
            let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
                continue;
            };
            let Some(reason) = w.reason.as_deref() else {
                continue;
            };
            let for_good = PULL_FOR_GOOD.contains(&reason);
            let long_enough = PULL_FAILING.contains(&reason)
                && created.is_none_or(|t| now.signed_duration_since(t) >= grace);
            if !(for_good || long_enough) {
                continue;
            }
            let pod_name = pod.metadata.name.as_deref().unwrap_or("?");
            let message = w
                .message
                .as_deref()
                .map(|m| format!(": {}", m.trim()))
                .unwrap_or_default();
            let mut text = format!(
                "The image {:?} of pod {pod_name} (container {}) cannot be pulled ({reason}{message}). \
                 The run was stopped: its tool cannot run on this cluster until the image can be \
                 pulled (a registry the cluster reaches, or the image loaded on its nodes).",
                c.image, c.name
            );
            if text.chars().count() > DETAIL_MAX_CHARS {
                text = text.chars().take(DETAIL_MAX_CHARS).collect();
            }
            return Some(text);
        }
    }
    None
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

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "aq-run-1-x"}, "status": status}))
            .unwrap()
    }

    /// The tail of a real Calrissian log of a failed clone (a local node, Calrissian 0.18.1).
    const CALRISSIAN_TAIL: &str = "\u{1b}[1;30mINFO\u{1b}[0m [step clone] start\n\
        \u{1b}[1;30mERROR\u{1b}[0m the command below failed in pod clone-container:\n\
        \tsh -c 'set -eu' clone git://10.213.0.1:29418/missing.git ''\n\
        \u{1b}[1;30mERROR\u{1b}[0m Workflow error, try again with --debug for more information:\n\
        (\"Error collecting output for parameter 'repo_directory': Did not find output\n\
        \x20                file with glob pattern: ['repo'].\", {})\n";

    #[test]
    fn failure_detail_from_calrissian_log_tail() {
        let p = pod(json!({"initContainerStatuses": [{
            "name": "calrissian", "ready": false, "restartCount": 0, "image": "c", "imageID": "",
            "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": CALRISSIAN_TAIL}}
        }], "containerStatuses": [{
            "name": "report", "ready": false, "restartCount": 0, "image": "r", "imageID": "",
            "state": {"waiting": {"reason": "PodInitializing"}}
        }]}));
        let d = failure_detail(&[p]).unwrap();
        assert!(
            d.starts_with("calrissian: exited 1 (Error): ERROR the command below failed"),
            "{d}"
        );
        assert!(
            d.contains("clone git://10.213.0.1:29418/missing.git"),
            "{d}"
        );
        assert!(
            d.contains("Did not find output file with glob pattern: ['repo']"),
            "{d}"
        );
        assert!(!d.contains("INFO") && !d.contains('\u{1b}'), "{d}");
    }

    fn step_pod(created: &str, reason: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "notebook-bp-validator-step-pod-abc", "creationTimestamp": created},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "notebook-bp-validator-step-container", "ready": false, "restartCount": 0,
                "image": "eoepca/notebook-bp-validator:2025-05-12.1", "imageID": "",
                "state": {"waiting": {"reason": reason,
                    "message": "Back-off pulling image \"eoepca/notebook-bp-validator:2025-05-12.1\""}}
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_that_cannot_pull_its_image_fails_the_run_after_the_grace() {
        let now = DateTime::parse_from_rfc3339("2025-01-02T03:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let grace = chrono::Duration::seconds(60);
        // Created 30 s ago: a registry may be failing for a moment.
        let young = step_pod("2025-01-02T03:04:30Z", "ImagePullBackOff");
        assert_eq!(image_pull_failure(&[young], now, grace), None);
        // Created 2 minutes ago, still failing: the run is failed, the message names it all.
        let old = step_pod("2025-01-02T03:03:00Z", "ErrImagePull");
        let m = image_pull_failure(&[old], now, grace).unwrap();
        assert!(
            m.starts_with("The image \"eoepca/notebook-bp-validator:2025-05-12.1\" of pod notebook-bp-validator-step-pod-abc (container notebook-bp-validator-step-container) cannot be pulled (ErrImagePull: Back-off pulling image"),
            "{m}"
        );
        // An invalid name never gets better: at once.
        let invalid = step_pod("2025-01-02T03:04:59Z", "InvalidImageName");
        assert!(image_pull_failure(&[invalid], now, grace).is_some());
        // Other waiting reasons are not pull failures, whatever the pod's age.
        let creating = step_pod("2025-01-02T03:00:00Z", "ContainerCreating");
        assert_eq!(image_pull_failure(&[creating], now, grace), None);
        // A grace of zero: the first failure counts.
        let young = step_pod("2025-01-02T03:05:00Z", "ErrImagePull");
        assert!(image_pull_failure(&[young], now, chrono::Duration::zero()).is_some());
        assert_eq!(image_pull_failure(&[], now, grace), None);
    }

    #[test]
    fn failure_detail_of_pods_that_never_ran_or_said_nothing() {
        let never = pod(json!({"initContainerStatuses": [{
            "name": "calrissian", "ready": false, "restartCount": 0, "image": "c", "imageID": "",
            "state": {"waiting": {"reason": "ErrImageNeverPull",
                                  "message": "Container image \"c\" is not present"}}
        }]}));
        assert_eq!(
            failure_detail(&[never]).as_deref(),
            Some("calrissian: ErrImageNeverPull: Container image \"c\" is not present")
        );
        let fine = pod(json!({"containerStatuses": [{
            "name": "report", "ready": false, "restartCount": 0, "image": "r", "imageID": "",
            "state": {"terminated": {"exitCode": 0}}
        }]}));
        assert_eq!(failure_detail(&[fine]), None);
        assert_eq!(failure_detail(&[]), None);
        let long = pod(json!({"initContainerStatuses": [{
            "name": "calrissian", "ready": false, "restartCount": 0, "image": "c", "imageID": "",
            "state": {"terminated": {"exitCode": 1, "message": "ERROR x ".repeat(1000)}}
        }]}));
        assert!(failure_detail(&[long]).unwrap().chars().count() <= DETAIL_MAX_CHARS);
    }
}
