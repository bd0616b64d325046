//! The local runner: cwltool on this machine, its working directories, containers and
//! sandbox limits.

use super::{ConfigError, normalize_origin};
use serde::Deserialize;

/// Whether the local runner runs tools in containers (`LOCAL_CONTAINERS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerMode {
    /// docker when its daemon socket is there, else podman when installed, else host tools.
    Auto,
    Docker,
    Podman,
    /// Each tool in its image's files from the runner's image store (`LOCAL_IMAGES_DIR`),
    /// with a nested bubblewrap inside the run's sandbox: no engine, no engine socket.
    Images,
    /// Host tools only (`cwltool --no-container`).
    Off,
}

/// How the local runner contains a run (`LOCAL_SANDBOX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// Every run inside bubblewrap: private mount, PID, network, IPC and UTS namespaces, an
    /// unprivileged user, limits (the default; the runner refuses to start without `bwrap`).
    Bwrap,
    /// No sandbox: cwltool and the tools run as the service's user with its view of the host.
    /// Only for a single trusted user; loud at every start.
    Off,
}

/// How the local runner executes runs.
#[derive(Debug, Clone, Deserialize)]
pub struct LocalConfig {
    /// The cwltool executable of the local runner: a path, or a name looked up in `PATH`.
    #[serde(default = "default_cwltool")]
    pub cwltool: String,
    /// Directory holding the local runner's per-run working directories (`runs/<id>/`).
    #[serde(default = "default_local_data_dir")]
    pub local_data_dir: String,
    /// Runs the local runner executes at once; more wait in a queue that serves users in
    /// turn. 0: the number of cores.
    #[serde(default)]
    pub local_concurrency: usize,
    /// `auto`, `docker`, `podman`, `images` or `off` (host tools).
    #[serde(default = "default_local_containers")]
    pub local_containers: ContainerMode,
    /// The image store of `LOCAL_CONTAINERS=images` (one directory per image, filled by
    /// `scripts/local-images.sh`); default `<LOCAL_DATA_DIR>/images`.
    #[serde(default)]
    pub local_images_dir: Option<String>,
    /// Base URL the local runner's tools call back to; default: this process's own listening
    /// address on loopback.
    #[serde(default)]
    pub local_callback_url: Option<String>,
    /// `bwrap` (default) or `off`: see [`SandboxMode`].
    #[serde(default = "default_local_sandbox")]
    pub local_sandbox: SandboxMode,
    /// Memory a sandboxed run's processes may each allocate (`RLIMIT_DATA`), MiB.
    #[serde(default = "default_local_sandbox_memory_mib")]
    pub local_sandbox_memory_mib: u64,
    /// Processes and threads a sandboxed run may have at once (`RLIMIT_NPROC` of its user).
    #[serde(default = "default_local_sandbox_processes")]
    pub local_sandbox_processes: u64,
    /// CPU seconds each process of a sandboxed run may use (`RLIMIT_CPU`).
    #[serde(default = "default_local_sandbox_cpu_secs")]
    pub local_sandbox_cpu_secs: u64,
    /// Size of a sandboxed run's scratch space (the clone and intermediate files, a tmpfs) and
    /// the largest file it may write, MiB.
    #[serde(default = "default_local_sandbox_disk_mib")]
    pub local_sandbox_disk_mib: u64,
    /// Allows the local runner inside a Knative Service (`K_SERVICE` set), where a scaled-down
    /// pod would kill its runs.
    #[serde(default)]
    pub local_runner_force: bool,
    /// Set by Knative Serving in every revision's pod.
    #[serde(default)]
    pub k_service: Option<String>,
}

impl LocalConfig {
    /// The callback an origin, the sandbox limits in range, a data directory.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.local_callback_url
            && normalize_origin(url).is_none()
        {
            return Err(ConfigError(format!(
                "LOCAL_CALLBACK_URL must look like scheme://host[:port], got {url:?}"
            )));
        }
        for (name, value, min) in [
            (
                "LOCAL_SANDBOX_MEMORY_MIB",
                self.local_sandbox_memory_mib,
                64,
            ),
            ("LOCAL_SANDBOX_PROCESSES", self.local_sandbox_processes, 16),
            ("LOCAL_SANDBOX_CPU_SECS", self.local_sandbox_cpu_secs, 1),
            ("LOCAL_SANDBOX_DISK_MIB", self.local_sandbox_disk_mib, 16),
        ] {
            if value < min || value > (1 << 40) {
                return Err(ConfigError(format!(
                    "{name} must be between {min} and {}, got {value}",
                    1u64 << 40
                )));
            }
        }
        if self.local_data_dir.trim().is_empty() {
            return Err(ConfigError("LOCAL_DATA_DIR must not be empty".into()));
        }
        Ok(())
    }

    /// Runs the local runner executes at once.
    pub fn local_concurrency(&self) -> usize {
        match self.local_concurrency {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

fn default_cwltool() -> String {
    "cwltool".into()
}

fn default_local_data_dir() -> String {
    "application-quality-data".into()
}

fn default_local_containers() -> ContainerMode {
    ContainerMode::Auto
}

fn default_local_sandbox() -> SandboxMode {
    SandboxMode::Bwrap
}

fn default_local_sandbox_memory_mib() -> u64 {
    2048
}

fn default_local_sandbox_processes() -> u64 {
    256
}

fn default_local_sandbox_cpu_secs() -> u64 {
    900
}

fn default_local_sandbox_disk_mib() -> u64 {
    1024
}
