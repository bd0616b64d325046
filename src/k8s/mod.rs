//! Kubernetes execution of runs: each run is a Calrissian Job plus a ConfigMap, a Secret and a
//! working volume owned by it, in one shared runs namespace (`AQBB_NAMESPACE`). See
//! `docs/kubernetes.md` for the lifecycle, the objects and the reasons behind them.
//!
//! - [`objects`]: pure builders of every object (no I/O);
//! - [`status`]: what a Job says about its run;
//! - [`client::KubeLauncher`]: the [`Launcher`] talking to the API server;
//! - [`job_events`]: Job changes delivered by a Knative ApiServerSource.
//!
//! The service needs exactly [`REQUIRED_PERMISSIONS`] in the runs namespace; `knative/rbac.yaml`
//! grants exactly those, and the Kubernetes tests prove both directions.

pub mod client;
pub mod job_events;
pub mod objects;
pub mod status;

use crate::{config::Config, runs::launcher::Launcher};
use anyhow::Context;
pub use client::KubeLauncher;
use std::sync::Arc;

/// One permission the service uses in the runs namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    /// API group (`""` for the core group).
    pub group: &'static str,
    pub resource: &'static str,
    pub verb: &'static str,
}

const fn perm(group: &'static str, resource: &'static str, verb: &'static str) -> Permission {
    Permission {
        group,
        resource,
        verb,
    }
}

/// Every (group, resource, verb) the code uses in the runs namespace, and nothing else:
/// - Jobs: `create` (launch), `get` (resumed launch, reconcile on read), `patch` (shorten a
///   succeeded run's retention), `delete` (cancel, and a launch rejected half-way);
/// - ConfigMaps, PersistentVolumeClaims: `create`;
/// - Secrets: `create`, and `patch` to keep a resumed launch's Secret in line with the run's
///   stored token hash (the same derived token, unless the signing key changed).
///
/// - Pods: `list`, only to read why a failed run's pod failed (the Calrissian container's
///   termination message, an image that cannot be pulled) for the run's reason.
///
/// The service never reads Secrets, and never creates, changes or deletes pods: the Job
/// controller and Calrissian (its own ServiceAccount) do. Cluster-wide it only creates
/// SelfSubjectAccessReviews (the `KUBERNETES=on` start-up check), which every authenticated
/// identity may do.
pub const REQUIRED_PERMISSIONS: &[Permission] = &[
    perm("batch", "jobs", "create"),
    perm("batch", "jobs", "get"),
    perm("batch", "jobs", "patch"),
    perm("batch", "jobs", "delete"),
    perm("", "configmaps", "create"),
    perm("", "secrets", "create"),
    perm("", "secrets", "patch"),
    perm("", "persistentvolumeclaims", "create"),
    perm("", "pods", "list"),
];

/// Where the client configuration comes from, without any network call: the in-cluster service
/// account when `KUBERNETES_SERVICE_HOST` is set, else the `KUBECONFIG` file, else nothing.
pub async fn kube_config_from_env() -> anyhow::Result<Option<kube::Config>> {
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty()) {
        let c = kube::Config::incluster()
            .context("reading the in-cluster service account (KUBERNETES_SERVICE_HOST is set)")?;
        return Ok(Some(c));
    }
    match std::env::var_os("KUBECONFIG") {
        Some(path) if !path.is_empty() => {
            let c = kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("reading KUBECONFIG ({})", path.to_string_lossy()))?;
            Ok(Some(c))
        }
        _ => Ok(None),
    }
}

/// A launcher from a client configuration: per-call timeouts from `KUBE_TIMEOUT_MS` (a pooled
/// connection's idle time does not count against them). No network call.
pub fn launcher_with(
    mut kube_config: kube::Config,
    config: &Config,
) -> anyhow::Result<KubeLauncher> {
    let timeout = config.kubernetes.kube_timeout;
    kube_config.connect_timeout = Some(timeout);
    kube_config.read_timeout = Some(timeout);
    kube_config.write_timeout = Some(timeout);
    kube_config.reset_reader_on_write = true;
    let client = kube::Client::try_from(kube_config).context("building the Kubernetes client")?;
    Ok(KubeLauncher::new(
        client,
        objects::RunSettings::from_config(config),
        timeout,
    ))
}

/// The Kubernetes launcher when a cluster is configured: built from the environment without
/// contacting the API server (cold starts stay fast); `None` without a cluster. `required`
/// (`KUBERNETES=on`, `EXECUTOR=kubernetes`): a cluster must exist and is checked once,
/// failing with one clear line.
pub async fn launcher_from_config(
    config: &Config,
    required: bool,
) -> anyhow::Result<Option<Arc<dyn Launcher>>> {
    let on = required;
    let Some(kube_config) = kube_config_from_env().await? else {
        if on {
            anyhow::bail!(
                "KUBERNETES=on (or EXECUTOR=kubernetes) but no cluster is configured: no in-cluster service account (KUBERNETES_SERVICE_HOST) and no KUBECONFIG"
            );
        }
        return Ok(None);
    };
    let url = kube_config.cluster_url.to_string();
    let launcher = launcher_with(kube_config, config)?;
    if on {
        launcher.check().await.map_err(|e| {
            anyhow::anyhow!("KUBERNETES=on (or EXECUTOR=kubernetes) but the Kubernetes API at {url} is not usable: {e}")
        })?;
    }
    tracing::info!(cluster = %url, namespace = %config.kubernetes.aqbb_namespace, "Kubernetes launcher ready");
    Ok(Some(Arc::new(launcher)))
}
