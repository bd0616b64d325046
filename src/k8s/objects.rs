//! Pure builders of every Kubernetes object of a run, from a [`LaunchRequest`] and the
//! [`RunSettings`] taken from the configuration. No I/O here: everything is unit-tested.
//!
//! Per run `N` (all named [`object_name`]`(N)` = `aq-run-N`, in the one runs namespace):
//! - the **Job**, created first; every other object names it as its owner, so deleting the Job
//!   (cancel, or `ttlSecondsAfterFinished`) lets the garbage collector delete everything else;
//! - a **ConfigMap** with `workflow.cwl` (the rendered CWL), `params.yml` (the flattened
//!   parameters as YAML) and `pod-labels.yml` (the run's labels, which Calrissian gives every
//!   step pod, so the service finds them: a step whose image cannot be pulled fails the run);
//! - a **Secret** with the callback `token` and `pod_env_vars.json`, the environment Calrissian
//!   gives every step pod (`AQ_CALLBACK_URL`, `AQ_CALLBACK_TOKEN`, ...) so job reports can
//!   authenticate;
//! - a ReadWriteMany **PersistentVolumeClaim**, Calrissian's working directory.
//!
//! The Job's pod has one container: a small Python launcher ([`LAUNCH_SCRIPT`]) runs Calrissian
//! and, when it succeeds, posts `output.json` and `report.json` to the results callback. When
//! Calrissian fails, nothing is posted and the Job fails (`restartPolicy: Never`,
//! `backoffLimit: 0`). One container rather than Calrissian then a posting container: a real
//! node's kubelet notices a container's end only at its next relist (every second), so each
//! extra container in sequence costs about a second of every run.
//!
//! Nothing of a run runs as root ([`pod_security_context`], [`container_security_context`]):
//! the pod runs as `AQBB_RUN_AS_USER`/`AQBB_RUN_AS_GROUP` (non-root enforced, the runtime's
//! default seccomp profile), its containers without privilege escalation and with every
//! capability dropped, and the run's volume belongs to the run's group (`fsGroup`). Calrissian
//! starts each step pod as its own user and group (Calrissian 0.18: the step pods'
//! `securityContext` is `runAsUser`/`runAsGroup` of the Calrissian process), so the steps run as
//! that user too; it sets nothing else on them, which is why the runs namespace enforces Pod
//! Security `baseline` and only warns about `restricted` (`knative/rbac.yaml`). Where the
//! storage ignores `fsGroup` (hostPath, many NFS provisioners), `AQBB_WORKDIR_CHOWN` starts the
//! container as root with only `CHOWN`, `SETUID` and `SETGID`: the launcher gives the empty
//! volume to the run's user and becomes that user for good before Calrissian starts (no
//! escalation is possible afterwards: no capability is kept and `no_new_privs` is set).

