//! Commit statuses: the forges they go to (`*_STATUS_ENABLED`, the API URLs and
//! `*_API_TOKEN*` variables), what they say, and how their delivery is retried.

use super::{ConfigError, check_url};
use serde::Deserialize;
use std::time::Duration;

/// Which forge a status goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forge {
    GitHub,
    GitLab,
}

impl Forge {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::GitLab => "gitlab",
        }
    }
}

/// Where and how commit statuses are posted.
#[derive(Debug, Clone, Deserialize)]
pub struct StatusesConfig {
    /// Post commit statuses to GitHub for runs started by GitHub push and pull-request events
    /// (`yes`, `y`, `true`, `1`, `t`, any case, as the reference). Off by default.
    #[serde(default, deserialize_with = "super::reference_bool")]
    pub github_status_enabled: bool,
    /// The status `context`: the name a branch-protection rule requires.
    #[serde(default = "default_status_context")]
    pub github_status_context: String,
    /// The status `target_url`; `{run_id}` and `{pipeline_id}` are replaced. Default: the run's
    /// API URL under `PUBLIC_URL`.
    #[serde(default)]
    pub github_status_target_url: Option<String>,
    /// GitHub's REST API (GitHub Enterprise: `https://<host>/api/v3`).
    #[serde(default = "default_github_api_url")]
    pub github_api_url: String,
    /// Post commit statuses to GitLab for runs started by GitLab push and merge-request events.
    #[serde(default, deserialize_with = "super::reference_bool")]
    pub gitlab_status_enabled: bool,
    /// GitLab's REST API (`https://<host>/api/v4`). Default: derived from the event's
    /// `project.web_url` (https only).
    #[serde(default)]
    pub gitlab_api_url: Option<String>,
    /// The GitLab status `name`. Default: `GITHUB_STATUS_CONTEXT`.
    #[serde(default)]
    pub gitlab_status_context: Option<String>,
    /// Upper bound on one status post, in milliseconds.
    #[serde(
        rename = "commit_status_timeout_ms",
        default = "default_commit_status_timeout",
        deserialize_with = "super::millis"
    )]
    pub commit_status_timeout: Duration,
    /// First retry delay of a failed post, in milliseconds (doubled at each failure).
    #[serde(default = "default_commit_status_retry_base")]
    pub commit_status_retry_base_ms: u64,
    /// Longest retry delay, in seconds.
    #[serde(default = "default_commit_status_retry_max")]
    pub commit_status_retry_max_secs: u64,
    /// Attempts before a status is given up.
    #[serde(default = "default_commit_status_attempts")]
    pub commit_status_max_attempts: u32,
    /// `GITHUB_API_TOKEN[__<owner>]` and `GITLAB_API_TOKEN[__<namespace>]` (not through envy:
    /// the names are open-ended).
    #[serde(skip)]
    pub(super) forge_tokens: ForgeTokens,
}

impl StatusesConfig {
    /// API URLs are https (http only to loopback), bounds positive.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        check_url("GITHUB_API_URL", Some(self.github_api_url.as_str()))?;
        check_url("GITLAB_API_URL", self.gitlab_api_url.as_deref())?;
        if self.commit_status_timeout.is_zero()
            || self.commit_status_retry_base_ms == 0
            || self.commit_status_max_attempts == 0
        {
            return Err(ConfigError(
                "COMMIT_STATUS_TIMEOUT_MS, COMMIT_STATUS_RETRY_BASE_MS and COMMIT_STATUS_MAX_ATTEMPTS must be positive".into(),
            ));
        }
        if self.github_status_context.chars().count() > 255 {
            return Err(ConfigError(
                "GITHUB_STATUS_CONTEXT is longer than 255 characters".into(),
            ));
        }
        Ok(())
    }

    /// The forge API tokens (`GITHUB_API_TOKEN[__<owner>]`, `GITLAB_API_TOKEN[__<namespace>]`).
    pub fn forge_tokens(&self) -> &ForgeTokens {
        &self.forge_tokens
    }

    /// Whether statuses go to `forge`.
    pub fn enabled(&self, forge: Forge) -> bool {
        match forge {
            Forge::GitHub => self.github_status_enabled,
            Forge::GitLab => self.gitlab_status_enabled,
        }
    }

    /// The status context (GitHub) or name (GitLab).
    pub fn status_context(&self, forge: Forge) -> &str {
        match (forge, &self.gitlab_status_context) {
            (Forge::GitLab, Some(c)) => c,
            _ => &self.github_status_context,
        }
    }
}

/// Forge API tokens from the environment, by forge and scope (`""` = the fallback token).
/// Never printed: `Debug` shows the scopes only.
#[derive(Clone, Default)]
pub struct ForgeTokens(std::collections::HashMap<(Forge, String), String>);

impl std::fmt::Debug for ForgeTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.keys().map(|(forge, scope)| (forge.as_str(), scope)))
            .finish()
    }
}

impl ForgeTokens {
    /// Collects the token variables.
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut m = std::collections::HashMap::new();
        for (name, value) in vars {
            for (forge, prefix) in [
                (Forge::GitHub, "GITHUB_API_TOKEN"),
                (Forge::GitLab, "GITLAB_API_TOKEN"),
            ] {
                let Some(rest) = name.strip_prefix(prefix) else {
                    continue;
                };
                let scope = match rest {
                    "" => "",
                    r => match r.strip_prefix("__") {
                        Some(s) if !s.is_empty() => s,
                        _ => continue,
                    },
                };
                m.insert((forge, scope.to_string()), value.trim().to_string());
            }
        }
        Self(m)
    }

    /// The token for `scope` (an owner or namespace, case-sensitive), else the fallback.
    pub fn get(&self, forge: Forge, scope: &str) -> Option<&str> {
        self.0
            .get(&(forge, scope.to_string()))
            .or_else(|| self.0.get(&(forge, String::new())))
            .map(String::as_str)
    }
}

fn default_status_context() -> String {
    "EOEPCA Application Quality / Quality Check".into()
}

fn default_github_api_url() -> String {
    "https://api.github.com".into()
}

fn default_commit_status_timeout() -> Duration {
    Duration::from_millis(10_000)
}

fn default_commit_status_retry_base() -> u64 {
    2_000
}

fn default_commit_status_retry_max() -> u64 {
    300
}

fn default_commit_status_attempts() -> u32 {
    12
}
