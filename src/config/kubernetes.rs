//! The Kubernetes executor: whether to use a cluster, and the Calrissian Job of each run
//! (namespace, images, resources, its pods' user, the bound on API calls).

use super::{ConfigError, is_dns_label};
use serde::Deserialize;
use std::time::Duration;

/// How the service decides whether to talk to Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KubernetesMode {
    /// Use the in-cluster service account or `KUBECONFIG` when present; otherwise record runs only.
    Auto,
    /// A cluster is required: start-up fails when none is reachable.
    On,
    /// Never talk to Kubernetes: runs are recorded with a status saying so.
    Off,
}

/// How runs become Calrissian Jobs.
#[derive(Debug, Clone, Deserialize)]
pub struct KubernetesConfig {
    /// `auto`, `on` or `off`.
    #[serde(rename = "kubernetes", default = "default_kubernetes")]
    pub mode: KubernetesMode,
    /// Namespace where run objects are created.
    #[serde(default = "default_runs_namespace")]
    pub aqbb_namespace: String,
    /// Storage class of each run's ReadWriteMany working volume.
    #[serde(default = "default_storageclass")]
    pub aqbb_storageclass: String,
    /// Size of each run's working volume.
    #[serde(default = "default_volumesize")]
    pub aqbb_volumesize: String,
    /// Calrissian container image.
    #[serde(default = "default_calrissian_image")]
    pub aqbb_calrissianimage: String,
    /// No longer used: the Job's pod has one container, whose launcher posts the results. Read
    /// only so that a deployment still setting it is told at start-up.
    #[serde(default)]
    pub aqbb_reporterimage: Option<String>,
    /// `--max-cores` given to Calrissian.
    #[serde(default = "default_maxcores")]
    pub aqbb_maxcores: String,
    /// `--max-ram` given to Calrissian.
    #[serde(default = "default_maxram")]
    pub aqbb_maxram: String,
    /// Name of an existing image pull Secret (in the runs namespace) for run pods.
    #[serde(default)]
    pub aqbb_secret: Option<String>,
    /// Upper bound on a Kubernetes API call made on the request path.
    #[serde(
        rename = "kube_timeout_ms",
        default = "default_kube_timeout_ms",
        deserialize_with = "super::millis"
    )]
    pub kube_timeout: Duration,
    /// ServiceAccount (in the runs namespace, from `knative/rbac.yaml`) the Calrissian pod runs as.
    #[serde(default = "default_run_service_account")]
    pub aqbb_serviceaccount: String,
    /// CPU request of the Calrissian container itself (its step pods get `AQBB_MAXCORES`):
    /// what the scheduler reserves for it while it mostly waits on its step pods.
    #[serde(default = "default_calrissian_cpu")]
    pub aqbb_calrissian_cpu: String,
    /// CPU limit of the Calrissian container: its start-up (imports, loading and validating
    /// the CWL) and the work between steps are CPU-bound bursts, which a limit equal to the
    /// request stretched to seconds each.
    #[serde(default = "default_calrissian_cpu_limit")]
    pub aqbb_calrissian_cpu_limit: String,
    /// Memory request and limit of the Calrissian container itself (step pods: `AQBB_MAXRAM`).
    #[serde(default = "default_calrissian_memory")]
    pub aqbb_calrissian_memory: String,
    /// User id of every run's pods (the Calrissian pod, and the step pods, which Calrissian
    /// runs as its own user). Never 0: runs do not run as root.
    #[serde(default = "default_run_as")]
    pub aqbb_run_as_user: i64,
    /// Group id of every run's pods, also the `fsGroup` of the run's volume.
    #[serde(default = "default_run_as")]
    pub aqbb_run_as_group: i64,
    /// Give the run's still empty volume to `AQBB_RUN_AS_USER` before Calrissian starts: the
    /// Calrissian container starts as root with only `CHOWN`, `SETUID` and `SETGID`, and its
    /// launcher drops to the run's user for good first thing. For storage that ignores
    /// `fsGroup` (hostPath, many NFS provisioners). Off by default.
    #[serde(default)]
    pub aqbb_workdir_chown: bool,
    /// Seconds a pod of a run may keep failing to pull its image (`ErrImagePull`,
    /// `ImagePullBackOff`) before the run is failed and stopped, naming the image; 0 = at the
    /// first failure. Calrissian itself waits for such a pod for ever, so without this a run
    /// whose tool image cannot be had would wait for `AQBB_ACTIVE_DEADLINE_SECS`.
    #[serde(default = "default_image_pull_grace")]
    pub aqbb_image_pull_grace_secs: u32,
}

impl KubernetesConfig {
    /// The API bound positive, the pods' user not root, the namespace a DNS label.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.kube_timeout.is_zero() {
            return Err(ConfigError("KUBE_TIMEOUT_MS must be positive".into()));
        }
        if self.aqbb_run_as_user <= 0 || self.aqbb_run_as_group < 0 {
            return Err(ConfigError(
                "AQBB_RUN_AS_USER must be a positive user id (runs never run as root) and AQBB_RUN_AS_GROUP not negative".into(),
            ));
        }
        if !is_dns_label(&self.aqbb_namespace) {
            return Err(ConfigError(format!(
                "AQBB_NAMESPACE must be a DNS label (lower-case letters, digits, '-'), got {:?}",
                self.aqbb_namespace
            )));
        }
        Ok(())
    }
}

fn default_kubernetes() -> KubernetesMode {
    KubernetesMode::Auto
}

fn default_runs_namespace() -> String {
    "application-quality-runs".into()
}

fn default_storageclass() -> String {
    "standard".into()
}

fn default_volumesize() -> String {
    "5Gi".into()
}

fn default_calrissian_image() -> String {
    "terradue/calrissian:0.14.0".into()
}

fn default_maxcores() -> String {
    "2".into()
}

fn default_maxram() -> String {
    "2Gi".into()
}

fn default_kube_timeout_ms() -> Duration {
    Duration::from_millis(5000)
}

fn default_run_service_account() -> String {
    "application-quality-calrissian".into()
}

fn default_calrissian_cpu() -> String {
    "250m".into()
}

fn default_calrissian_cpu_limit() -> String {
    "1".into()
}

fn default_calrissian_memory() -> String {
    "256Mi".into()
}

fn default_image_pull_grace() -> u32 {
    120
}

fn default_run_as() -> i64 {
    1000
}
