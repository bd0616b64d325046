//! CI workload identities on the REST API (issue 14): GitHub Actions and GitLab CI ID tokens,
//! signed by keys the test controls and served over the real protocol (issuer discovery +
//! JWKS on loopback), mapped to local users by `CI_OIDC_POLICIES`.

use crate::common::{Options, TestApp};
use crate::events_auth::{Issuer, Signer, ec_signer, rsa_signer, sign};
use serde_json::{Value, json};
use std::sync::LazyLock;

const AUDIENCE: &str = "https://aq.example.org";

static GITHUB_KEY: LazyLock<Signer> = LazyLock::new(|| rsa_signer("gh-1"));
static GITLAB_KEY: LazyLock<Signer> = LazyLock::new(|| ec_signer("gl-1"));
static FORGED_KEY: LazyLock<Signer> = LazyLock::new(|| rsa_signer("gh-1"));

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A GitHub Actions token's claims (the shape GitHub documents) for `repository` at `git_ref`.
fn github_claims(iss: &str, repository: &str, git_ref: &str) -> Value {
    let owner = repository.split('/').next().unwrap();
    json!({
        "iss": iss, "aud": AUDIENCE,
        "sub": format!("repo:{repository}:ref:{git_ref}"),
        "repository": repository, "repository_owner": owner,
        "repository_id": "74", "repository_owner_id": "65",
        "ref": git_ref, "ref_type": "branch", "sha": "example-sha",
        "workflow": "quality", "event_name": "push", "actor": "octocat",
        "job_workflow_ref": format!("{repository}/.github/workflows/quality.yml@{git_ref}"),
        "runner_environment": "github-hosted",
        "iat": now(), "nbf": now(), "exp": now() + 300,
    })
}

/// A GitLab CI ID token's claims.
fn gitlab_claims(iss: &str, project_path: &str, git_ref: &str, protected: bool) -> Value {
    json!({
        "iss": iss, "aud": AUDIENCE,
        "sub": format!("project_path:{project_path}:ref_type:branch:ref:{git_ref}"),
        "project_path": project_path, "project_id": "22",
        "namespace_path": project_path.split('/').next().unwrap(), "namespace_id": "72",
        "ref": git_ref, "ref_type": "branch", "ref_protected": protected.to_string(),
        "pipeline_source": "push", "user_login": "dev",
        "iat": now(), "nbf": now(), "exp": now() + 300,
    })
}

async fn spawn(github: &Issuer, gitlab: &Issuer) -> TestApp {
    let policies = json!([
        {"issuer": "github", "claims": {"repository": "org/notebooks", "ref": "refs/heads/*"}, "user": "ci-github"},
        {"issuer": "gitlab", "claims": {"project_path": "group/project", "ref_protected": "true"}, "user": "ci-gitlab"},
        {"issuer": "github", "claims": {"repository": "org/ghost"}, "user": "nobody"},
    ]);
    let env = [
        ("PUBLIC_URL", AUDIENCE.to_string()),
        ("CI_GITHUB_ISSUER", github.url.clone()),
        ("CI_GITLAB_ISSUER", gitlab.url.clone()),
        ("CI_OIDC_POLICIES", policies.to_string()),
    ];
    let app = TestApp::spawn_with(Options {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..Default::default()
    })
    .await;
    app.user("ci-github", "unused-password-1", false).await;
    app.user("ci-gitlab", "unused-password-2", false).await;
    app
}

