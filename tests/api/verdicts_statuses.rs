//! Commit statuses on GitHub and GitLab, against a local HTTP server standing in for each
//! forge's status API: every request is checked (method, URL, headers, body); the forge answers
//! 500, is down, is slow; the service restarts; two replicas share the outbox. Statuses arrive
//! once each, in order.

use super::support::{
    ForgeStandIn, Mode, Received, digest, finish_job, post_report_multipart, spawn,
};
use crate::common::{TestApp, fresh_database_url};
use application_quality_api::db::entities::commit_status;
use sea_orm::{EntityTrait, QueryOrder};
use serde_json::{Value, json};
use std::time::Duration;

const SHA: &str = "59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5";
const CONTEXT: &str = "EOEPCA Application Quality / Quality Check";

fn env(forge: &ForgeStandIn) -> Vec<(String, String)> {
    [
        ("GITHUB_STATUS_ENABLED", "true"),
        ("GITHUB_API_URL", &forge.url()),
        ("GITHUB_API_TOKEN__EOEPCA", "ghp-owner-token"),
        ("GITHUB_API_TOKEN", "ghp-fallback-token"),
        ("GITLAB_STATUS_ENABLED", "yes"),
        ("GITLAB_API_URL", &format!("{}/api/v4", forge.url())),
        ("GITLAB_API_TOKEN__group", "glpat-group-token"),
        ("COMMIT_STATUS_RETRY_BASE_MS", "50"),
        ("COMMIT_STATUS_RETRY_MAX_SECS", "1"),
        ("COMMIT_STATUS_TIMEOUT_MS", "3000"),
        ("PUBLIC_URL", "https://aq.example.org"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn github_push(sha: &str) -> Value {
    json!({
        "ref": "refs/heads/main", "after": sha,
        "head_commit": {"id": sha, "message": "Fix"},
        "repository": {"name": "application-quality", "full_name": "EOEPCA/application-quality",
            "owner": {"login": "EOEPCA", "name": "EOEPCA"},
            "clone_url": "https://github.com/EOEPCA/application-quality.git"},
        "pusher": {"name": "alice"}, "sender": {"login": "alice"}
    })
}

fn gitlab_push(sha: &str) -> Value {
    json!({
        "object_kind": "push", "ref": "refs/heads/main", "checkout_sha": sha, "after": sha,
        "user_username": "alice",
        "project": {"id": 15, "path_with_namespace": "group/app", "web_url": "https://gitlab.example.org/group/app",
            "git_http_url": "https://gitlab.example.org/group/app.git"}
    })
}

/// A seeded app with a GitHub push trigger and a GitLab push trigger owned by alice.
async fn setup(app: &TestApp) -> String {
    app.seed().await;
    let (_, token) = app.user_with_token("alice", false).await;
    let p = super::digests::seeded(app, "Python lint").await;
    for (slug, ty, url) in [
        ("gh", "github_webhook_push", "repository.clone_url"),
        ("gl", "gitlab_webhook_push", "project.git_http_url"),
    ] {
        let (s, body) = app
            .post(
                "/api/triggers/",
                Some(&token),
                &json!({"slug": slug, "trigger_type": ty, "pipeline": p,
                    "params_default": {"parameters": {"clone_subworkflow": {"clone": {"repo_branch": "main"}}}},
                    "params_mapping": {"clone_subworkflow.clone.repo_url": url}}),
            )
            .await;
        assert_eq!(s, 201, "{body}");
    }
    token
}

/// Delivers a webhook event; returns the run it started.
async fn push(app: &TestApp, ty: &str, id: &str, data: &Value) -> (i64, i64) {
    let (s, body) = app
        .send(
            app.client
                .post(app.url("/api/events/"))
                .header("content-type", "application/json")
                .header("ce-specversion", "1.0")
                .header("ce-id", id)
                .header("ce-source", "https://forge.example/repo")
                .header("ce-type", ty)
                .body(data.to_string()),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["status"], "accepted", "{body}");
    let run = body["run_ids"][0].as_i64().unwrap();
    (body["pipeline_id"].as_i64().unwrap(), run)
}

fn check_github(r: &Received, state: &str, description: &str, pipeline: i64, run: i64) {
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path,
        format!("/repos/EOEPCA/application-quality/statuses/{SHA}")
    );
    assert_eq!(r.headers["authorization"], "Bearer ghp-owner-token");
    assert_eq!(r.headers["accept"], "application/vnd.github+json");
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(r.headers.contains_key("user-agent"));
    assert_eq!(
        r.body,
        json!({"state": state, "context": CONTEXT, "description": description,
            "target_url": format!("https://aq.example.org/api/pipelines/{pipeline}/runs/{run}/")})
    );
}

async fn outbox(app: &TestApp) -> Vec<commit_status::Model> {
    commit_status::Entity::find()
        .order_by_asc(commit_status::Column::Id)
        .all(&app.state.db)
        .await
        .unwrap()
}

/// Waits until the outbox row `id` was tried at least `n` times.
async fn wait_attempts(app: &TestApp, index: usize, n: i32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rows = outbox(app).await;
        if rows.get(index).is_some_and(|r| r.attempts >= n) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rows:#?}");
        let _ = app.get("/api/", None).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn github_statuses_arrive_once_in_order_through_500s_an_outage_and_a_restart() {
    let mut forge = ForgeStandIn::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(&dir).await;
    let (app, k) = spawn(env(&forge), Some(db.clone())).await;
    let token = setup(&app).await;
    let (_, admin) = app.user_with_token("admin", true).await;

    // pending, as soon as the event created the run.
    let (p, run) = push(
        &app,
        "org.eoepca.webhook.github.push",
        "gh-1",
        &github_push(SHA),
    )
    .await;
    let got = forge.wait_for(&app, 1, 20).await;
    check_github(
        &got[0],
        "pending",
        "Best practices validation is being applied",
        p,
        run,
    );
    let (_, r) = app
        .get(&format!("/api/pipelines/_/runs/{run}/"), Some(&token))
        .await;
    assert!(r["trigger_event"].is_i64(), "{r}");
    let (_, tr) = app.get("/api/triggers/gh/runs/", Some(&token)).await;
    assert_eq!(tr[0]["id"], run);
    let (_, ev) = app.get("/api/triggers/gh/events/", Some(&token)).await;
    assert_eq!(ev[0]["event_body"]["head_commit"]["id"], SHA);
    assert!(ev[0]["event_headers"].is_object());

    // The forge answers 500: the end is retried until it accepts.
    forge.set_mode(Mode::Error500);
    let (s, _) = post_report_multipart(
        &app,
        &format!("/api/pipelines/{p}/runs/{run}/jobreports/?name=ruff"),
        &k.token(run),
        &[
            ("report", "[]"),
            ("digest", &digest("ruff", json!({"error": 2}))),
        ],
    )
    .await;
    assert_eq!(s, 201);
    finish_job(&app, run, "Complete").await;
    wait_attempts(&app, 1, 2).await;
    assert!(forge.refused() >= 2);
    forge.set_mode(Mode::Ok);
    let got = forge.wait_for(&app, 2, 20).await;
    check_github(
        &got[1],
        "failure",
        "Best practices validation failed",
        p,
        run,
    );

    // The forge is down when staff override the verdict; the service restarts meanwhile.
    forge.stop().await;
    let started = std::time::Instant::now();
    let (s, body) = app
        .send(
            app.client
                .patch(app.url(&format!("/api/pipelines/{p}/runs/{run}/")))
                .bearer_auth(&admin)
                .json(&json!({"digest": {"digest_quality": "pass"}})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    eprintln!(
        "override answered in {:?} with the forge down",
        started.elapsed()
    );
    wait_attempts(&app, 2, 1).await;
    let rows = outbox(&app).await;
    assert_eq!(rows[2].outcome, "queued");
    assert!(
        rows[2]
            .last_error
            .as_deref()
            .unwrap()
            .contains("unreachable"),
        "{rows:#?}"
    );
    drop(app);
    forge.restart().await;
    let (app, _k) = spawn(env(&forge), Some(db)).await;
    let got = forge.wait_for(&app, 3, 20).await;
    check_github(
        &got[2],
        "success",
        "Best practices validation is successful",
        p,
        run,
    );
    // Once each, in order, all delivered; no token in the database.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let states: Vec<_> = forge
        .accepted()
        .iter()
        .map(|r| r.body["state"].clone())
        .collect();
    assert_eq!(states, ["pending", "failure", "success"]);
    let rows = outbox(&app).await;
    assert!(rows.iter().all(|r| r.outcome == "delivered"), "{rows:#?}");
    assert!(!format!("{rows:?}").contains("ghp-"), "tokens never stored");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"commit_statuses{forge="github",outcome="delivered"} 3"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"commit_statuses{forge="github",outcome="queued"} 0"#));
    assert!(!metrics.contains("ghp-"));
}

#[tokio::test]
async fn gitlab_statuses_use_its_api_and_the_namespace_token() {
    let forge = ForgeStandIn::start().await;
    let (app, k) = spawn(env(&forge), None).await;
    setup(&app).await;
    let (p, run) = push(
        &app,
        "org.eoepca.webhook.gitlab.push",
        "gl-1",
        &gitlab_push(SHA),
    )
    .await;
    let got = forge.wait_for(&app, 1, 20).await;
    let check = |r: &Received, state: &str, description: &str| {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, format!("/api/v4/projects/15/statuses/{SHA}"));
        assert_eq!(r.headers["private-token"], "glpat-group-token");
        assert!(!r.headers.contains_key("authorization"));
        assert_eq!(
            r.body,
            json!({"state": state, "name": CONTEXT, "description": description,
                "target_url": format!("https://aq.example.org/api/pipelines/{p}/runs/{run}/")})
        );
    };
    check(
        &got[0],
        "pending",
        "Best practices validation is being applied",
    );
    let (s, _) = post_report_multipart(
        &app,
        &format!("/api/pipelines/{p}/runs/{run}/jobreports/?name=ruff"),
        &k.token(run),
        &[
            ("report", "[]"),
            ("digest", &digest("ruff", json!({"info": 2}))),
        ],
    )
    .await;
    assert_eq!(s, 201);
    finish_job(&app, run, "Complete").await;
    let got = forge.wait_for(&app, 2, 20).await;
    check(
        &got[1],
        "success",
        "Best practices validation is successful",
    );
    // A run that fails to execute fails the check.
    let (_, run2) = push(
        &app,
        "org.eoepca.webhook.gitlab.push",
        "gl-2",
        &gitlab_push(SHA),
    )
    .await;
    forge.wait_for(&app, 3, 20).await;
    finish_job(&app, run2, "Failed").await;
    let got = forge.wait_for(&app, 4, 20).await;
    assert_eq!(got[3].body["state"], "failed");
    assert_eq!(
        got[3].body["description"],
        "The quality pipeline did not complete (failed)."
    );
    // A report that arrives after the first run ended still counts: its verdict and status
    // change; a late report that leaves the state as it was posts nothing.
    let (s, _) = post_report_multipart(
        &app,
        &format!("/api/pipelines/{p}/runs/{run}/jobreports/?name=bandit"),
        &k.token(run),
        &[
            ("report", "{}"),
            ("digest", &digest("bandit", json!({"critical": 1}))),
        ],
    )
    .await;
    assert_eq!(s, 201);
    let got = forge.wait_for(&app, 5, 20).await;
    check(&got[4], "failed", "Best practices validation failed");
    let (s, _) = post_report_multipart(
        &app,
        &format!("/api/pipelines/{p}/runs/{run}/jobreports/?name=flake8"),
        &k.token(run),
        &[
            ("report", "{}"),
            ("digest", &digest("flake8", json!({"error": 1}))),
        ],
    )
    .await;
    assert_eq!(s, 201);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = app.get("/api/", None).await;
    assert_eq!(
        forge.accepted().len(),
        5,
        "an unchanged state posts nothing"
    );
}

#[tokio::test]
async fn two_replicas_and_a_slow_forge_deliver_each_status_once() {
    let forge = ForgeStandIn::start().await;
    forge.set_mode(Mode::Slow(Duration::from_millis(300)));
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(&dir).await;
    let (a, _) = spawn(env(&forge), Some(db.clone())).await;
    setup(&a).await;
    let (b, _) = spawn(env(&forge), Some(db)).await;
    let mut runs = Vec::new();
    for i in 0..6 {
        let sha = format!("{:040x}", 0xabc000 + i);
        let replica = if i % 2 == 0 { &a } else { &b };
        let (_, run) = push(
            replica,
            "org.eoepca.webhook.github.push",
            &format!("gh-r{i}"),
            &github_push(&sha),
        )
        .await;
        runs.push((run, sha));
    }
    for (i, (run, _)) in runs.iter().enumerate() {
        finish_job(if i % 2 == 0 { &b } else { &a }, *run, "Complete").await;
    }
    // Both replicas keep polling the outbox while the slow forge answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while forge.accepted().len() < 12 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:#?}",
            forge.accepted()
        );
        let _ = tokio::join!(a.get("/api/", None), b.get("/api/", None));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let _ = tokio::join!(a.get("/api/", None), b.get("/api/", None));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = forge.accepted();
    assert_eq!(got.len(), 12, "each status once: {got:#?}");
    for (_, sha) in &runs {
        let states: Vec<_> = got
            .iter()
            .filter(|r| r.path.ends_with(sha.as_str()))
            .map(|r| r.body["state"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(states, ["pending", "success"], "{sha}");
    }
}

#[tokio::test]
async fn the_wakeup_event_delivers_due_statuses_and_nothing_without_settings() {
    let mut forge = ForgeStandIn::start().await;
    let (app, _) = spawn(env(&forge), None).await;
    setup(&app).await;
    forge.stop().await;
    push(
        &app,
        "org.eoepca.webhook.github.push",
        "gh-w",
        &github_push(SHA),
    )
    .await;
    wait_attempts(&app, 0, 1).await;
    forge.restart().await;
    // The PingSource's event: delivered before the reply, so a scaled-to-zero instance finishes.
    let wake = |id: String| {
        app.client
            .post(app.url("/api/events/"))
            .header("ce-specversion", "1.0")
            .header("ce-id", id)
            .header(
                "ce-source",
                "/apis/v1/namespaces/application-quality/pingsources/application-quality-wakeup",
            )
            .header("ce-type", "org.eoepca.application-quality.events.wakeup")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        n += 1;
        let (s, body) = app.send(wake(format!("w{n}"))).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["status"], "ok", "{body}");
        if !forge.accepted().is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(forge.accepted().len(), 1);

    // Statuses off: a triggered run posts nothing and queues nothing.
    let quiet = ForgeStandIn::start().await;
    let (app2, _) = spawn(vec![("GITHUB_API_URL".into(), quiet.url())], None).await;
    setup(&app2).await;
    push(
        &app2,
        "org.eoepca.webhook.github.push",
        "gh-q",
        &github_push(SHA),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(outbox(&app2).await.is_empty());
    assert!(quiet.accepted().is_empty());
}
