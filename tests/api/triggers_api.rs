//! Trigger CRUD really saves, validates filters/parameters/mappings at save time, and follows
//! the access rules; trigger types are readable by anyone.

use super::support::spawn;
use crate::common::TestApp;
use serde_json::{Value, json};

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = app.client.request(method.parse().unwrap(), app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    app.send(req).await
}

fn new_trigger(pipeline_id: i64) -> Value {
    json!({
        "slug": "aq-main-push",
        "description": "Lint main on push",
        "status": "Enabled",
        "enabled": true,
        "trigger_type": "github_webhook_push",
        "pipeline": pipeline_id,
        "cql2_filter": {"op": "and", "args": [
            {"op": "=", "args": [{"property": "repository.full_name"}, "EOEPCA/application-quality"]},
            {"op": "like", "args": [{"property": "ref"}, "refs/heads/%"]}
        ]},
        "params_default": {"parameters": {"clone_subworkflow": {"clone": {"repo_branch": "main"}}}},
        "params_mapping": {"clone_subworkflow.clone.repo_url": "repository.clone_url"}
    })
}

#[tokio::test]
async fn create_read_update_delete_round_trip() {
    let t = spawn().await;
    let app = &t.app;
    let (_, alice) = app.user_with_token("alice", false).await;
    let (status, created) = call(
        app,
        "POST",
        "/api/triggers/",
        Some(&alice),
        Some(&new_trigger(t.pipeline_id)),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["slug"], "aq-main-push");
    assert_eq!(created["owner"], "alice");
    assert_eq!(created["trigger_type"], "github_webhook_push");
    assert_eq!(created["trigger_type_name"], "GitHub push");
    assert_eq!(created["pipeline_id"], t.pipeline_id);
    assert_eq!(created["pipeline_name"], "Notebook static analysis");
    assert_eq!(created["enabled"], true);
    assert_eq!(
        created["params_mapping"]["clone_subworkflow.clone.repo_url"],
        "repository.clone_url"
    );

    // it was saved: read it back, in the list and alone
    let (status, list) = call(app, "GET", "/api/triggers/", Some(&alice), None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, one) = call(
        app,
        "GET",
        "/api/triggers/aq-main-push/",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(one, created);

    // partial update
    let (status, updated) = call(
        app,
        "PATCH",
        "/api/triggers/aq-main-push/",
        Some(&alice),
        Some(&json!({"enabled": false, "description": "paused", "status": "Testing"})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["status"], "Testing");
    assert_eq!(updated["description"], "paused");
    assert_eq!(updated["cql2_filter"], created["cql2_filter"]);
    // PUT of the read shape back is accepted
    let mut back = updated.clone();
    back["enabled"] = json!(true);
    let (status, put) = call(
        app,
        "PUT",
        "/api/triggers/aq-main-push/",
        Some(&alice),
        Some(&back),
    )
    .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["enabled"], true);

    // duplicate slug
    let (status, body) = call(
        app,
        "POST",
        "/api/triggers/",
        Some(&alice),
        Some(&new_trigger(t.pipeline_id)),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["slug"].is_array());

    // other users cannot see or change it; staff can
    let (_, bob) = app.user_with_token("bob", false).await;
    let (_, staff) = app.user_with_token("staff", true).await;
    assert_eq!(
        call(app, "GET", "/api/triggers/aq-main-push/", Some(&bob), None)
            .await
            .0,
        404
    );
    assert_eq!(
        call(
            app,
            "DELETE",
            "/api/triggers/aq-main-push/",
            Some(&bob),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(app, "GET", "/api/triggers/", Some(&bob), None).await.1,
        json!([])
    );
    assert_eq!(call(app, "GET", "/api/triggers/", None, None).await.0, 401);
    let (status, list) = call(app, "GET", "/api/triggers/", Some(&staff), None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    // only staff may hand a trigger to someone else
    let (status, body) = call(
        app,
        "PATCH",
        "/api/triggers/aq-main-push/",
        Some(&alice),
        Some(&json!({"owner": "bob"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["owner"].is_array());
    let (status, body) = call(
        app,
        "PATCH",
        "/api/triggers/aq-main-push/",
        Some(&staff),
        Some(&json!({"owner": "bob"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["owner"], "bob");
    assert_eq!(
        call(app, "GET", "/api/triggers/aq-main-push/", Some(&bob), None)
            .await
            .0,
        200
    );

    // delete
    assert_eq!(
        call(
            app,
            "DELETE",
            "/api/triggers/aq-main-push/",
            Some(&bob),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(
            app,
            "GET",
            "/api/triggers/aq-main-push/",
            Some(&staff),
            None
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn bad_filters_parameters_and_fields_are_refused_at_save_time() {
    let t = spawn().await;
    let app = &t.app;
    let (_, alice) = app.user_with_token("alice", false).await;
    let cases = [
        (
            "cql2_filter",
            json!({"op": "=", "args": [{"property": "ref"}]}),
        ),
        ("cql2_filter", json!({"op": "matches", "args": [1, 2]})),
        ("cql2_filter", json!([1])),
        (
            "cql2_filter",
            json!({"op": "like", "args": [{"property": "ref"}, 5]}),
        ),
        ("params_mapping", json!({"clone_subworkflow.clone": "ref"})),
        (
            "params_mapping",
            json!({"clone_subworkflow.clone.nope": "ref"}),
        ),
        (
            "params_default",
            json!({"parameters": {"clone_subworkflow": {"clone": {"repo_url": 1}}}}),
        ),
        ("params_default", json!("x")),
        ("slug", json!("has spaces")),
        ("slug", json!("x".repeat(51))),
        ("status", json!("Sometimes")),
        ("trigger_type", json!("no-such-type")),
        ("pipeline", json!(999_999)),
    ];
    for (field, value) in cases {
        let mut body = new_trigger(t.pipeline_id);
        body[field] = value.clone();
        let (status, resp) = call(app, "POST", "/api/triggers/", Some(&alice), Some(&body)).await;
        assert_eq!(status, 400, "{field} = {value}: {resp}");
        assert!(resp[field].is_array(), "{field} = {value}: {resp}");
    }
    // missing required fields
    let (status, resp) = call(
        app,
        "POST",
        "/api/triggers/",
        Some(&alice),
        Some(&json!({"slug": "x"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(resp["pipeline"].is_array() && resp["trigger_type"].is_array());
    // nothing was saved
    let (_, list) = call(app, "GET", "/api/triggers/", Some(&alice), None).await;
    assert_eq!(list, json!([]));
    // an empty filter is fine (it matches every event of the type)
    let mut body = new_trigger(t.pipeline_id);
    body["cql2_filter"] = json!({});
    assert_eq!(
        call(app, "POST", "/api/triggers/", Some(&alice), Some(&body))
            .await
            .0,
        201
    );
    // update with a bad filter is refused too, and leaves the trigger as it was
    let (status, resp) = call(
        app,
        "PATCH",
        "/api/triggers/aq-main-push/",
        Some(&alice),
        Some(&json!({"cql2_filter": {"op": "not", "args": []}})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(resp["cql2_filter"][0].as_str().unwrap().contains("not"));
    let (_, one) = call(
        app,
        "GET",
        "/api/triggers/aq-main-push/",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(one["cql2_filter"], json!({}));
}

#[tokio::test]
async fn private_pipelines_of_others_cannot_be_triggered() {
    let t = spawn().await;
    let app = &t.app;
    let (_, alice) = app.user_with_token("alice", false).await;
    let (_, bob) = app.user_with_token("bob", false).await;
    // bob's private copy of a pipeline
    let (status, p) = call(
        app,
        "POST",
        "/api/pipelines/",
        Some(&bob),
        Some(&json!({"name": "Bob's", "tools": ["clone_subworkflow"]})),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let mut body = new_trigger(p["id"].as_i64().unwrap());
    body["params_default"] = json!({});
    body["params_mapping"] = json!({});
    let (status, resp) = call(app, "POST", "/api/triggers/", Some(&alice), Some(&body)).await;
    assert_eq!(status, 400);
    assert!(resp["pipeline"].is_array());
    let (status, _) = call(app, "POST", "/api/triggers/", Some(&bob), Some(&body)).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn trigger_types_are_readable_by_anyone() {
    let t = spawn().await;
    let app = &t.app;
    let (status, list) = app.get("/api/triggertypes/", None).await;
    assert_eq!(status, 200);
    let items = list.as_array().unwrap();
    assert!(items.iter().any(|x| x["slug"] == "github_webhook_push"));
    let keys: Vec<&String> = items[0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5, "{keys:?}");
    let (status, one) = app
        .get("/api/triggertypes/github_webhook_push/", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["name"], "GitHub push");
    assert!(one.get("event_type_prefix").is_none());
    let (status, body) = app.get("/api/triggertypes/nope/", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["detail"], "No TriggerType matches the given query.");
}