#[tokio::test]
async fn github_and_gitlab_tokens_mapped_by_policy() {
    let github = Issuer::start(vec![GITHUB_KEY.jwk.clone()]).await;
    let gitlab = Issuer::start(vec![GITLAB_KEY.jwk.clone()]).await;
    let app = spawn(&github, &gitlab).await;
    assert_eq!(github.hits(), (0, 0), "nothing fetched at start-up");

    // Allowed: GitHub, a branch of the mapped repository; it can start runs.
    let gh = sign(
        &GITHUB_KEY,
        &github_claims(&github.url, "org/notebooks", "refs/heads/main"),
    );
    let (status, me) = app.get("/api/users/me/", Some(&gh)).await;
    assert_eq!(
        (status, me["username"].as_str()),
        (200, Some("ci-github")),
        "{me}"
    );
    let (status, p) = app
        .post(
            "/api/pipelines/",
            Some(&gh),
            &json!({"name": "ci pipeline"}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    // Allowed: GitLab, a protected ref of the mapped project.
    let gl = sign(
        &GITLAB_KEY,
        &gitlab_claims(&gitlab.url, "group/project", "main", true),
    );
    let (status, me) = app.get("/api/users/me/", Some(&gl)).await;
    assert_eq!(
        (status, me["username"].as_str()),
        (200, Some("ci-gitlab")),
        "{me}"
    );
    // Keys fetched once and cached.
    for _ in 0..3 {
        assert_eq!(app.get("/api/users/me/", Some(&gh)).await.0, 200);
    }
    assert_eq!(github.hits(), (1, 1));

    // Refused, each with a reason.
    let unknown = Issuer::start(vec![GITHUB_KEY.jwk.clone()]).await;
    let mut expired = github_claims(&github.url, "org/notebooks", "refs/heads/main");
    expired["exp"] = json!(now() - 120);
    expired["iat"] = json!(now() - 600);
    let mut wrong_aud = github_claims(&github.url, "org/notebooks", "refs/heads/main");
    wrong_aud["aud"] = json!("https://github.com/org");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "another repository",
            sign(
                &GITHUB_KEY,
                &github_claims(&github.url, "org/other", "refs/heads/main"),
            ),
            "No CI_OIDC_POLICIES entry",
        ),
        (
            "a tag instead of a branch",
            sign(
                &GITHUB_KEY,
                &github_claims(&github.url, "org/notebooks", "refs/tags/v1"),
            ),
            "No CI_OIDC_POLICIES entry",
        ),
        (
            "GitLab, unprotected ref",
            sign(
                &GITLAB_KEY,
                &gitlab_claims(&gitlab.url, "group/project", "feature", false),
            ),
            "No CI_OIDC_POLICIES entry",
        ),
        (
            "a GitHub-shaped token from the GitLab issuer",
            sign(
                &GITLAB_KEY,
                &github_claims(&gitlab.url, "org/notebooks", "refs/heads/main"),
            ),
            "No CI_OIDC_POLICIES entry",
        ),
        ("expired", sign(&GITHUB_KEY, &expired), "expired"),
        ("wrong audience", sign(&GITHUB_KEY, &wrong_aud), "audience"),
        (
            "forged signature (same kid)",
            sign(
                &FORGED_KEY,
                &github_claims(&github.url, "org/notebooks", "refs/heads/main"),
            ),
            "signature",
        ),
        (
            "unknown issuer",
            sign(
                &GITHUB_KEY,
                &github_claims(&unknown.url, "org/notebooks", "refs/heads/main"),
            ),
            "not accepted",
        ),
        (
            "a policy naming a user that does not exist",
            sign(
                &GITHUB_KEY,
                &github_claims(&github.url, "org/ghost", "refs/heads/main"),
            ),
            "does not exist",
        ),
    ];
    for (what, token, reason) in cases {
        let (status, body) = app.get("/api/users/me/", Some(&token)).await;
        assert_eq!(status, 401, "{what}: {body}");
        let detail = body["detail"].as_str().unwrap_or("");
        assert!(detail.contains(reason), "{what}: {detail}");
    }
    assert_eq!(
        unknown.hits(),
        (0, 0),
        "an unknown issuer is never contacted"
    );
}

#[tokio::test]
async fn without_policies_ci_tokens_are_refused() {
    let github = Issuer::start(vec![GITHUB_KEY.jwk.clone()]).await;
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("PUBLIC_URL".into(), AUDIENCE.into()),
            ("CI_GITHUB_ISSUER".into(), github.url.clone()),
        ],
        ..Default::default()
    })
    .await;
    let gh = sign(
        &GITHUB_KEY,
        &github_claims(&github.url, "org/notebooks", "refs/heads/main"),
    );
    let (status, body) = app.get("/api/users/me/", Some(&gh)).await;
    assert_eq!(status, 401);
    assert!(body["detail"].as_str().unwrap().contains("not accepted"));
    assert_eq!(github.hits(), (0, 0));
}
