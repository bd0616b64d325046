//! The Kubernetes [`Launcher`]: a thin kube-rs client around the pure builders of
//! [`super::objects`]. Every API call is bounded by `KUBE_TIMEOUT_MS`; nothing sleeps or polls.
//!
//! Launch = two round trips: create the Job (its uid is needed for owner references), then the
//! ConfigMap, Secret and PVC concurrently. `AlreadyExists` means an earlier attempt got there:
//! the Job is reused, and the Secret gets the new callback token (every launch attempt issues a
//! new one). The Job's pod waits for its volumes, so creating the Job first costs nothing.

use super::{
    objects::{self, RunSettings},
    status,
};
use crate::runs::{
    RunStatus,
    launcher::{JobObservation, LaunchError, LaunchOutcome, LaunchRequest, Launcher},
};
use async_trait::async_trait;
use k8s_openapi::api::{
    authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec},
    batch::v1::Job,
    core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use std::{future::Future, time::Duration};

/// Starts, observes and cancels runs as Jobs in one namespace.
#[derive(Clone)]
pub struct KubeLauncher {
    client: Client,
    settings: RunSettings,
    timeout: Duration,
}

/// Whether an error is the API server's `409 AlreadyExists`.
fn already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// Maps a kube error to the launcher's two outcomes. Validation (400/413/422) and quota
/// refusals are final: the run fails with the API server's message. Everything else
/// (unreachable, timeouts, 5xx, 429, and also 401/403/404, which a fixed deployment cures)
/// is "unavailable": the caller gets 503 and a redelivered event resumes the launch.
pub fn classify(what: &str, e: kube::Error) -> LaunchError {
    match e {
        kube::Error::Api(s) => {
            let msg = if s.message.is_empty() {
                format!("{} {}", s.code, s.reason)
            } else {
                s.message.clone()
            };
            match s.code {
                400 | 413 | 422 => LaunchError::Rejected(msg),
                403 if msg.contains("exceeded quota") => LaunchError::Rejected(msg),
                401 | 403 => LaunchError::Unavailable(format!(
                    "{what} forbidden ({msg}); check the service account's RBAC (knative/rbac.yaml)"
                )),
                _ => LaunchError::Unavailable(format!("{what}: {msg}")),
            }
        }
        other => LaunchError::Unavailable(format!("{what}: {other}")),
    }
}

impl KubeLauncher {
    /// A launcher using `client` for the runs namespace of `settings`.
    pub fn new(client: Client, settings: RunSettings, timeout: Duration) -> Self {
        Self {
            client,
            settings,
            timeout,
        }
    }

    /// The settings objects are built with.
    pub fn settings(&self) -> &RunSettings {
        &self.settings
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    /// Runs one API call within the configured time.
    async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<Result<T, kube::Error>, LaunchError> {
        tokio::time::timeout(self.timeout, fut).await.map_err(|_| {
            LaunchError::Unavailable(format!(
                "{what}: no answer from the Kubernetes API within {} ms",
                self.timeout.as_millis()
            ))
        })
    }

    /// One call whose only acceptable failure is `AlreadyExists` (then `Ok(None)`).
    async fn create<K>(&self, what: &str, obj: &K) -> Result<Option<K>, LaunchError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        match self
            .call(what, self.api::<K>().create(&PostParams::default(), obj))
            .await?
        {
            Ok(created) => Ok(Some(created)),
            Err(e) if already_exists(&e) => Ok(None),
            Err(e) => Err(classify(what, e)),
        }
    }

