//! Read-only resources: the API root, tools, tags, `users/me` and `settings`.

use crate::{
    common::{Options, TestApp},
    rest_support::catalogue,
};
use serde_json::json;

#[tokio::test]
async fn index_links_are_absolute_public_urls() {
    let app = TestApp::spawn_with(Options {
        env: vec![("PUBLIC_URL".into(), "https://aq.example.org".into())],
        ..Default::default()
    })
    .await;
    let (status, body) = app.get("/api/", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["pipelines"], "https://aq.example.org/api/pipelines/");
    assert_eq!(body["users/me"], "https://aq.example.org/api/users/me/");
    for key in [
        "tools",
        "tags",
        "triggertypes",
        "triggers",
        "events",
        "settings",
    ] {
        assert_eq!(
            body[key],
            format!("https://aq.example.org/api/{key}/"),
            "{key}"
        );
    }
}

#[tokio::test]
async fn tools_and_tags() {
    let app = TestApp::spawn().await;
    let cat = catalogue(&app).await;
    let (_, user) = app.user_with_token("sam", false).await;
    let (_, staff) = app.user_with_token("root", true).await;

    let (status, tools) = app.get("/api/tools/", None).await;
    assert_eq!(status, 200);
    let slugs: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["clone_subworkflow", "lint_subworkflow"]);
    assert_eq!(app.get("/api/tools/", Some(&user)).await.1, tools);
    let (_, all) = app.get("/api/tools/", Some(&staff)).await;
    assert_eq!(
        all.as_array().unwrap().len(),
        3,
        "staff also see unavailable tools"
    );

    let (status, lint) = app.get("/api/tools/lint_subworkflow/", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        lint,
        json!({
            "slug": "lint_subworkflow",
            "name": "lint tool",
            "description": "Runs lint.",
            "user_params": {"lint": {"verbose": {"type": "boolean", "default": false}}},
            "tags": [cat.tag_id],
            "tools": ["lint"],
            "version": "0.1",
            "status": "Stable",
            "available": true,
        })
    );
    let (status, body) = app.get("/api/tools/nope/", None).await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"detail": "No Subworkflow matches the given query."})
        )
    );

    let (status, tags) = app.get("/api/tags/", None).await;
    assert_eq!(status, 200);
    assert_eq!(tags, json!([{"id": cat.tag_id, "name": "asset: python"}]));
    let (_, tag) = app.get(&format!("/api/tags/{}/", cat.tag_id), None).await;
    assert_eq!(tag, json!({"id": cat.tag_id, "name": "asset: python"}));
    assert_eq!(app.get("/api/tags/999/", None).await.0, 404);
    assert_eq!(app.get("/api/tags/x/", None).await.0, 404);
}

#[tokio::test]
async fn users_me() {
    let app = TestApp::spawn().await;
    let (u, token) = app.user_with_token("tess", false).await;
    let (_, staff) = app.user_with_token("root", true).await;
    let (status, me) = app.get("/api/users/me/", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(
        me,
        json!({"id": u.id, "username": "tess", "email": "", "is_staff": false, "is_admin": false, "is_active": true})
    );
    let (_, me) = app.get("/api/users/me/", Some(&staff)).await;
    assert_eq!(
        (me["is_staff"].clone(), me["is_admin"].clone()),
        (json!(true), json!(true))
    );
}

#[tokio::test]
async fn settings_file_served_as_json() {
    let app = TestApp::spawn().await;
    // The harness points SETTINGS_FILE at a file that does not exist yet.
    let (status, body) = app.get("/api/settings/", None).await;
    assert_eq!((status, body), (200, json!({})));
    let path = app.state.config.server.settings_file.clone();
    tokio::fs::write(
        &path,
        "instance:\n  name: Test AQ\ngrafana:\n  enabled: false\n  url: https://g.example.org\n",
    )
    .await
    .unwrap();
    let (status, body) = app.get("/api/settings/", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"instance": {"name": "Test AQ"}, "grafana": {"enabled": false, "url": "https://g.example.org"}})
    );
    // Credentials are not needed, and a stale one does not break the page.
    let (status, _) = app.get("/api/settings/", Some("expired.or.garbage")).await;
    assert_eq!(status, 200);
    tokio::fs::write(&path, "instance: [unclosed\n")
        .await
        .unwrap();
    let (status, body) = app.get("/api/settings/", None).await;
    assert_eq!((status, body), (200, json!({})));
}
