//! The two forges: where a webhook payload's commit is (owner, repository, SHA), and the REST
//! call that sets a commit status (GitHub `POST /repos/{o}/{r}/statuses/{sha}`, GitLab
//! `POST /projects/{id}/statuses/{sha}`).

use crate::{config::Config, db::entities::commit_status};
use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};
use std::time::Duration;

/// The HTTP client (rustls, http and https).
pub type HttpClient = crate::replay::HttpClient;

pub use crate::config::statuses::Forge;

impl Forge {
    /// The forge's name of a state (`pending`, `success`, `failure`, `error`).
    pub fn state_name(self, state: &str) -> &'static str {
        match (self, state) {
            (_, "pending") => "pending",
            (_, "success") => "success",
            (Forge::GitHub, "failure") => "failure",
            (Forge::GitHub, _) => "error",
            // GitLab has no `error`: a run that could not be judged fails the check.
            (Forge::GitLab, _) => "failed",
        }
    }
}

/// Where a status goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub forge: Forge,
    pub api_url: String,
    /// `owner/repo` or the GitLab project id.
    pub repository: String,
    /// Owner login or top-level GitLab namespace, for `*_API_TOKEN__<scope>`.
    pub token_scope: String,
    pub sha: String,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A GitHub owner or repository name (also keeps them safe inside the URL path).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A commit SHA (not the all-zero SHA of a deleted branch).
fn valid_sha(s: &str) -> bool {
    (7..=64).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_hexdigit())
        && s.chars().any(|c| c != '0')
}

/// Where the status of a run started by an event of `event_type` with payload `body` goes:
/// `Ok(None)` when the event is not a push or pull/merge request of an enabled forge,
/// `Err(reason)` when it is one but its payload lacks what a status needs.
pub fn target_of(
    event_type: &str,
    body: &Value,
    config: &Config,
) -> Result<Option<Target>, String> {
    if event_type.starts_with("org.eoepca.webhook.github.") {
        if !config.statuses.github_status_enabled {
            return Ok(None);
        }
        let sha = if body.get("pull_request").is_some() {
            str_at(body, &["pull_request", "head", "sha"])
        } else if body.get("pusher").is_some() {
            str_at(body, &["head_commit", "id"]).or_else(|| str_at(body, &["after"]))
        } else {
            return Ok(None);
        };
        let owner = str_at(body, &["repository", "owner", "login"])
            .or_else(|| str_at(body, &["repository", "owner", "name"]))
            .ok_or("the payload has no repository.owner.login")?;
        let repo =
            str_at(body, &["repository", "name"]).ok_or("the payload has no repository.name")?;
        let sha = sha.ok_or("the payload names no head commit")?;
        if !valid_name(owner) || !valid_name(repo) || !valid_sha(sha) {
            return Err("the payload's owner, repository or commit is malformed".into());
        }
        return Ok(Some(Target {
            forge: Forge::GitHub,
            api_url: config
                .statuses
                .github_api_url
                .trim_end_matches('/')
                .to_string(),
            repository: format!("{owner}/{repo}"),
            token_scope: owner.to_string(),
            sha: sha.to_string(),
        }));
    }
    if event_type.starts_with("org.eoepca.webhook.gitlab.") {
        if !config.statuses.gitlab_status_enabled {
            return Ok(None);
        }
        let kind = str_at(body, &["object_kind"]).unwrap_or("");
        let (project, sha) = match kind {
            "push" => (
                body.get("project"),
                str_at(body, &["checkout_sha"]).or_else(|| str_at(body, &["after"])),
            ),
            "merge_request" => (
                // The commit lives in the source project (a fork for cross-project requests).
                body.pointer("/object_attributes/source")
                    .filter(|p| p.is_object())
                    .or_else(|| body.get("project")),
                str_at(body, &["object_attributes", "last_commit", "id"]),
            ),
            _ => return Ok(None),
        };
        let project = project.ok_or("the payload has no project")?;
        let id = match kind {
            "merge_request" => body
                .pointer("/object_attributes/source_project_id")
                .and_then(Value::as_i64)
                .or_else(|| project.get("id").and_then(Value::as_i64)),
            _ => project.get("id").and_then(Value::as_i64),
        }
        .filter(|id| *id > 0)
        .ok_or("the payload has no project id")?;
        let path = str_at(project, &["path_with_namespace"]).unwrap_or("");
        let namespace = path.split('/').next().unwrap_or("").to_string();
        let sha = sha.ok_or("the payload names no head commit")?;
        if !valid_sha(sha) {
            return Err("the payload's commit is malformed".into());
        }
        let api_url = match &config.statuses.gitlab_api_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let web =
                    str_at(project, &["web_url"]).ok_or("the payload has no project.web_url")?;
                let url = url::Url::parse(web).map_err(|_| "project.web_url is not a URL")?;
                // The token follows this URL: only to https hosts (set GITLAB_API_URL to pin
                // the instance, see docs/verdicts.md).
                if url.scheme() != "https" || url.host_str().is_none() {
                    return Err("project.web_url is not an https URL; set GITLAB_API_URL".into());
                }
                format!("{}/api/v4", url.origin().ascii_serialization())
            }
        };
        return Ok(Some(Target {
            forge: Forge::GitLab,
            api_url,
            repository: id.to_string(),
            token_scope: namespace,
            sha: sha.to_string(),
        }));
    }
    Ok(None)
}

