//! A GitHub push, relayed as a CloudEvent the way a webhook source and the broker deliver it,
//! runs the pipeline of every matching trigger with parameters mapped from the payload.

use super::support::{binary, deliver, run_count, spawn};
use crate::common::TestApp;
use application_quality_api::db::entities::{pipeline_run, trigger};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};

/// A minimal but realistic `push` webhook payload (the fields GitHub sends that matter here).
fn push_payload(branch: &str) -> Value {
    json!({
        "ref": format!("refs/heads/{branch}"),
        "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "after": "59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5",
        "created": false,
        "deleted": false,
        "forced": false,
        "compare": "https://github.com/EOEPCA/application-quality/compare/6113728f27ae...59b20b8d5c6f",
        "commits": [{
            "id": "59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5",
            "message": "Fix notebook metadata",
            "timestamp": "2026-11-25T18:01:02+01:00",
            "author": {"name": "Alice", "email": "alice@example.org", "username": "alice"},
            "added": [], "removed": [], "modified": ["notebooks/demo.ipynb"]
        }],
        "head_commit": {"id": "59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5", "message": "Fix notebook metadata"},
        "repository": {
            "id": 812345678,
            "name": "application-quality",
            "full_name": "EOEPCA/application-quality",
            "private": false,
            "owner": {"login": "EOEPCA", "id": 123456},
            "html_url": "https://github.com/EOEPCA/application-quality",
            "clone_url": "https://github.com/EOEPCA/application-quality.git",
            "default_branch": "main"
        },
        "pusher": {"name": "alice", "email": "alice@example.org"},
        "sender": {"login": "alice", "id": 424242, "type": "User"}
    })
}

/// The push as the broker delivers it to us: binary mode, type `org.eoepca.webhook.github.push`,
/// source = the repository URL, the webhook source's extension attribute.
fn push_event(app: &TestApp, id: &str, branch: &str) -> reqwest::RequestBuilder {
    binary(
        app,
        "/api/events/",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", id),
            ("ce-source", "https://github.com/EOEPCA/application-quality"),
            ("ce-type", "org.eoepca.webhook.github.push"),
            ("ce-time", "2026-11-25T17:01:03Z"),
            ("ce-webhooksource", "github"),
            ("ce-subject", "EOEPCA/application-quality"),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ],
        &push_payload(branch).to_string(),
    )
}

async fn create_trigger(app: &TestApp, token: &str, body: &Value) {
    let (status, resp) = app
        .send(
            app.client
                .post(app.url("/api/triggers/"))
                .bearer_auth(token)
                .json(body),
        )
        .await;
    assert_eq!(status, 201, "{resp}");
}

