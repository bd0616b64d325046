//! Kubernetes execution of runs (to be written).

pub mod job_events;

use crate::{config::Config, runs::launcher::Launcher};
use std::sync::Arc;

/// The Kubernetes launcher when a cluster is configured.
pub async fn launcher_from_config(config: &Config) -> anyhow::Result<Option<Arc<dyn Launcher>>> {
    if config.kubernetes == crate::config::KubernetesMode::On {
        anyhow::bail!("KUBERNETES=on but the Kubernetes launcher is not written yet");
    }
    Ok(None)
}