/// Why a post failed, and whether trying again may help.
#[derive(Debug)]
pub struct PostError {
    pub message: String,
    pub retryable: bool,
}

impl PostError {
    /// A failure worth retrying.
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }
}

/// Posts one stored status.
pub async fn post(
    client: &HttpClient,
    config: &Config,
    row: &commit_status::Model,
    timeout: Duration,
) -> Result<(), PostError> {
    let forge = match row.forge.as_str() {
        "github" => Forge::GitHub,
        "gitlab" => Forge::GitLab,
        other => {
            return Err(PostError {
                message: format!("unknown forge {other:?}"),
                retryable: false,
            });
        }
    };
    let Some(token) = config.statuses.forge_tokens().get(forge, &row.token_scope) else {
        let (var, scope) = match forge {
            Forge::GitHub => ("GITHUB_API_TOKEN", &row.token_scope),
            Forge::GitLab => ("GITLAB_API_TOKEN", &row.token_scope),
        };
        return Err(PostError::retry(format!(
            "no token: set {var}__{scope} or {var}"
        )));
    };
    let (uri, body) = match forge {
        Forge::GitHub => (
            format!(
                "{}/repos/{}/statuses/{}",
                row.api_url, row.repository, row.sha
            ),
            json!({
                "state": row.state,
                "context": row.context,
                "description": row.description,
                "target_url": row.target_url,
            }),
        ),
        Forge::GitLab => (
            format!(
                "{}/projects/{}/statuses/{}",
                row.api_url, row.repository, row.sha
            ),
            json!({
                "state": row.state,
                "name": row.context,
                "description": row.description,
                "target_url": row.target_url,
            }),
        ),
    };
    let mut req = http::Request::post(&uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "application-quality-api");
    req = match forge {
        Forge::GitHub => req
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header(http::header::AUTHORIZATION, format!("Bearer {token}")),
        Forge::GitLab => req
            .header(http::header::ACCEPT, "application/json")
            .header("PRIVATE-TOKEN", token),
    };
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|_| PostError {
            message: format!("invalid status URL {uri:?}"),
            retryable: false,
        })?;
    let call = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| PostError::retry(format!("{} unreachable: {e}", forge.as_str())))?;
        let status = resp.status();
        let text = Limited::new(resp.into_body(), 4096)
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        if status.is_success() {
            return Ok(());
        }
        let snippet: String = text.chars().take(200).collect();
        let code = status.as_u16();
        Err(PostError {
            message: format!("HTTP {code}: {snippet}"),
            // Rate limits, timeouts, conflicts and server errors pass; other refusals (a
            // repository that does not exist, a bad token, an unknown commit) do not.
            retryable: status.is_server_error() || matches!(code, 401 | 403 | 408 | 409 | 429),
        })
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(PostError::retry(format!(
            "{} did not answer within {} ms",
            forge.as_str(),
            timeout.as_millis()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut vars = vec![
            ("GITHUB_STATUS_ENABLED".to_string(), "yes".to_string()),
            ("GITLAB_STATUS_ENABLED".to_string(), "1".to_string()),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::from_iter(vars).unwrap()
    }

    #[test]
    fn github_push_and_pull_request() {
        let c = config(&[]);
        let push = json!({"pusher": {}, "head_commit": {"id": "59b20b8d5c6f"}, "repository": {"name": "app", "owner": {"login": "EOEPCA"}}});
        let t = target_of("org.eoepca.webhook.github.push", &push, &c)
            .unwrap()
            .unwrap();
        assert_eq!(t.repository, "EOEPCA/app");
        assert_eq!(t.token_scope, "EOEPCA");
        assert_eq!(t.api_url, "https://api.github.com");
        let pr = json!({"pull_request": {"head": {"sha": "abcdef1234"}}, "repository": {"name": "app", "owner": {"login": "o"}}});
        let t = target_of("org.eoepca.webhook.github.pull_request", &pr, &c)
            .unwrap()
            .unwrap();
        assert_eq!(t.sha, "abcdef1234");
        // A ping has no commit; a deleted branch has the zero SHA; names cannot escape the path.
        assert_eq!(
            target_of("org.eoepca.webhook.github.ping", &json!({"zen": "x"}), &c).unwrap(),
            None
        );
        let deleted = json!({"pusher": {}, "head_commit": null, "after": "0000000000000000000000000000000000000000", "repository": {"name": "app", "owner": {"login": "o"}}});
        assert!(target_of("org.eoepca.webhook.github.push", &deleted, &c).is_err());
        let evil = json!({"pusher": {}, "head_commit": {"id": "abcdef1"}, "repository": {"name": "../x", "owner": {"login": "o"}}});
        assert!(target_of("org.eoepca.webhook.github.push", &evil, &c).is_err());
        // Off when not enabled.
        let off = Config::from_iter(Vec::<(String, String)>::new()).unwrap();
        assert_eq!(
            target_of("org.eoepca.webhook.github.push", &push, &off).unwrap(),
            None
        );
    }

    #[test]
    fn gitlab_push_and_merge_request() {
        let c = config(&[]);
        let push = json!({"object_kind": "push", "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "project": {"id": 15, "path_with_namespace": "group/sub/app", "web_url": "https://gitlab.example.org/group/sub/app"}});
        let t = target_of("org.eoepca.webhook.gitlab.push", &push, &c)
            .unwrap()
            .unwrap();
        assert_eq!(t.api_url, "https://gitlab.example.org/api/v4");
        assert_eq!(t.repository, "15");
        assert_eq!(t.token_scope, "group");
        let mr = json!({"object_kind": "merge_request", "project": {"id": 1, "web_url": "https://gitlab.com/a/b"},
            "object_attributes": {"source_project_id": 2, "source": {"path_with_namespace": "fork/b", "web_url": "https://gitlab.com/fork/b"},
                "last_commit": {"id": "abcdef12"}}});
        let t = target_of("org.eoepca.webhook.gitlab.merge_request", &mr, &c)
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.repository.as_str(), t.token_scope.as_str()),
            ("2", "fork")
        );
        // Plain http from the payload is refused; GITLAB_API_URL pins the instance.
        let mut insecure = push.clone();
        insecure["project"]["web_url"] = json!("http://evil.example/x");
        assert!(target_of("org.eoepca.webhook.gitlab.push", &insecure, &c).is_err());
        let pinned = config(&[("GITLAB_API_URL", "http://127.0.0.1:9/api/v4/")]);
        let t = target_of("org.eoepca.webhook.gitlab.push", &insecure, &pinned)
            .unwrap()
            .unwrap();
        assert_eq!(t.api_url, "http://127.0.0.1:9/api/v4");
        assert_eq!(Forge::GitLab.state_name("failure"), "failed");
        assert_eq!(Forge::GitHub.state_name("error"), "error");
    }
}
