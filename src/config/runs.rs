//! Runs, whatever executes them: the executor choice, per-user limits, time limit and
//! retention, the repositories a run may clone, and the callbacks of its steps.

use super::ConfigError;
use serde::Deserialize;

/// Schemes `REPO_URL_SCHEMES` may list.
pub const REPO_SCHEMES: [&str; 5] = ["https", "http", "ssh", "git", "file"];

/// Which executor runs pipelines (`EXECUTOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorMode {
    /// A cluster when one is configured, else the local runner when cwltool is found, else
    /// record-only (each choice and its reason is logged at start-up).
    Auto,
    /// Calrissian Jobs on Kubernetes; start-up fails without a usable cluster.
    Kubernetes,
    /// cwltool child processes on this machine; start-up fails without cwltool.
    Local,
    /// Record runs without executing them.
    Off,
}

/// What every run is allowed.
#[derive(Debug, Clone, Deserialize)]
pub struct RunsConfig {
    /// `auto`, `kubernetes`, `local` or `off`. Unset: follows `KUBERNETES` (`on` ->
    /// `kubernetes`, `off` -> `off`, `auto` -> `auto`), so existing deployments keep their
    /// behaviour.
    #[serde(default)]
    pub executor: Option<ExecutorMode>,
    /// Runs of one user executing at once (Kubernetes Jobs, local processes); 0 = no limit.
    /// Without a queue (Kubernetes) a run beyond it is refused (REST 429, events retryable);
    /// the local runner keeps it waiting instead.
    #[serde(default = "default_runs_max_active")]
    pub runs_max_active_per_user: u32,
    /// Runs of one user waiting for the local runner at once; beyond, new runs are refused
    /// (REST 429, events retryable). 0 = no limit.
    #[serde(default = "default_runs_max_queued")]
    pub runs_max_queued_per_user: u32,
    /// Wall-time limit of a run's Job in seconds (`activeDeadlineSeconds`), or of its local
    /// process; 0 = none. An hour by default: a run that hangs (a repository server that never
    /// answers) holds its slot no longer than that.
    #[serde(default = "default_active_deadline")]
    pub aqbb_active_deadline_secs: i64,
    /// Seconds a finished, succeeded run's objects are kept.
    #[serde(default = "default_succeeded_retention")]
    pub aqbb_succeeded_retention_secs: i32,
    /// Seconds a failed run's objects are kept for debugging.
    #[serde(default = "default_failed_retention")]
    pub aqbb_failed_retention_secs: i32,
    /// Schemes a repository URL may use, comma-separated, among `https` (the default), `ssh`,
    /// `http`, `git` and `file` (see `pipelines::repos`).
    #[serde(default = "default_repo_url_schemes")]
    pub repo_url_schemes: Vec<String>,
    /// Absolute directories below which `file://` repository URLs are allowed, comma-separated;
    /// canonicalised at start-up (each must exist). Empty by default: no local repository.
    #[serde(default)]
    pub repo_file_roots: Vec<std::path::PathBuf>,
    /// git gives up a transfer slower than this many bytes per second ...
    #[serde(default = "default_repo_low_speed_limit")]
    pub repo_low_speed_limit: u32,
    /// ... for this many seconds (`GIT_HTTP_LOW_SPEED_LIMIT` / `GIT_HTTP_LOW_SPEED_TIME`).
    #[serde(default = "default_repo_low_speed_time")]
    pub repo_low_speed_time_secs: u32,
    /// ssh's `ConnectTimeout` for ssh repository URLs, in seconds.
    #[serde(default = "default_repo_connect_timeout")]
    pub repo_connect_timeout_secs: u32,
    /// How long after its run ended a callback token is still accepted (a late upload), in
    /// seconds.
    #[serde(default = "default_callback_grace")]
    pub callback_grace_secs: u64,
    /// Most job reports one run may post; more get 429.
    #[serde(default = "default_callback_max_reports")]
    pub callback_max_reports_per_run: u32,
    /// Most bytes of job reports (report and digest as stored JSON) one run may post; more get
    /// 413.
    #[serde(default = "default_callback_max_report_bytes")]
    pub callback_max_report_bytes_per_run: u64,
}

