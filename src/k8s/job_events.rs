//! Job change events from a Knative ApiServerSource (`knative/apiserversource.yaml`, mode
//! `Resource`): the event's data is the whole `batch/v1` Job. The run follows its Job without
//! any polling; replays and out-of-order deliveries are harmless because terminal runs never
//! move again (see [`runs::transition`]).

use super::{objects, status};
use crate::{
    db::entities::pipeline_run,
    error::AppResult,
    runs::{self, RunService, RunStatus},
};
use k8s_openapi::api::batch::v1::Job;
use sea_orm::EntityTrait;

/// Whether a CloudEvent type is an ApiServerSource resource event this module handles.
pub fn is_job_event_type(event_type: &str) -> bool {
    event_type.starts_with("dev.knative.apiserver.resource.")
}

/// The run a Job belongs to, when it is one of ours in the configured runs namespace: our
/// `managed-by` label, a run-id label, and the name derived from that id.
pub fn run_id_of(job: &Job, runs_namespace: &str) -> Option<i64> {
    let labels = job.metadata.labels.as_ref()?;
    if labels.get(objects::MANAGED_BY_LABEL).map(String::as_str) != Some(objects::MANAGED_BY) {
        return None;
    }
    if job.metadata.namespace.as_deref() != Some(runs_namespace) {
        return None;
    }
    let id: i64 = labels.get(objects::RUN_ID_LABEL)?.parse().ok()?;
    (job.metadata.name.as_deref() == Some(objects::object_name(id).as_str())).then_some(id)
}

/// Applies a Job change event (`data` = the Job object) to its run. Returns the run id when
/// the Job belongs to one of our runs, `None` when the event is not about our Jobs (a body that
/// is not a Job, another namespace, no labels, an unknown run).
pub async fn handle(
    service: &RunService,
    event_type: &str,
    data: &serde_json::Value,
) -> AppResult<Option<i64>> {
    let Ok(job) = serde_json::from_value::<Job>(data.clone()) else {
        return Ok(None);
    };
    let Some(run_id) = run_id_of(&job, &service.config.kubernetes.aqbb_namespace) else {
        return Ok(None);
    };
    let Some(run) = pipeline_run::Entity::find_by_id(run_id)
        .one(&service.db)
        .await?
    else {
        return Ok(None);
    };
    // Only a run that was launched follows a Job (a run id reused after a database reset must
    // not pick up an old Job's outcome before its own launch).
    if run.k8s_job_name.as_deref() != job.metadata.name.as_deref() {
        return Ok(None);
    }
    let deleted = event_type.ends_with(".delete");
    let mut obs = status::observe(&job, deleted);
    let before = run.status;
    // Only a run still waiting for its outcome costs a pod read (replays do not).
    if obs.status == RunStatus::Failed
        && !deleted
        && !before.is_terminal()
        && let Some(d) = service.launcher.failure_detail(run_id).await
    {
        obs.message = Some(status::with_detail(obs.message.as_deref(), &d));
    }
    let updated = runs::apply_observation(service, run, &obs).await?;
    let became_succeeded = before != RunStatus::Succeeded && updated.status == RunStatus::Succeeded;
    if became_succeeded && !deleted {
        // Reading the Job through the launcher shortens a succeeded run's retention (best
        // effort, bounded): the event itself cannot write to the cluster.
        let budget = service.config.kubernetes.kube_timeout;
        let _ = tokio::time::timeout(budget, service.launcher.observe(run_id)).await;
    }
    tracing::info!(run_id, event_type, status = %updated.status, "job event applied");
    Ok(Some(run_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ns: &str, name: &str, labels: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"template": {"spec": {"containers": []}}},
        }))
        .unwrap()
    }

    #[test]
    fn only_our_jobs() {
        let ours =
            json!({objects::MANAGED_BY_LABEL: objects::MANAGED_BY, objects::RUN_ID_LABEL: "7"});
        assert_eq!(
            run_id_of(&job("runs", "aq-run-7", ours.clone()), "runs"),
            Some(7)
        );
        assert_eq!(
            run_id_of(&job("other", "aq-run-7", ours.clone()), "runs"),
            None
        );
        assert_eq!(run_id_of(&job("runs", "aq-run-8", ours), "runs"), None);
        let theirs = json!({objects::MANAGED_BY_LABEL: "helm", objects::RUN_ID_LABEL: "7"});
        assert_eq!(run_id_of(&job("runs", "aq-run-7", theirs), "runs"), None);
        assert_eq!(run_id_of(&job("runs", "aq-run-7", json!({})), "runs"), None);
        assert!(is_job_event_type("dev.knative.apiserver.resource.update"));
        assert!(!is_job_event_type("org.eoepca.pipeline.execute"));
    }
}
