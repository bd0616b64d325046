//! Fair shares: per-user limits on REST, `pipeline.execute` events and triggers (429 with
//! `Retry-After`, events not recorded so a redelivery is processed exactly once), with exact
//! counts under concurrent requests; and the local runner's queue serving users in turn (real
//! cwltool, runs kept busy by a repository server that never answers).

use crate::common::TestApp;
use crate::events::support::{
    binary, deliver, execute, execute_payload, run_count, spawn_with_env, stored_event,
};
use crate::local_runs::{LocalApp, clone_params, cwltool, hanging_repository, spawn_local};
use application_quality_api::db::entities::{pipeline_run, received_event, trigger_event};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// `POST /api/pipelines/{p}/runs/`: status, `Retry-After`, body.
async fn post_run(
    app: &TestApp,
    token: &str,
    pipeline: i64,
    parameters: &Value,
) -> (u16, Option<String>, Value) {
    let r = app
        .client
        .post(app.url(&format!("/api/pipelines/{pipeline}/runs/")))
        .bearer_auth(token)
        .json(&json!({ "parameters": parameters }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

async fn runs_of(app: &TestApp, user_id: i64) -> u64 {
    pipeline_run::Entity::find()
        .filter(pipeline_run::Column::StartedById.eq(user_id))
        .count(&app.state.db)
        .await
        .unwrap()
}

async fn metrics(app: &TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Kubernetes-like executor (every stored run starts at once: the events tests' counting
/// launcher reports each as launched), so `RUNS_MAX_ACTIVE_PER_USER` refuses.
#[tokio::test]
async fn rest_and_events_refuse_beyond_the_limit_with_exact_counts() {
    let t = spawn_with_env(vec![("RUNS_MAX_ACTIVE_PER_USER".into(), "3".into())]).await;
    let app = &t.app;
    let (alice, alice_token) = app.user_with_token("alice", false).await;
    let (_, bob_token) = app.user_with_token("bob", false).await;
    let params = execute_payload()["parameters"].clone();

    // Ten at once: exactly three pass, whatever the interleaving (and on any store).
    let attempts = (0..10).map(|_| post_run(app, &alice_token, t.pipeline_id, &params));
    let results = futures::future::join_all(attempts).await;
    let created = results.iter().filter(|(s, _, _)| *s == 201).count();
    let refused: Vec<_> = results.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!((created, refused.len()), (3, 7), "{results:?}");
    for (_, retry, body) in &refused {
        assert_eq!(retry.as_deref(), Some("30"));
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("RUNS_MAX_ACTIVE_PER_USER=3"),
            "{body}"
        );
    }
    assert_eq!(runs_of(app, alice.id).await, 3);
    // Someone else is not held back.
    let (status, _, _) = post_run(app, &bob_token, t.pipeline_id, &params).await;
    assert_eq!(status, 201);

    // An event naming alice: the retryable 429, and nothing recorded.
    let r = deliver(execute(
        app,
        "/api/events/",
        "fair-1",
        "alice",
        t.pipeline_id,
        &execute_payload(),
    ))
    .await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.header("retry-after"), "30");
    assert!(
        r.header("ce-type").is_empty(),
        "errors carry no reply event"
    );
    assert!(stored_event(app, "curl", "fair-1").await.is_none());
    assert_eq!(runs_of(app, alice.id).await, 3);

    let text = metrics(app).await;
    for line in [
        r#"runs_refused_total{reason="user_active_limit",via="rest"} 7"#,
        r#"runs_refused_total{reason="user_active_limit",via="event"} 1"#,
        r#"cloudevents_received_total{type_family="execute",outcome="throttled"} 1"#,
        r#"runs_waiting{reason="no_free_slot"} 0"#,
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }

    // One of alice's runs ends: the redelivery is processed, once.
    let (_, list) = app
        .get("/api/pipelines/_/runs/?limit=1", Some(&alice_token))
        .await;
    let first = list["results"][0]["id"].as_i64().unwrap();
    let (status, run) = app
        .post(
            &format!("/api/pipelines/_/runs/{first}/cancel/"),
            Some(&alice_token),
            &json!({}),
        )
        .await;
    assert_eq!((status, run["status"].as_str()), (200, Some("killed")));
    let r = deliver(execute(
        app,
        "/api/events/",
        "fair-1",
        "alice",
        t.pipeline_id,
        &execute_payload(),
    ))
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "accepted");
    let run_id = r.body["run_id"].as_i64().unwrap();
    let again = deliver(execute(
        app,
        "/api/events/",
        "fair-1",
        "alice",
        t.pipeline_id,
        &execute_payload(),
    ))
    .await;
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(again.body["run_id"], run_id);
    assert_eq!(runs_of(app, alice.id).await, 4);
    assert_eq!(t.launcher.of(run_id), 1);
    // Full again.
    let (status, _, _) = post_run(app, &alice_token, t.pipeline_id, &params).await;
    assert_eq!(status, 429);
}

/// A GitHub push matching two owners' triggers, one owner at their limit: the whole event is
/// refused (429, nothing recorded, no run for anyone) and succeeds, exactly once, when redelivered
/// after the owner's run ended.
#[tokio::test]
async fn triggers_run_within_their_owners_limits_and_are_retried_whole() {
    let t = spawn_with_env(vec![("RUNS_MAX_ACTIVE_PER_USER".into(), "1".into())]).await;
    let app = &t.app;
    let (_, alice_token) = app.user_with_token("alice", false).await;
    let (_, bob_token) = app.user_with_token("bob", false).await;
    for (slug, token) in [("alice-push", &alice_token), ("bob-push", &bob_token)] {
        let (status, body) = app
            .post(
                "/api/triggers/",
                Some(token),
                &json!({
                    "slug": slug,
                    "trigger_type": "github_webhook_push",
                    "pipeline": t.pipeline_id,
                    "cql2_filter": {"op": "=", "args": [{"property": "repository.full_name"}, "org/repo"]},
                    "params_default": execute_payload(),
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, _, busy) = post_run(
        app,
        &alice_token,
        t.pipeline_id,
        &execute_payload()["parameters"],
    )
    .await;
    assert_eq!(status, 201);
    let push = || {
        binary(
            app,
            "/api/events/",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "push-1"),
                ("ce-source", "https://github.com/org/repo"),
                ("ce-type", "org.eoepca.webhook.github.push"),
            ],
            &json!({"ref": "refs/heads/main", "repository": {"full_name": "org/repo"}}).to_string(),
        )
    };
    let r = deliver(push()).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert!(
        r.body["detail"].as_str().unwrap().contains("'alice'"),
        "{:?}",
        r.body
    );
    assert_eq!(r.header("retry-after"), "30");
    let recorded = received_event::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap();
    let trigger_events = trigger_event::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!((recorded, trigger_events), (0, 0));
    assert_eq!(run_count(app).await, 1, "bob's run was not made either");

    let (status, _) = app
        .post(
            &format!("/api/pipelines/_/runs/{}/cancel/", busy["id"]),
            Some(&alice_token),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let r = deliver(push()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "accepted");
    assert_eq!(r.body["run_ids"].as_array().unwrap().len(), 2);
    let again = deliver(push()).await;
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(again.body["run_ids"], r.body["run_ids"]);
    assert_eq!(run_count(app).await, 3);
    let trigger_events = trigger_event::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(trigger_events, 2);
}

/// A run as staff see it (whoever started it).
async fn run_as_staff(t: &LocalApp, staff: &str, id: i64) -> Value {
    let (status, run) = t
        .app
        .get(&format!("/api/pipelines/_/runs/{id}/"), Some(staff))
        .await;
    assert_eq!(status, 200, "{run}");
    run
}

/// The status of every listed run.
async fn statuses(t: &LocalApp, staff: &str, ids: &[i64]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        let run = run_as_staff(t, staff, *id).await;
        out.push(run["status"].as_str().unwrap().to_string());
    }
    out
}

/// Waits (bounded) until exactly one of `waiting` is running (the others still starting);
/// returns it.
async fn next_running(t: &LocalApp, staff: &str, waiting: &[i64]) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = statuses(t, staff, waiting).await;
        let running: Vec<i64> = waiting
            .iter()
            .zip(&s)
            .filter(|(_, s)| *s == "running")
            .map(|(id, _)| *id)
            .collect();
        assert!(running.len() <= 1, "one slot, several running: {s:?}");
        assert!(
            s.iter().all(|s| s == "starting" || s == "running"),
            "{waiting:?}: {s:?}"
        );
        if let [id] = running[..] {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "none of {waiting:?} started: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cancel(t: &LocalApp, token: &str, id: i64) {
    let (status, run) = t
        .app
        .post(
            &format!("/api/pipelines/_/runs/{id}/cancel/"),
            Some(token),
            &json!({}),
        )
        .await;
    assert_eq!((status, run["status"].as_str()), (200, Some("killed")));
}

/// Three users, one flooding, one slot: the flooder's fourth waiting run is refused, and the
/// slot goes A, B, C, A, A, A.
#[tokio::test]
async fn the_local_queue_serves_three_users_in_turn_with_exact_limits() {
    let Some(cwltool) = cwltool() else { return };
    let t = spawn_local(
        &cwltool,
        &[
            ("LOCAL_CONCURRENCY", "1"),
            ("RUNS_MAX_QUEUED_PER_USER", "3"),
        ],
    )
    .await;
    let (_, b_token) = t.app.user_with_token("bob", false).await;
    let (_, c_token) = t.app.user_with_token("carol", false).await;
    let (_, staff) = t.app.user_with_token("root", true).await;
    let hang = tempfile::tempdir().unwrap();
    let url = hanging_repository(hang.path());
    let params = clone_params(&url);
    let pipeline = t.lint_pipeline;

    let a1 = t.start(pipeline, params.clone()).await;
    t.wait(a1, Some("running")).await;
    let mut a = Vec::new();
    for _ in 0..3 {
        a.push(t.start(pipeline, params.clone()).await);
    }
    // The fourth waiting run of A: refused, exactly.
    let (status, retry, body) = post_run(&t.app, &t.token, pipeline, &params).await;
    assert_eq!((status, retry.as_deref()), (429, Some("30")), "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("3 run(s) waiting for the local runner"),
        "{body}"
    );
    let (status, _, b1) = post_run(&t.app, &b_token, pipeline, &params).await;
    assert_eq!(status, 201);
    let (status, _, c1) = post_run(&t.app, &c_token, pipeline, &params).await;
    assert_eq!(status, 201);
    let (b1, c1) = (b1["id"].as_i64().unwrap(), c1["id"].as_i64().unwrap());
    // B and C were never served: they go before A's second run.
    assert_eq!(
        run_as_staff(&t, &staff, b1).await["status_message"],
        "Queued for the local runner: 0 run(s) ahead in the queue (users take turns), 1 running, 1 at a time."
    );
    assert_eq!(
        run_as_staff(&t, &staff, c1).await["status_message"],
        "Queued for the local runner: 1 run(s) ahead in the queue (users take turns), 1 running, 1 at a time."
    );
    let text = metrics(&t.app).await;
    assert!(
        text.contains(r#"runs_waiting{reason="no_free_slot"} 5"#)
            && text.contains(r#"runs_refused_total{reason="user_queue_limit",via="rest"} 1"#),
        "{text}"
    );

    // End whatever runs, and see who gets the slot.
    let mut order = vec![a1];
    let mut waiting = vec![a[0], a[1], a[2], b1, c1];
    let mut current = a1;
    while !waiting.is_empty() {
        let token = if current == b1 {
            &b_token
        } else if current == c1 {
            &c_token
        } else {
            &t.token
        };
        cancel(&t, token, current).await;
        current = next_running(&t, &staff, &waiting).await;
        order.push(current);
        waiting.retain(|id| *id != current);
    }
    assert_eq!(order, [a1, b1, c1, a[0], a[1], a[2]]);
    cancel(&t, &t.token, current).await;
}

/// `RUNS_MAX_ACTIVE_PER_USER` on the local runner: a user's second run waits although a slot
/// is free, and another user's run takes that slot.
#[tokio::test]
async fn the_local_runner_keeps_a_users_runs_beyond_the_active_limit_waiting() {
    let Some(cwltool) = cwltool() else { return };
    let t = spawn_local(
        &cwltool,
        &[
            ("LOCAL_CONCURRENCY", "2"),
            ("RUNS_MAX_ACTIVE_PER_USER", "1"),
        ],
    )
    .await;
    let (_, b_token) = t.app.user_with_token("bob", false).await;
    let (_, staff) = t.app.user_with_token("root", true).await;
    let hang = tempfile::tempdir().unwrap();
    let url = hanging_repository(hang.path());
    let params = clone_params(&url);
    let a1 = t.start(t.lint_pipeline, params.clone()).await;
    t.wait(a1, Some("running")).await;
    let a2 = t.start(t.lint_pipeline, params.clone()).await;
    let run = t.run(a2).await;
    assert_eq!(run["status"], "starting");
    assert_eq!(
        run["status_message"],
        "Queued for the local runner: 0 run(s) ahead in the queue (users take turns), 1 running, 2 at a time."
    );
    let (status, _, b1) = post_run(&t.app, &b_token, t.lint_pipeline, &params).await;
    assert_eq!(status, 201);
    let b1 = b1["id"].as_i64().unwrap();
    assert_eq!(next_running(&t, &staff, &[a2, b1]).await, b1);
    let text = metrics(&t.app).await;
    assert!(
        text.contains(r#"runs_waiting{reason="user_active_limit"} 1"#)
            && text.contains(r#"runs_waiting{reason="no_free_slot"} 0"#),
        "{text}"
    );
    // Only A's own run ending lets A's next start: B's slot goes to B's next.
    cancel(&t, &b_token, b1).await;
    let (status, _, b2) = post_run(&t.app, &b_token, t.lint_pipeline, &params).await;
    assert_eq!(status, 201);
    let b2 = b2["id"].as_i64().unwrap();
    assert_eq!(next_running(&t, &staff, &[a2, b2]).await, b2);
    cancel(&t, &t.token, a1).await;
    t.wait(a2, Some("running")).await;
    cancel(&t, &t.token, a2).await;
    cancel(&t, &b_token, b2).await;
}

/// A run stored but never launched (its request died in between, e.g. a crash) stops counting
/// once no delivery can still be launching it, so it cannot hold its user's share for ever.
#[tokio::test]
async fn a_run_orphaned_before_its_launch_stops_counting() {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, IntoActiveModel};
    let t = spawn_with_env(vec![("RUNS_MAX_ACTIVE_PER_USER".into(), "1".into())]).await;
    let app = &t.app;
    let (_, token) = app.user_with_token("alice", false).await;
    let params = execute_payload()["parameters"].clone();
    let (status, _, run) = post_run(app, &token, t.pipeline_id, &params).await;
    assert_eq!(status, 201);
    let stored = pipeline_run::Entity::find_by_id(run["id"].as_i64().unwrap())
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    // As the request left it had it died between storing and launching.
    let orphan = |updated: chrono::DateTime<chrono::Utc>| {
        let mut am = stored.clone().into_active_model();
        am.status = Set(application_quality_api::runs::RunStatus::Starting);
        am.launched_at = Set(None);
        am.updated_at = Set(updated);
        am
    };
    orphan(chrono::Utc::now())
        .update(&app.state.db)
        .await
        .unwrap();
    let (status, _, _) = post_run(app, &token, t.pipeline_id, &params).await;
    assert_eq!(status, 429, "a launch may still be under way");
    orphan(chrono::Utc::now() - chrono::Duration::seconds(36))
        .update(&app.state.db)
        .await
        .unwrap();
    let (status, _, body) = post_run(app, &token, t.pipeline_id, &params).await;
    assert_eq!(status, 201, "{body}");
}
