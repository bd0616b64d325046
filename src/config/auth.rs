//! Configuration of authentication: the trusted-publishing policies of CI tokens
//! (`CI_OIDC_POLICIES`).

use anyhow::{Context, bail};
use serde::Deserialize;
use std::collections::BTreeMap;

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