    /// Checks once that the API server answers and lets us create Jobs in the runs namespace
    /// (`KUBERNETES=on` at start-up). One SelfSubjectAccessReview: allowed to every user.
    pub async fn check(&self) -> Result<(), LaunchError> {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some("batch".into()),
                    resource: Some("jobs".into()),
                    verb: Some("create".into()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let answer = self
            .call("access review", api.create(&PostParams::default(), &review))
            .await?
            .map_err(|e| classify("access review", e))?;
        if answer.status.is_some_and(|s| s.allowed) {
            Ok(())
        } else {
            Err(LaunchError::Unavailable(format!(
                "this service account may not create Jobs in namespace {:?}; apply knative/rbac.yaml",
                self.settings.namespace
            )))
        }
    }

    async fn ensure_secret(
        &self,
        req: &LaunchRequest,
        owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Result<(), LaunchError> {
        let secret = objects::secret(req, &self.settings, owner);
        if self.create("creating the Secret", &secret).await?.is_some() {
            return Ok(());
        }
        // A resumed launch. Tokens are derived per run, so this writes the same token again;
        // it differs only if the signing key changed since, and then the stored hash did too.
        let patch = json!({ "data": objects::secret_data(req, &self.settings) });
        self.call(
            "updating the Secret",
            self.api::<Secret>().patch(
                &objects::object_name(req.run_id),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            ),
        )
        .await?
        .map(|_| ())
        .map_err(|e| classify("updating the Secret", e))
    }

    /// The pods of a run (its Job's, and its step pods, which Calrissian labels alike); `None`
    /// when they cannot be read (logged: what they would add is a detail).
    async fn run_pods(&self, run_id: i64) -> Option<Vec<Pod>> {
        let lp = ListParams::default().labels(&format!("{}={run_id}", objects::RUN_ID_LABEL));
        match self
            .call("listing the run's pods", self.api::<Pod>().list(&lp))
            .await
        {
            Ok(Ok(pods)) => Some(pods.items),
            Ok(Err(e)) => {
                tracing::warn!(run_id, error = %e, "could not read the run's pods");
                None
            }
            Err(e) => {
                tracing::warn!(run_id, error = %e, "could not read the run's pods");
                None
            }
        }
    }

    /// Shortens a succeeded Job's retention to the succeeded one (best effort, logged).
    async fn settle_retention(&self, job: &Job) {
        let current = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished);
        let wanted = self.settings.succeeded_retention_secs;
        let Some(name) = job.metadata.name.as_deref() else {
            return;
        };
        if current == Some(wanted) || job.metadata.deletion_timestamp.is_some() {
            return;
        }
        let patch = json!({"spec": {"ttlSecondsAfterFinished": wanted}});
        let result = self
            .call(
                "shortening the Job's retention",
                self.api::<Job>()
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await;
        match result {
            Ok(Ok(_)) => tracing::debug!(job = name, ttl = wanted, "succeeded run's retention set"),
            Ok(Err(e)) => tracing::warn!(job = name, error = %e, "could not shorten retention"),
            Err(e) => tracing::warn!(job = name, error = %e, "could not shorten retention"),
        }
    }
}

#[async_trait]
impl Launcher for KubeLauncher {
    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        let name = objects::object_name(req.run_id);
        let job = objects::job(req, &self.settings);
        let uid = match self.create("creating the Job", &job).await? {
            Some(created) => created.metadata.uid,
            None => {
                let existing = self
                    .call("reading the Job", self.api::<Job>().get(&name))
                    .await?
                    .map_err(|e| classify("reading the Job", e))?;
                if existing.metadata.deletion_timestamp.is_some() {
                    return Err(LaunchError::Unavailable(format!(
                        "the Job {name} of an earlier attempt is still being deleted"
                    )));
                }
                existing.metadata.uid
            }
        }
        .ok_or_else(|| {
            LaunchError::Unavailable("the API server returned a Job without uid".into())
        })?;
        let owner = objects::owner_reference(&name, &uid);
        let cm = objects::config_map(req, &self.settings, &owner);
        let pvc = objects::pvc(req, &self.settings, &owner);
        let (cm, secret, pvc) = tokio::join!(
            self.create::<ConfigMap>("creating the ConfigMap", &cm),
            self.ensure_secret(req, &owner),
            self.create::<PersistentVolumeClaim>("creating the PersistentVolumeClaim", &pvc),
        );
        let result = cm.map(drop).and(secret).and(pvc.map(drop));
        if let Err(LaunchError::Rejected(_)) = &result {
            // The run fails for good (no redelivery resumes it): remove its Job, and with it
            // whatever was created, rather than leave a pod waiting for a missing volume.
            let _ = self.cancel(req.run_id).await;
        }
        result.map(|()| LaunchOutcome::Launched {
            namespace: self.settings.namespace.clone(),
            job_name: name,
        })
    }

    async fn observe(&self, run_id: i64) -> Result<Option<JobObservation>, LaunchError> {
        let name = objects::object_name(run_id);
        // The run's pods are read beside its Job (one round trip of time): a running Job whose
        // pod cannot pull its image is a run that cannot go on.
        let jobs = self.api::<Job>();
        let (job, pods) = tokio::join!(
            self.call("reading the Job", jobs.get_opt(&name)),
            self.run_pods(run_id),
        );
        let job = job?.map_err(|e| classify("reading the Job", e))?;
        let Some(job) = job else {
            // A launched run's Job only disappears when deleted before its outcome was
            // recorded (by hand, or its retention passed unobserved): the run must not stay
            // `running` forever.
            return Ok(Some(JobObservation {
                status: RunStatus::Failed,
                message: Some(status::gone_message()),
                completion_time: None,
            }));
        };
        let mut obs = status::observe(&job, false);
        match obs.status {
            RunStatus::Succeeded => self.settle_retention(&job).await,
            RunStatus::Failed => {
                if let Some(d) = self.failure_detail(run_id).await {
                    obs.message = Some(status::with_detail(obs.message.as_deref(), &d));
                }
            }
            RunStatus::Running => {
                let grace = chrono::Duration::seconds(self.settings.image_pull_grace_secs.into());
                let stuck = pods
                    .as_deref()
                    .and_then(|p| status::image_pull_failure(p, chrono::Utc::now(), grace));
                if let Some(message) = stuck {
                    // Stopped as a cancel would (Calrissian deletes its step pods); the run is
                    // failed first, so the Job's deletion it then hears of changes nothing.
                    if let Err(e) = self.cancel(run_id).await {
                        tracing::warn!(run_id, error = %e, "could not stop a run that cannot pull an image");
                    }
                    tracing::info!(run_id, %message, "run failed: an image cannot be pulled");
                    return Ok(Some(JobObservation {
                        status: RunStatus::Failed,
                        message: Some(message),
                        completion_time: Some(chrono::Utc::now()),
                    }));
                }
            }
            _ => {}
        }
        Ok(Some(obs))
    }

    async fn cancel(&self, run_id: i64) -> Result<(), LaunchError> {
        let name = objects::object_name(run_id);
        // Background: the Job goes now; the garbage collector removes its pods (Calrissian
        // gets SIGTERM and deletes its step pods) and every object owned by the Job.
        match self
            .call(
                "deleting the Job",
                self.api::<Job>().delete(&name, &DeleteParams::background()),
            )
            .await?
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(classify("deleting the Job", e)),
        }
    }

    async fn failure_detail(&self, run_id: i64) -> Option<String> {
        status::failure_detail(&self.run_pods(run_id).await?)
    }

    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn describe(&self) -> String {
        format!(
            "runs execute as Calrissian Jobs ({}) in namespace {}",
            self.settings.calrissian_image, self.settings.namespace
        )
    }
}
