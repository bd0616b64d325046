//! Authentication: our JWTs, the limits of the password login, what is cached per instance,
//! and the CI workload identities with their trusted-publishing policies (`CI_OIDC_POLICIES`).

use super::{ConfigError, check_url};
use anyhow::{Context, bail};
use serde::Deserialize;
use std::{collections::BTreeMap, time::Duration};

/// How callers authenticate.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthConfig {
    /// HS256 signing key for JWTs (at least 32 bytes). When unset, a random key is generated
    /// once and kept in the database, so tokens survive restarts and work across replicas.
    #[serde(default)]
    pub jwt_secret: Option<String>,
    /// `iss` claim put in and required of our tokens.
    #[serde(default = "default_jwt_issuer")]
    pub jwt_issuer: String,
    /// Access token lifetime in seconds.
    #[serde(default = "default_access_lifetime")]
    pub jwt_access_lifetime_secs: u64,
    /// Refresh token lifetime in seconds.
    #[serde(default = "default_refresh_lifetime")]
    pub jwt_refresh_lifetime_secs: u64,
    /// Failed `POST /api/token/` attempts allowed per username in one window; further attempts
    /// get 429 with `Retry-After` until the window ends. 0 turns this limit off. Counted per
    /// instance (see `auth::login_limit`).
    #[serde(default = "default_login_failures_per_user")]
    pub login_max_failures_per_user: u32,
    /// Failed `POST /api/token/` attempts allowed per client address (IPv6: per /64) in one
    /// window, whatever the usernames. 0 turns this limit off.
    #[serde(default = "default_login_failures_per_address")]
    pub login_max_failures_per_address: u32,
    /// Length of the login failure window in seconds, starting at a key's first failure.
    #[serde(
        rename = "login_failure_window_secs",
        default = "default_login_failure_window",
        deserialize_with = "super::secs"
    )]
    pub login_failure_window: Duration,
    /// How long the user behind an access token, and whether a session was signed out, are
    /// remembered (seconds; 0 = read them on every request). A user deactivated directly in
    /// the database, or a session signed out on another replica, loses access within this time.
    #[serde(
        rename = "auth_user_cache_secs",
        default = "default_auth_user_cache",
        deserialize_with = "super::secs"
    )]
    pub auth_user_cache: Duration,
    /// CI workload identities: a JSON list of policies mapping token claims to local users,
    /// e.g. `[{"issuer": "github", "claims": {"repository": "org/repo"}, "user": "ci"}]`.
    #[serde(default)]
    ci_oidc_policies: Option<String>,
    /// Required `aud` of CI tokens. Default: `PUBLIC_URL`.
    #[serde(default)]
    pub ci_oidc_audience: Option<String>,
    /// Issuer of GitHub Actions tokens.
    #[serde(default = "default_github_issuer")]
    pub ci_github_issuer: String,
    /// Issuer of GitLab CI ID tokens (the GitLab instance's URL).
    #[serde(default = "default_gitlab_issuer")]
    pub ci_gitlab_issuer: String,
    /// `CI_OIDC_POLICIES`, parsed and checked.
    #[serde(skip)]
    pub ci_policies: Vec<CiPolicy>,
}

impl AuthConfig {
    /// The JWT key and lifetimes, the login window, the CI issuers and policies.
    pub(super) fn check(&mut self) -> Result<(), ConfigError> {
        if let Some(secret) = &self.jwt_secret
            && secret.len() < 32
        {
            return Err(ConfigError(
                "JWT_SECRET must be at least 32 bytes long (e.g. `openssl rand -hex 32`)".into(),
            ));
        }
        if self.jwt_access_lifetime_secs == 0 || self.jwt_refresh_lifetime_secs == 0 {
            return Err(ConfigError(
                "JWT_ACCESS_LIFETIME_SECS and JWT_REFRESH_LIFETIME_SECS must be positive".into(),
            ));
        }
        if self.login_failure_window.is_zero() {
            return Err(ConfigError(
                "LOGIN_FAILURE_WINDOW_SECS must be positive".into(),
            ));
        }
        check_url("CI_GITHUB_ISSUER", Some(self.ci_github_issuer.as_str()))?;
        check_url("CI_GITLAB_ISSUER", Some(self.ci_gitlab_issuer.as_str()))?;
        if let Some(policies) = &self.ci_oidc_policies {
            self.ci_policies = CiPolicy::parse_list(policies)
                .map_err(|e| ConfigError(format!("CI_OIDC_POLICIES: {e}")))?;
        }
        Ok(())
    }
}

fn default_jwt_issuer() -> String {
    "application-quality-api".into()
}

fn default_access_lifetime() -> u64 {
    15 * 60
}

fn default_refresh_lifetime() -> u64 {
    24 * 3600
}

fn default_login_failures_per_user() -> u32 {
    5
}

fn default_login_failures_per_address() -> u32 {
    20
}

fn default_login_failure_window() -> Duration {
    Duration::from_secs(5 * 60)
}

fn default_auth_user_cache() -> Duration {
    Duration::from_secs(5)
}

fn default_github_issuer() -> String {
    "https://token.actions.githubusercontent.com".into()
}

fn default_gitlab_issuer() -> String {
    "https://gitlab.com".into()
}

/// Claims of which a GitHub policy must pin at least one (else any repository would match).
const GITHUB_IDENTIFYING: [&str; 5] = [
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "sub",
];
/// The same for GitLab.
const GITLAB_IDENTIFYING: [&str; 5] = [
    "project_path",
    "project_id",
    "namespace_path",
    "namespace_id",
    "sub",
];

/// Which CI system a policy is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CiKind {
    /// GitHub Actions (`CI_GITHUB_ISSUER`).
    GitHub,
    /// GitLab CI (`CI_GITLAB_ISSUER`).
    GitLab,
}

/// One trusted-publishing rule: a token of `issuer` whose claims all match maps to `user`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiPolicy {
    /// `github` or `gitlab`.
    pub issuer: String,
    /// Claim -> required value; a value ending in `*` matches by prefix (`refs/heads/*`).
    pub claims: BTreeMap<String, String>,
    /// The local user the token acts as.
    pub user: String,
}

impl CiPolicy {
    /// Parses and checks `CI_OIDC_POLICIES`.
    pub fn parse_list(json: &str) -> anyhow::Result<Vec<CiPolicy>> {
        let list: Vec<CiPolicy> =
            serde_json::from_str(json).context("expected a JSON list of policies")?;
        for (i, p) in list.iter().enumerate() {
            let identifying: &[&str] = match p.kind() {
                Some(CiKind::GitHub) => &GITHUB_IDENTIFYING,
                Some(CiKind::GitLab) => &GITLAB_IDENTIFYING,
                None => bail!(
                    "policy {i}: issuer must be \"github\" or \"gitlab\", got {:?}",
                    p.issuer
                ),
            };
            if !identifying.iter().any(|c| {
                p.claims
                    .get(*c)
                    .is_some_and(|v| !v.is_empty() && !v.starts_with('*'))
            }) {
                bail!(
                    "policy {i}: must pin one of the claims {} (else any project would match)",
                    identifying.join(", ")
                );
            }
            if p.user.is_empty() {
                bail!("policy {i}: user is empty");
            }
        }
        Ok(list)
    }

    /// Which CI system the policy is for (`None`: neither, refused by [`CiPolicy::parse_list`]).
    pub fn kind(&self) -> Option<CiKind> {
        match self.issuer.as_str() {
            "github" => Some(CiKind::GitHub),
            "gitlab" => Some(CiKind::GitLab),
            _ => None,
        }
    }
}