use crate::{config::Config, runs::launcher::LaunchRequest};
use k8s_openapi::{
    ByteString,
    api::{
        batch::v1::{Job, JobSpec},
        core::v1::{
            Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource,
            KeyToPath, LocalObjectReference, ObjectFieldSelector, PersistentVolumeClaim,
            PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSecurityContext,
            PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, Secret,
            SecretVolumeSource, SecurityContext, Volume, VolumeMount, VolumeResourceRequirements,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{ObjectMeta, OwnerReference},
    },
};
use serde_json::json;
use std::collections::BTreeMap;

/// Label every object of ours carries (the ApiServerSource selects Jobs by it).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "application-quality-api";
/// Label with the run id.
pub const RUN_ID_LABEL: &str = "application-quality.eoepca.org/run-id";
/// Label with the pipeline id.
pub const PIPELINE_ID_LABEL: &str = "application-quality.eoepca.org/pipeline-id";
/// Annotation carrying the W3C `traceparent` of the request that started the run.
pub const TRACEPARENT_ANNOTATION: &str = "application-quality.eoepca.org/traceparent";

/// Seconds a cancelled run's pod gets between SIGTERM and SIGKILL.
pub const CANCEL_GRACE_SECS: i64 = 30;
/// Name of the Job pod's container (the launcher and Calrissian).
pub const CALRISSIAN_CONTAINER: &str = "calrissian";
/// The launcher the Calrissian container runs (`python3 -c`): see the module documentation.
pub const LAUNCH_SCRIPT: &str = include_str!("launch.py");
/// Where the working volume is mounted (Calrissian's `--outdir`, `output.json`, `report.json`).
pub const WORKDIR: &str = "/calrissian";
/// ConfigMap keys.
pub const CWL_KEY: &str = "workflow.cwl";
pub const PARAMS_KEY: &str = "params.yml";
/// The labels Calrissian puts on every step pod (`--pod-labels`).
pub const POD_LABELS_KEY: &str = "pod-labels.yml";
/// Secret keys.
pub const TOKEN_KEY: &str = "token";
pub const POD_ENV_KEY: &str = "pod_env_vars.json";

/// Name shared by all objects of run `run_id` (each of a different kind).
pub fn object_name(run_id: i64) -> String {
    format!("aq-run-{run_id}")
}

/// Parses a run id back from an object name made by [`object_name`].
pub fn run_id_of_name(name: &str) -> Option<i64> {
    name.strip_prefix("aq-run-")?.parse().ok()
}

/// The deployment settings that shape a run's objects (the `AQBB_*` variables).
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    pub namespace: String,
    pub storage_class: String,
    pub volume_size: String,
    pub calrissian_image: String,
    pub max_cores: String,
    pub max_ram: String,
    pub calrissian_cpu: String,
    pub calrissian_cpu_limit: String,
    pub calrissian_memory: String,
    pub image_pull_secret: Option<String>,
    pub service_account: String,
    pub succeeded_retention_secs: i32,
    pub failed_retention_secs: i32,
    /// `None` = no wall-time limit.
    pub active_deadline_secs: Option<i64>,
    /// User and group of every run's pods (never root).
    pub run_as_user: i64,
    pub run_as_group: i64,
    /// Whether the launcher gives the volume to the run's user (storage without `fsGroup`).
    pub workdir_chown: bool,
    /// git's timeouts and allowed protocols, for every step pod ([`crate::pipelines::repos::git_env`]).
    pub git_env: Vec<(String, String)>,
    /// Seconds a pod of a run may fail to pull its image before the run is failed.
    pub image_pull_grace_secs: u32,
}

impl RunSettings {
    /// The settings of a configuration.
    pub fn from_config(c: &Config) -> Self {
        Self {
            namespace: c.kubernetes.aqbb_namespace.clone(),
            storage_class: c.kubernetes.aqbb_storageclass.clone(),
            volume_size: c.kubernetes.aqbb_volumesize.clone(),
            calrissian_image: c.kubernetes.aqbb_calrissianimage.clone(),
            max_cores: c.kubernetes.aqbb_maxcores.clone(),
            max_ram: c.kubernetes.aqbb_maxram.clone(),
            calrissian_cpu: c.kubernetes.aqbb_calrissian_cpu.clone(),
            calrissian_cpu_limit: c.kubernetes.aqbb_calrissian_cpu_limit.clone(),
            calrissian_memory: c.kubernetes.aqbb_calrissian_memory.clone(),
            image_pull_secret: c
                .kubernetes
                .aqbb_secret
                .clone()
                .filter(|s| !s.trim().is_empty()),
            service_account: c.kubernetes.aqbb_serviceaccount.clone(),
            succeeded_retention_secs: c.runs.aqbb_succeeded_retention_secs,
            failed_retention_secs: c.runs.aqbb_failed_retention_secs,
            active_deadline_secs: Some(c.runs.aqbb_active_deadline_secs).filter(|s| *s > 0),
            run_as_user: c.kubernetes.aqbb_run_as_user,
            run_as_group: c.kubernetes.aqbb_run_as_group,
            workdir_chown: c.kubernetes.aqbb_workdir_chown,
            git_env: crate::pipelines::repos::git_env(c),
            image_pull_grace_secs: c.kubernetes.aqbb_image_pull_grace_secs,
        }
    }
}

/// The labels of every object of a run.
pub fn labels(req: &LaunchRequest) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (RUN_ID_LABEL.to_string(), req.run_id.to_string()),
        (PIPELINE_ID_LABEL.to_string(), req.pipeline_id.to_string()),
    ])
}

