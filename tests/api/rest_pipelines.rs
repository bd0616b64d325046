//! Pipelines CRUD: the reference's own tests rewritten, plus validation, uniqueness, owner rules,
//! and trailing-slash handling.

use crate::{
    common::TestApp,
    rest_support::{call, catalogue},
};
use serde_json::{Value, json};

fn is_iso_micros_utc(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    // 2026-11-25T17:51:48.725175Z
    s.len() == 27 && s.ends_with('Z') && s.as_bytes()[19] == b'.' && s.as_bytes()[10] == b'T'
}

// ---- the reference's tests, rewritten ----

#[tokio::test]
async fn reference_create_without_credentials_fails() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .post(app.url("/api/pipelines/"))
        .json(&json!({"name": "Test Pipeline"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["detail"],
        "Authentication credentials were not provided."
    );
}

#[tokio::test]
async fn reference_create_duplicate_list_and_missing_run() {
    let app = TestApp::spawn().await;
    let (u, token) = app.user_with_token("testuser", false).await;
    let new = json!({"name": "Test Pipeline", "description": "A test pipeline", "version": "1.0"});
    let (status, body) = app.post("/api/pipelines/", Some(&token), &new).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "Test Pipeline");
    assert_eq!(body["description"], "A test pipeline");
    assert_eq!(body["version"], "1.0");
    assert_eq!(body["owner"], u.id);
    assert_eq!(body["owner_name"], "testuser");
    assert_eq!(body["tools"], json!([]));
    assert_eq!(body["default_inputs"], json!({}));
    assert!(is_iso_micros_utc(&body["created_at"]), "{body}");
    assert!(is_iso_micros_utc(&body["edited_at"]), "{body}");
    assert!(
        body.get("template").is_none(),
        "the template stays internal"
    );

    let (status, dup) = app.post("/api/pipelines/", Some(&token), &new).await;
    assert_eq!(status, 400);
    assert_eq!(
        dup,
        json!({"detail": "A pipeline with this name, version, and owner already exists."})
    );

    let (status, list) = app.get("/api/pipelines/", Some(&token)).await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], body["id"]);

    let (status, body) = app
        .post(
            "/api/pipelines/999/runs/",
            Some(&token),
            &json!({"parameters": {}}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["detail"], "No Pipeline matches the given query.");
}

// ---- beyond the reference ----