impl RunsConfig {
    /// Repository URL schemes known, `file` roots absolute existing directories (kept
    /// canonical, so `..` and symbolic links cannot lead out of them), git's timeouts, the
    /// callback quotas and the time limits positive.
    pub(super) fn check(&mut self) -> Result<(), ConfigError> {
        if self.aqbb_succeeded_retention_secs < 0 || self.aqbb_failed_retention_secs < 0 {
            return Err(ConfigError(
                "AQBB_*_RETENTION_SECS must not be negative".into(),
            ));
        }
        if self.aqbb_active_deadline_secs < 0 {
            return Err(ConfigError(
                "AQBB_ACTIVE_DEADLINE_SECS must not be negative".into(),
            ));
        }
        let mut schemes = Vec::new();
        for scheme in &self.repo_url_schemes {
            let scheme = scheme.trim().to_ascii_lowercase();
            if scheme.is_empty() || schemes.contains(&scheme) {
                continue;
            }
            if !REPO_SCHEMES.contains(&scheme.as_str()) {
                return Err(ConfigError(format!(
                    "REPO_URL_SCHEMES: unknown scheme {scheme:?} (known: {})",
                    REPO_SCHEMES.join(", ")
                )));
            }
            schemes.push(scheme);
        }
        self.repo_url_schemes = schemes;
        let mut roots = Vec::new();
        for root in &self.repo_file_roots {
            let text = root.to_string_lossy();
            let trimmed = std::path::PathBuf::from(text.trim());
            if trimmed.as_os_str().is_empty() {
                continue;
            }
            if !trimmed.is_absolute() {
                return Err(ConfigError(format!(
                    "REPO_FILE_ROOTS entries must be absolute directories, got {trimmed:?}"
                )));
            }
            let canonical = trimmed
                .canonicalize()
                .ok()
                .filter(|p| p.is_dir())
                .ok_or_else(|| {
                    ConfigError(format!(
                        "REPO_FILE_ROOTS: {trimmed:?} is not an existing directory"
                    ))
                })?;
            if !roots.contains(&canonical) {
                roots.push(canonical);
            }
        }
        self.repo_file_roots = roots;
        if !self.repo_file_roots.is_empty() && !self.repo_url_schemes.iter().any(|s| s == "file") {
            return Err(ConfigError(
                "REPO_FILE_ROOTS is set but REPO_URL_SCHEMES does not allow file".into(),
            ));
        }
        if self.repo_low_speed_limit == 0
            || self.repo_low_speed_time_secs == 0
            || self.repo_connect_timeout_secs == 0
        {
            return Err(ConfigError(
                "REPO_LOW_SPEED_LIMIT, REPO_LOW_SPEED_TIME_SECS and REPO_CONNECT_TIMEOUT_SECS must be positive".into(),
            ));
        }
        if self.callback_max_reports_per_run == 0 || self.callback_max_report_bytes_per_run == 0 {
            return Err(ConfigError(
                "CALLBACK_MAX_REPORTS_PER_RUN and CALLBACK_MAX_REPORT_BYTES_PER_RUN must be positive".into(),
            ));
        }
        Ok(())
    }
}

fn default_runs_max_active() -> u32 {
    4
}

fn default_runs_max_queued() -> u32 {
    20
}

fn default_active_deadline() -> i64 {
    3600
}

fn default_succeeded_retention() -> i32 {
    600
}

fn default_failed_retention() -> i32 {
    3 * 24 * 3600
}

fn default_repo_url_schemes() -> Vec<String> {
    vec!["https".into()]
}

fn default_repo_low_speed_limit() -> u32 {
    1000
}

fn default_repo_low_speed_time() -> u32 {
    30
}

fn default_repo_connect_timeout() -> u32 {
    30
}

fn default_callback_grace() -> u64 {
    300
}

fn default_callback_max_reports() -> u32 {
    1000
}

fn default_callback_max_report_bytes() -> u64 {
    64 * 1024 * 1024
}