fn metadata(req: &LaunchRequest, s: &RunSettings, owner: Option<&OwnerReference>) -> ObjectMeta {
    ObjectMeta {
        name: Some(object_name(req.run_id)),
        namespace: Some(s.namespace.clone()),
        labels: Some(labels(req)),
        annotations: req
            .traceparent
            .as_ref()
            .map(|t| BTreeMap::from([(TRACEPARENT_ANNOTATION.to_string(), t.clone())])),
        owner_references: owner.map(|o| vec![o.clone()]),
        ..Default::default()
    }
}

/// The owner reference the run's other objects carry. Not `blockOwnerDeletion`: that would
/// need `update` on `jobs/finalizers` where the OwnerReferencesPermissionEnforcement admission
/// plugin is on, and nothing needs the Job to wait for its dependents.
pub fn owner_reference(job_name: &str, job_uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job_name.into(),
        uid: job_uid.into(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// URL the launcher posts the results to.
pub fn results_url(callback_url: &str, pipeline_id: i64, run_id: i64) -> String {
    format!(
        "{}/api/pipelines/{pipeline_id}/runs/{run_id}/results/",
        callback_url.trim_end_matches('/')
    )
}

/// `params.yml`: the flattened parameters as a YAML mapping (keys sorted).
pub fn params_yaml(req: &LaunchRequest) -> String {
    serde_yaml::to_string(&req.params).unwrap_or_else(|_| "{}\n".into())
}

/// `pod-labels.yml`: the labels of the run's step pods, its run and pipeline ids (not
/// [`MANAGED_BY_LABEL`], which selects the run's Jobs).
pub fn step_pod_labels_yaml(req: &LaunchRequest) -> String {
    let labels = BTreeMap::from([
        (RUN_ID_LABEL, req.run_id.to_string()),
        (PIPELINE_ID_LABEL, req.pipeline_id.to_string()),
    ]);
    serde_yaml::to_string(&labels).unwrap_or_else(|_| "{}\n".into())
}

/// The ConfigMap with the CWL document, its parameters and the step pods' labels.
pub fn config_map(req: &LaunchRequest, s: &RunSettings, owner: &OwnerReference) -> ConfigMap {
    ConfigMap {
        metadata: metadata(req, s, Some(owner)),
        data: Some(BTreeMap::from([
            (CWL_KEY.to_string(), req.cwl.clone()),
            (PARAMS_KEY.to_string(), params_yaml(req)),
            (POD_LABELS_KEY.to_string(), step_pod_labels_yaml(req)),
        ])),
        ..Default::default()
    }
}

/// The environment Calrissian adds to every step pod (`--pod-env-vars`): the callback, and
/// git's timeouts and allowed protocols (`GIT_HTTP_LOW_SPEED_*`, `GIT_SSH_COMMAND`,
/// `GIT_ALLOW_PROTOCOL`), so a repository server that never answers cannot hold a run.
pub fn pod_env_vars(req: &LaunchRequest, s: &RunSettings) -> serde_json::Value {
    let mut env = json!({
        "AQ_CALLBACK_URL": req.callback_url,
        "AQ_CALLBACK_TOKEN": req.callback_token,
        "AQ_PIPELINE_ID": req.pipeline_id.to_string(),
        "AQ_RUN_ID": req.run_id.to_string(),
    });
    for (name, value) in &s.git_env {
        env[name] = json!(value);
    }
    env
}

/// The data of the run's Secret (also what a resumed launch writes over an existing one).
pub fn secret_data(req: &LaunchRequest, s: &RunSettings) -> BTreeMap<String, ByteString> {
    BTreeMap::from([
        (
            TOKEN_KEY.to_string(),
            ByteString(req.callback_token.as_bytes().to_vec()),
        ),
        (
            POD_ENV_KEY.to_string(),
            ByteString(pod_env_vars(req, s).to_string().into_bytes()),
        ),
    ])
}

/// The Secret with the run's callback token.
pub fn secret(req: &LaunchRequest, s: &RunSettings, owner: &OwnerReference) -> Secret {
    Secret {
        metadata: metadata(req, s, Some(owner)),
        type_: Some("Opaque".into()),
        data: Some(secret_data(req, s)),
        ..Default::default()
    }
}

/// The run's ReadWriteMany working volume (Calrissian's step pods mount it too).
pub fn pvc(req: &LaunchRequest, s: &RunSettings, owner: &OwnerReference) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: metadata(req, s, Some(owner)),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteMany".into()]),
            storage_class_name: Some(s.storage_class.clone()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(s.volume_size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Calrissian's command-line arguments (the reference's, without `--debug`, and without
/// cwltool's load-time jshint pass over every expression, which only prints warnings and cost
/// seconds in a container limited to a fraction of a core; the expressions still run).
pub fn calrissian_args(s: &RunSettings) -> Vec<String> {
    [
        "--disable-js-validation",
        "--stdout",
        "/calrissian/output.json",
        "--stderr",
        "/calrissian/stderr.log",
        "--usage-report",
        "/calrissian/report.json",
        "--max-ram",
        &s.max_ram,
        "--max-cores",
        &s.max_cores,
        "--tmp-outdir-prefix",
        "/calrissian/",
        "--outdir",
        "/calrissian/",
        "--pod-env-vars",
        "/pod-env-vars/pod_env_vars.json",
        "--tool-logs-basepath",
        "/calrissian",
        "--pod-labels",
        "/workflow-input/pod-labels.yml",
        "--enable-ext",
        "/workflow-input/workflow.cwl",
        "/workflow-input/params.yml",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

fn quantity_map(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), Quantity(cpu.to_string())),
        ("memory".to_string(), Quantity(memory.to_string())),
    ])
}

/// The pod's security context: the run's user and group, never root, the runtime's default
/// seccomp profile, the volume owned by the run's group.
pub fn pod_security_context(s: &RunSettings) -> PodSecurityContext {
    PodSecurityContext {
        run_as_user: Some(s.run_as_user),
        run_as_group: Some(s.run_as_group),
        fs_group: Some(s.run_as_group),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// Every container's security context: no privilege escalation, no capability.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..Default::default()
    }
}

/// The Calrissian container's security context. Normally that of every container. With
/// `AQBB_WORKDIR_CHOWN` it starts as root with `CHOWN` (to give the empty volume to the run's
/// user), `SETUID` and `SETGID` (to become that user) as its only capabilities and no
/// escalation; the launcher drops all of it before Calrissian or any code of the run starts.
fn calrissian_security_context(s: &RunSettings) -> SecurityContext {
    if !s.workdir_chown {
        return container_security_context();
    }
    SecurityContext {
        run_as_user: Some(0),
        run_as_group: Some(0),
        run_as_non_root: Some(false),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: Some(vec!["CHOWN".into(), "SETUID".into(), "SETGID".into()]),
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only).filter(|r| *r),
        ..Default::default()
    }
}

/// The run's Job. Created with the *failed* retention as `ttlSecondsAfterFinished`, so a run
/// nobody observed keeps its objects for debugging; observing success shortens it.
pub fn job(req: &LaunchRequest, s: &RunSettings) -> Job {
    let name = object_name(req.run_id);
    let env_var = |name: &str, value: String| EnvVar {
        name: name.into(),
        value: Some(value),
        ..Default::default()
    };
    let mut env = vec![
        EnvVar {
            name: "CALRISSIAN_POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    api_version: Some("v1".into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        // The run's user has no home in the image; a writable one for tools that want it.
        env_var("HOME", "/tmp".into()),
        env_var(
            "AQ_RESULTS_URL",
            results_url(&req.callback_url, req.pipeline_id, req.run_id),
        ),
    ];
    if s.workdir_chown {
        env.push(env_var(
            "AQ_RUN_AS",
            format!("{}:{}", s.run_as_user, s.run_as_group),
        ));
    }
    let mut command = vec!["python3".to_string(), "-c".into(), LAUNCH_SCRIPT.into()];
    command.extend(calrissian_args(s));
    let calrissian = Container {
        name: CALRISSIAN_CONTAINER.into(),
        image: Some(s.calrissian_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(command),
        // Calrissian logs to the container's stderr too (`--stderr` tees); when it fails the
        // kubelet keeps the log's tail as the termination message, which the service reads
        // for the run's failure reason (Calrissian writes no termination message itself).
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        env: Some(env),
        security_context: Some(calrissian_security_context(s)),
        resources: Some(ResourceRequirements {
            requests: Some(quantity_map(&s.calrissian_cpu, &s.calrissian_memory)),
            limits: Some(quantity_map(&s.calrissian_cpu_limit, &s.calrissian_memory)),
            ..Default::default()
        }),
        // Calrissian gives its step pods the claims mounted in the pod's first container.
        volume_mounts: Some(vec![
            mount("workflow-input", "/workflow-input", true),
            mount("workdir", WORKDIR, false),
            mount("pod-env-vars", "/pod-env-vars", true),
        ]),
        ..Default::default()
    };
    let volumes = vec![
        Volume {
            name: "workflow-input".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: name.clone(),
                items: Some(vec![
                    KeyToPath {
                        key: CWL_KEY.into(),
                        path: CWL_KEY.into(),
                        mode: Some(0o644),
                    },
                    KeyToPath {
                        key: PARAMS_KEY.into(),
                        path: PARAMS_KEY.into(),
                        mode: Some(0o644),
                    },
                    KeyToPath {
                        key: POD_LABELS_KEY.into(),
                        path: POD_LABELS_KEY.into(),
                        mode: Some(0o644),
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "workdir".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: name.clone(),
                read_only: None,
            }),
            ..Default::default()
        },
        Volume {
            name: "pod-env-vars".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(name.clone()),
                items: Some(vec![KeyToPath {
                    key: POD_ENV_KEY.into(),
                    path: POD_ENV_KEY.into(),
                    mode: Some(0o400),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let meta = metadata(req, s, None);
    Job {
        metadata: meta.clone(),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            ttl_seconds_after_finished: Some(s.failed_retention_secs),
            active_deadline_seconds: s.active_deadline_secs,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: meta.labels,
                    annotations: meta.annotations,
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: Some(s.service_account.clone()),
                    // Calrissian needs its token to create the step pods (which get none: the
                    // namespace's default ServiceAccount does not mount one).
                    automount_service_account_token: Some(true),
                    // Not root, unlike the reference (which ran Calrissian and so every step
                    // as root): see the module documentation.
                    security_context: Some(pod_security_context(s)),
                    // On SIGTERM (cancel) Calrissian deletes its step pods within a second or
                    // two, then never exits (Calrissian 0.18.1: its worker threads keep the
                    // process alive), so a long grace period only keeps the cancelled pod
                    // around: 30 s bounds it and leaves the deletions ample time.
                    termination_grace_period_seconds: Some(CANCEL_GRACE_SECS),
                    image_pull_secrets: s
                        .image_pull_secret
                        .as_ref()
                        .map(|n| vec![LocalObjectReference { name: n.clone() }]),
                    containers: vec![calrissian],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Map;

    pub(crate) fn request() -> LaunchRequest {
        let mut params = Map::new();
        params.insert(
            "clone_subworkflow.clone.repo_url".to_string(),
            json!("https://example.org/r.git"),
        );
        params.insert("pipeline_id".to_string(), json!("17"));
        params.insert("run_id".to_string(), json!("42"));
        params.insert("server_url".to_string(), json!("http://svc:80"));
        LaunchRequest {
            run_id: 42,
            pipeline_id: 17,
            user_id: Some(3),
            cwl: "cwlVersion: v1.2\n$graph: []\n".into(),
            params,
            callback_token: "aqrun_secret".into(),
            callback_url: "http://svc:80".into(),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        }
    }

    fn settings() -> RunSettings {
        let c = Config::from_iter([
            ("AQBB_SECRET".to_string(), "regcred".to_string()),
            ("AQBB_NAMESPACE".to_string(), "runs".to_string()),
        ])
        .unwrap();
        RunSettings::from_config(&c)
    }

    #[test]
    fn names_and_labels() {
        assert_eq!(object_name(42), "aq-run-42");
        assert_eq!(run_id_of_name("aq-run-42"), Some(42));
        assert_eq!(run_id_of_name("other-42"), None);
        let l = labels(&request());
        assert_eq!(l[MANAGED_BY_LABEL], "application-quality-api");
        assert_eq!(l[RUN_ID_LABEL], "42");
    }

    #[test]
    fn job_spec() {
        let (req, s) = (request(), settings());
        let job = job(&req, &s);
        assert_eq!(job.metadata.name.as_deref(), Some("aq-run-42"));
        assert_eq!(job.metadata.namespace.as_deref(), Some("runs"));
        assert_eq!(
            job.metadata.annotations.as_ref().unwrap()[TRACEPARENT_ANNOTATION],
            req.traceparent.clone().unwrap()
        );
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.ttl_seconds_after_finished, Some(3 * 24 * 3600));
        assert_eq!(spec.active_deadline_seconds, Some(3600));
        let tmpl = spec.template;
        assert_eq!(tmpl.metadata.unwrap().labels.unwrap()[RUN_ID_LABEL], "42");
        let pod = tmpl.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("application-quality-calrissian")
        );
        assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "regcred");
        // Calrissian deletes its step pods on SIGTERM but then never exits: the grace period
        // is all a cancelled pod lives on (it was 120 s; a real node showed it).
        assert_eq!(pod.termination_grace_period_seconds, Some(30));
        assert!(pod.init_containers.is_none());
        assert_eq!(pod.containers.len(), 1);
        let cal = &pod.containers[0];
        assert_eq!(cal.name, CALRISSIAN_CONTAINER);
        assert_eq!(cal.image.as_deref(), Some("terradue/calrissian:0.14.0"));
        // Its log's tail is the failed run's reason (status::failure_detail).
        assert_eq!(
            cal.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        // The launcher, then Calrissian's arguments.
        let command = cal.command.clone().unwrap();
        assert_eq!(&command[..3], ["python3", "-c", LAUNCH_SCRIPT]);
        assert!(cal.args.is_none());
        let args = &command[3..];
        assert_eq!(args, calrissian_args(&s));
        assert!(!args.contains(&"--debug".to_string()));
        let pos = args.iter().position(|a| a == "--max-ram").unwrap();
        assert_eq!(args[pos + 1], "2Gi");
        assert_eq!(args.last().unwrap(), "/workflow-input/params.yml");
        let limits = cal.resources.clone().unwrap().limits.unwrap();
        assert_eq!(limits["memory"].0, "256Mi");
        // Reserved: a quarter of a core; allowed: a whole one for its CPU-bound bursts.
        let requests = cal.resources.clone().unwrap().requests.unwrap();
        assert_eq!(
            (requests["cpu"].0.as_str(), limits["cpu"].0.as_str()),
            ("250m", "1")
        );
        assert!(args.contains(&"--disable-js-validation".to_string()));
        let pos = args.iter().position(|a| a == "--pod-labels").unwrap();
        assert_eq!(args[pos + 1], format!("/workflow-input/{POD_LABELS_KEY}"));
        // Calrissian reads volumes from the first regular container: it must mount the workdir.
        let m = &cal.volume_mounts.as_ref().unwrap()[1];
        assert_eq!(
            (m.name.as_str(), m.mount_path.as_str()),
            ("workdir", WORKDIR)
        );
        // Where the results go; the token is read from the step pods' environment file, in
        // no variable.
        let env = cal.env.as_ref().unwrap();
        let var = |n: &str| env.iter().find(|e| e.name == n);
        assert_eq!(
            var("AQ_RESULTS_URL").unwrap().value.as_deref(),
            Some("http://svc:80/api/pipelines/17/runs/42/results/")
        );
        assert!(var("AQ_RUN_AS").is_none());
        assert!(env.iter().all(|e| {
            e.value_from
                .as_ref()
                .is_none_or(|v| v.secret_key_ref.is_none())
        }));
        // The launcher's default paths are where this pod mounts the volume and the Secret.
        let env_mount = &cal.volume_mounts.as_ref().unwrap()[2];
        assert_eq!(
            (env_mount.name.as_str(), env_mount.mount_path.as_str()),
            ("pod-env-vars", "/pod-env-vars")
        );
        assert!(LAUNCH_SCRIPT.contains(&format!("\"/pod-env-vars/{POD_ENV_KEY}\"")));
        assert!(LAUNCH_SCRIPT.contains(&format!("\"{WORKDIR}\"")));
        // Every volume source is an object of this run.
        // Nothing runs as root; no container may gain privileges or keep a capability.
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(
            (psc.run_as_user, psc.run_as_group, psc.fs_group),
            (Some(1000), Some(1000), Some(1000))
        );
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        assert_eq!(pod.automount_service_account_token, Some(true));
        let sc = cal.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        let caps = sc.capabilities.as_ref().unwrap();
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert!(caps.add.is_none());
        assert!(sc.run_as_user.is_none() && sc.privileged.is_none());
        let vols = pod.volumes.unwrap();
        assert_eq!(vols[0].config_map.as_ref().unwrap().name, "aq-run-42");
        assert_eq!(
            vols[1].persistent_volume_claim.as_ref().unwrap().claim_name,
            "aq-run-42"
        );
        assert_eq!(
            vols[2].secret.as_ref().unwrap().secret_name.as_deref(),
            Some("aq-run-42")
        );
    }

    #[test]
    fn dependents_are_owned_by_the_job() {
        let (req, s) = (request(), settings());
        let owner = owner_reference("aq-run-42", "uid-1");
        let cm = config_map(&req, &s, &owner);
        assert_eq!(
            cm.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-1"
        );
        let data = cm.data.unwrap();
        assert_eq!(data[CWL_KEY], req.cwl);
        let params: Map<String, serde_json::Value> =
            serde_yaml::from_str(&data[PARAMS_KEY]).unwrap();
        assert_eq!(params, req.params);
        assert!(
            data[PARAMS_KEY].contains("pipeline_id: '17'"),
            "{}",
            data[PARAMS_KEY]
        );
        // The step pods' labels: strings (Calrissian submits them as they are read), the
        // run's and the pipeline's ids, which the service lists the run's pods by.
        let step_labels: BTreeMap<String, serde_json::Value> =
            serde_yaml::from_str(&data[POD_LABELS_KEY]).unwrap();
        assert_eq!(step_labels[RUN_ID_LABEL], json!("42"));
        assert_eq!(step_labels[PIPELINE_ID_LABEL], json!("17"));
        assert_eq!(step_labels.len(), 2);
        let secret = secret(&req, &s, &owner);
        let data = secret.data.unwrap();
        assert_eq!(data[TOKEN_KEY].0, b"aqrun_secret");
        let env: serde_json::Value = serde_json::from_slice(&data[POD_ENV_KEY].0).unwrap();
        assert_eq!(env["AQ_CALLBACK_TOKEN"], "aqrun_secret");
        // Step pods get git's timeouts and allowed protocols.
        assert_eq!(env["GIT_HTTP_LOW_SPEED_LIMIT"], "1000");
        assert_eq!(env["GIT_HTTP_LOW_SPEED_TIME"], "30");
        assert_eq!(
            env["GIT_SSH_COMMAND"],
            "ssh -o ConnectTimeout=30 -o BatchMode=yes"
        );
        assert_eq!(env["GIT_ALLOW_PROTOCOL"], "https");
        let pvc = pvc(&req, &s, &owner);
        let spec = pvc.spec.unwrap();
        assert_eq!(spec.access_modes.unwrap(), ["ReadWriteMany"]);
        assert_eq!(spec.storage_class_name.as_deref(), Some("standard"));
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"].0,
            "5Gi"
        );
    }

    #[test]
    fn the_volume_can_be_given_to_the_runs_user() {
        let c = Config::from_iter([
            ("AQBB_WORKDIR_CHOWN".to_string(), "true".to_string()),
            ("AQBB_RUN_AS_USER".to_string(), "2000".to_string()),
            ("AQBB_RUN_AS_GROUP".to_string(), "3000".to_string()),
        ])
        .unwrap();
        let s = RunSettings::from_config(&c);
        let pod = job(&request(), &s).spec.unwrap().template.spec.unwrap();
        assert!(pod.init_containers.is_none());
        let cal = &pod.containers[0];
        let sc = cal.security_context.as_ref().unwrap();
        assert_eq!((sc.run_as_user, sc.run_as_non_root), (Some(0), Some(false)));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        let caps = sc.capabilities.as_ref().unwrap();
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(
            caps.add.as_deref(),
            Some(&["CHOWN".to_string(), "SETUID".into(), "SETGID".into()][..])
        );
        // The user the launcher becomes before Calrissian starts.
        let run_as = cal
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "AQ_RUN_AS");
        assert_eq!(run_as.unwrap().value.as_deref(), Some("2000:3000"));
        let psc = pod.security_context.unwrap();
        assert_eq!(
            (psc.run_as_user, psc.run_as_group, psc.fs_group),
            (Some(2000), Some(3000), Some(3000))
        );
        // Root is not a choice.
        assert!(Config::from_iter([("AQBB_RUN_AS_USER".to_string(), "0".to_string())]).is_err());
    }
}