#[tokio::test]
async fn null_versions_collide_and_updates_keep_the_set_unique() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("erin", false).await;
    let (status, _) = app
        .post("/api/pipelines", Some(&token), &json!({"name": "P"}))
        .await;
    assert_eq!(status, 201);
    let (status, body) = app
        .post(
            "/api/pipelines",
            Some(&token),
            &json!({"name": "P", "version": null}),
        )
        .await;
    assert_eq!(status, 400, "NULL versions are duplicates too: {body}");
    // Same name, other version: fine. Renaming it onto the first one is not.
    let (status, second) = app
        .post(
            "/api/pipelines",
            Some(&token),
            &json!({"name": "P", "version": "2"}),
        )
        .await;
    assert_eq!(status, 201);
    let path = format!("/api/pipelines/{}/", second["id"]);
    let (status, body) = call(
        &app,
        "PATCH",
        &path,
        Some(&token),
        Some(&json!({"version": null})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"non_field_errors": ["The fields name, owner, version must make a unique set."]})
    );
    // Another user may use the same name and version.
    let (_, other) = app.user_with_token("frank", false).await;
    let (status, _) = app
        .post("/api/pipelines", Some(&other), &json!({"name": "P"}))
        .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn field_validation() {
    let app = TestApp::spawn().await;
    catalogue(&app).await;
    let (_, token) = app.user_with_token("gina", false).await;
    let cases = [
        (json!({}), "name", "This field is required."),
        (
            json!({"name": "x".repeat(51)}),
            "name",
            "Ensure this field has no more than 50 characters.",
        ),
        (
            json!({"name": "ok", "version": "v".repeat(51)}),
            "version",
            "Ensure this field has no more than 50 characters.",
        ),
        (
            json!({"name": "ok", "description": "d".repeat(10_001)}),
            "description",
            "Ensure this field has no more than 10000 characters.",
        ),
        (
            json!({"name": "ok", "tools": ["nope"]}),
            "tools",
            "Invalid pk \"nope\" - object does not exist.",
        ),
    ];
    for (body, field, msg) in cases {
        let (status, resp) = app.post("/api/pipelines/", Some(&token), &body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(resp[field], json!([msg]), "{resp}");
    }
    for bad in [
        json!("a string"),
        json!([1]),
        json!({"sw": "x"}),
        json!({"sw": {"tool": {"input": 3}}}),
    ] {
        let (status, resp) = app
            .post(
                "/api/pipelines/",
                Some(&token),
                &json!({"name": "ok", "default_inputs": bad}),
            )
            .await;
        assert_eq!(status, 400, "{bad}");
        assert!(resp["default_inputs"].is_array(), "{resp}");
    }
    let (status, resp) = app
        .post(
            "/api/pipelines/",
            Some(&token),
            &json!({
                "name": "ok",
                "tools": ["lint_subworkflow", "clone_subworkflow"],
                "default_inputs": {"lint_subworkflow": {"lint": {"verbose": {"default": true}}}}
            }),
        )
        .await;
    assert_eq!(status, 201, "{resp}");
    assert_eq!(
        resp["tools"],
        json!(["lint_subworkflow", "clone_subworkflow"]),
        "tools keep the order given"
    );
    // Non-JSON bodies are 415, broken JSON 400.
    let (status, _) = app
        .send(
            app.client
                .post(app.url("/api/pipelines/"))
                .bearer_auth(&token)
                .header("content-type", "text/plain")
                .body("name=x"),
        )
        .await;
    assert_eq!(status, 415);
    let (status, _) = app
        .send(
            app.client
                .post(app.url("/api/pipelines/"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("{\"name\":"),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn ids_update_delete_and_owner_rules() {
    let app = TestApp::spawn().await;
    catalogue(&app).await;
    let (owner, token) = app.user_with_token("hank", false).await;
    let (other, _) = app.user_with_token("ivy", false).await;
    let (_, staff) = app.user_with_token("root", true).await;

    let (status, body) = app.get("/api/pipelines/abc/", Some(&token)).await;
    assert_eq!((status, body), (404, json!({"detail": "Not found."})));
    let (status, body) = app.get("/api/pipelines/4242/", Some(&token)).await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"detail": "No Pipeline matches the given query."})
        )
    );

    let (_, created) = app
        .post(
            "/api/pipelines/",
            Some(&token),
            &json!({"name": "Mine", "tools": ["clone_subworkflow"]}),
        )
        .await;
    let path = format!("/api/pipelines/{}/", created["id"]);

    // The frontend PUTs the object back with read-only fields and an unchanged owner.
    let mut edited = created.clone();
    edited["description"] = json!("now described");
    edited["tools"] = json!(["clone_subworkflow", "lint_subworkflow"]);
    let (status, body) = call(&app, "PUT", &path, Some(&token), Some(&edited)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["description"], "now described");
    assert_eq!(
        body["tools"],
        json!(["clone_subworkflow", "lint_subworkflow"])
    );
    assert_eq!(body["created_at"], created["created_at"]);
    assert_ne!(body["edited_at"], created["edited_at"]);
    // PUT needs the name; PATCH does not.
    let (status, body) = call(
        &app,
        "PUT",
        &path,
        Some(&token),
        Some(&json!({"description": "x"})),
    )
    .await;
    assert_eq!(
        (status, body["name"].clone()),
        (400, json!(["This field is required."]))
    );

    // A non-staff owner cannot give the pipeline away or publish it.
    for owner_value in [json!(other.id), Value::Null] {
        let (status, _) = call(
            &app,
            "PATCH",
            &path,
            Some(&token),
            Some(&json!({"owner": owner_value})),
        )
        .await;
        assert_eq!(status, 403, "owner -> {owner_value}");
    }
    let (status, _) = app
        .post(
            "/api/pipelines/",
            Some(&token),
            &json!({"name": "Theirs", "owner": other.id}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .post(
            "/api/pipelines/",
            Some(&token),
            &json!({"name": "Tpl", "template": "x"}),
        )
        .await;
    assert_eq!(status, 403, "templates are staff-only");
    // Staff can.
    let (status, body) = call(
        &app,
        "PATCH",
        &path,
        Some(&staff),
        Some(&json!({"owner": other.id})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["owner"], other.id);
    assert_eq!(body["owner_name"], "ivy");
    let (status, _) = app.get(&path, Some(&token)).await;
    assert_eq!(status, 404, "no longer visible to its former owner");
    let (status, body) = call(
        &app,
        "PATCH",
        &path,
        Some(&staff),
        Some(&json!({"owner": null})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.get("owner_name").is_none(),
        "omitted when public: {body}"
    );
    assert_eq!(body["owner"], Value::Null);
    let (status, _) = call(
        &app,
        "PATCH",
        &path,
        Some(&staff),
        Some(&json!({"owner": 999_999})),
    )
    .await;
    assert_eq!(status, 400);
    // Public: everyone reads it, only staff changes it.
    assert_eq!(app.get(&path, Some(&token)).await.0, 200);
    let (status, body) = call(&app, "DELETE", &path, Some(&token), None).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["detail"],
        "You do not have permission to perform this action."
    );
    let (status, _) = call(&app, "DELETE", &path, Some(&staff), None).await;
    assert_eq!(status, 204);
    assert_eq!(app.get(&path, Some(&staff)).await.0, 404);
    let _ = owner;
}

#[tokio::test]
async fn trailing_slash_is_optional_and_never_redirects() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_with_token("jill", false).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (i, path) in ["/api/pipelines", "/api/pipelines/"].iter().enumerate() {
        let r = client
            .post(app.url(path))
            .bearer_auth(&token)
            .json(&json!({"name": format!("p{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "POST {path}");
        let r = client
            .get(app.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
    }
    for path in [
        "/api",
        "/api/",
        "/api/tools",
        "/api/tools/",
        "/api/settings",
        "/api/settings/",
    ] {
        let r = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
    }
}

/// The list is served from a cache (`PIPELINE_LIST_CACHE_MS`): this instance's own writes must
/// show in the very next list, with tools in pipeline order and the owner's name.
#[tokio::test]
async fn list_shows_own_writes_at_once() {
    let app = TestApp::spawn().await;
    catalogue(&app).await;
    let (_, token) = app.user_with_token("judy", false).await;
    let listed = |list: &Value, id: &Value| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == *id)
            .cloned()
    };
    let (_, before) = app.get("/api/pipelines/", Some(&token)).await;
    let (status, created) = app
        .post(
            "/api/pipelines/",
            Some(&token),
            &json!({"name": "Cached", "tools": ["lint_subworkflow", "clone_subworkflow"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].clone();
    assert!(listed(&before, &id).is_none());
    let (_, list) = app.get("/api/pipelines/", Some(&token)).await;
    let entry = listed(&list, &id).expect("created pipeline listed at once");
    assert_eq!(entry, created, "list entry equals the created object");
    assert_eq!(
        entry["tools"],
        json!(["lint_subworkflow", "clone_subworkflow"])
    );
    assert_eq!(entry["owner_name"], "judy");

    let path = format!("/api/pipelines/{id}/");
    let (status, _) = call(
        &app,
        "PATCH",
        &path,
        Some(&token),
        Some(&json!({"description": "changed", "tools": ["clone_subworkflow"]})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, list) = app.get("/api/pipelines/", Some(&token)).await;
    let entry = listed(&list, &id).unwrap();
    assert_eq!(entry["description"], "changed");
    assert_eq!(entry["tools"], json!(["clone_subworkflow"]));

    let (status, _) = call(&app, "DELETE", &path, Some(&token), None).await;
    assert_eq!(status, 204);
    let (_, list) = app.get("/api/pipelines/", Some(&token)).await;
    assert!(
        listed(&list, &id).is_none(),
        "deleted pipeline still listed"
    );
}