#[tokio::test]
async fn push_through_a_trigger_runs_with_mapped_parameters() {
    let t = spawn().await;
    let app = &t.app;
    let (alice, token) = app.user_with_token("alice", false).await;
    create_trigger(
        app,
        &token,
        &json!({
            "slug": "aq-push",
            "trigger_type": "github_webhook_push",
            "pipeline": t.pipeline_id,
            "cql2_filter": {"op": "and", "args": [
                {"op": "=", "args": [{"property": "repository.full_name"}, "EOEPCA/application-quality"]},
                {"op": "in", "args": [{"property": "ref"}, ["refs/heads/main", "refs/heads/develop"]]},
                {"op": "=", "args": [{"property": "ce.source"}, "https://github.com/EOEPCA/application-quality"]}
            ]},
            "params_default": {"parameters": {"clone_subworkflow": {"clone": {"repo_branch": "main"}}}},
            "params_mapping": {
                "clone_subworkflow.clone.repo_url": "repository.clone_url",
                "clone_subworkflow.clone.repo_branch": {"path": "ref", "strip_prefix": "refs/heads/"}
            }
        }),
    )
    .await;
    // a second trigger of the same type whose filter does not match
    create_trigger(
        app,
        &token,
        &json!({
            "slug": "other-repo",
            "trigger_type": "github_webhook_push",
            "pipeline": t.pipeline_id,
            "cql2_filter": {"op": "=", "args": [{"property": "repository.full_name"}, "someone/else"]}
        }),
    )
    .await;

    let r = deliver(push_event(app, "gh-1", "develop")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "accepted");
    let run_ids = r.body["run_ids"]
        .as_array()
        .expect("run_ids for trigger runs");
    assert_eq!(run_ids.len(), 1);
    let run_id = run_ids[0].as_i64().unwrap();
    assert_eq!(r.header("ce-subject"), run_id.to_string());
    let run = pipeline_run::Entity::find_by_id(run_id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        run.started_by_id,
        Some(alice.id),
        "runs as the trigger's owner"
    );
    assert_eq!(run.triggered_by.as_deref(), Some("aq-push"));
    assert_eq!(
        run.parameters.unwrap(),
        json!({"clone_subworkflow": {"clone": {
            "repo_url": "https://github.com/EOEPCA/application-quality.git",
            "repo_branch": "develop"
        }}})
    );
    let inputs = run.inputs.unwrap();
    assert_eq!(inputs["clone_subworkflow.clone.repo_branch"], "develop");
    assert_eq!(t.launcher.of(run_id), 1);

    // a redelivery of the same push makes nothing new
    let again = deliver(push_event(app, "gh-1", "develop")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(again.body["run_ids"], json!([run_id]));
    assert_eq!(run_count(app).await, 1);

    // a push to a branch the filter does not accept is ignored
    let other = deliver(push_event(app, "gh-2", "feature/x")).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.body["status"], "ignored");
    assert_eq!(run_count(app).await, 1);

    // the trigger's events, in the reference's shape
    let (status, events) = app.get("/api/triggers/aq-push/events/", Some(&token)).await;
    assert_eq!(status, 200);
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["trigger"], "aq-push");
    assert_eq!(e["trigger_type"], "github_webhook_push");
    assert_eq!(e["trigger_type_name"], "GitHub push");
    assert_eq!(e["event_type"], "org.eoepca.webhook.github.push");
    assert_eq!(e["source"], "https://github.com/EOEPCA/application-quality");
    assert_eq!(e["pipeline_run_id"], run_id);
    assert_eq!(e["pipeline_id"], t.pipeline_id);
    assert_eq!(e["pipeline_name"], "Notebook static analysis");
    assert_eq!(e["user"], "alice");
    let path = format!("/api/triggers/aq-push/events/{}/", e["id"]);
    let (status, one) = app.get(&path, Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(&one, e);
    let (_, all) = app.get("/api/triggers/_/events/", Some(&token)).await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    // other users see none of it
    let (_, bob) = app.user_with_token("bob", false).await;
    let (_, none) = app.get("/api/triggers/-/events/", Some(&bob)).await;
    assert_eq!(none, json!([]));
    assert_eq!(
        app.get("/api/triggers/aq-push/events/", Some(&bob)).await.0,
        404
    );
}

#[tokio::test]
async fn disabled_ownerless_and_unavailable_triggers_do_not_run() {
    let t = spawn().await;
    let app = &t.app;
    let (_, token) = app.user_with_token("alice", false).await;
    for slug in ["disabled", "deleted-status", "ownerless"] {
        create_trigger(
            app,
            &token,
            &json!({"slug": slug, "trigger_type": "github_webhook_push", "pipeline": t.pipeline_id}),
        )
        .await;
    }
    let patch = |slug: &str, f: fn(&mut trigger::ActiveModel)| {
        let db = app.state.db.clone();
        let slug = slug.to_owned();
        async move {
            let t = trigger::Entity::find_by_id(slug)
                .one(&db)
                .await
                .unwrap()
                .unwrap();
            let mut am: trigger::ActiveModel = t.into();
            f(&mut am);
            am.update(&db).await.unwrap();
        }
    };
    patch("disabled", |am| am.enabled = Set(false)).await;
    patch("deleted-status", |am| am.status = Set("Deleted".into())).await;
    patch("ownerless", |am| am.owner_id = Set(None)).await;
    let r = deliver(push_event(app, "gh-3", "main")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "ignored");
    let message = r.body["message"].as_str().unwrap();
    assert!(
        message.contains("ownerless") && message.contains("no active owner"),
        "{message}"
    );
    assert_eq!(run_count(app).await, 0);

    // with the trigger type made unavailable even an enabled, owned trigger stays quiet
    create_trigger(
        app,
        &token,
        &json!({"slug": "fine", "trigger_type": "github_webhook_push", "pipeline": t.pipeline_id}),
    )
    .await;
    let r = deliver(push_event(app, "gh-4", "main")).await;
    assert_eq!(r.body["status"], "accepted", "{:?}", r.body);
    use application_quality_api::db::entities::trigger_type;
    let ty = trigger_type::Entity::find_by_id("github_webhook_push".to_string())
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut am: trigger_type::ActiveModel = ty.into();
    am.available = Set(false);
    am.update(&app.state.db).await.unwrap();
    let r = deliver(push_event(app, "gh-5", "main")).await;
    assert_eq!(r.body["status"], "ignored");
    assert_eq!(run_count(app).await, 1);
}
