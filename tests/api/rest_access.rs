//! The access table: every REST route of this module, called as anonymous / another user /
//! the owner / staff, with the expected status in each cell; once with Bearer tokens, once
//! with browser session cookies (CSRF header and origin included): the same rules.

use crate::rest_support::{call, catalogue, ci_parameters, spawn_with_fake};
use application_quality_api::auth::session::{Session, now};
use serde_json::{Value, json};

/// Callers, in column order.
const WHO: [&str; 4] = ["anonymous", "other", "owner", "staff"];

struct Row {
    method: &'static str,
    /// `{P}` private pipeline of the owner, `{Q}` public pipeline, `{R}` the owner's run on P,
    /// `{J}` a job report of R, `{T}` a tag, `{D}` a fresh pipeline of the owner and `{DQ}` a
    /// fresh public one (per cell).
    path: &'static str,
    body: Option<Value>,
    expect: [u16; 4],
}

fn row(method: &'static str, path: &'static str, body: Option<Value>, expect: [u16; 4]) -> Row {
    Row {
        method,
        path,
        body,
        expect,
    }
}

#[tokio::test]
async fn access_table() {
    let (app, launcher) = spawn_with_fake().await;
    let cat = catalogue(&app).await;
    let (other_user, other) = app.user_with_token("other", false).await;
    let (owner_user, owner) = app.user_with_token("owner", false).await;
    let (staff_user, staff) = app.user_with_token("staff", true).await;
    // The same callers with browser sessions (as `/oidc/callback/` seals them).
    let session = |uid: i64| {
        app.state.sessions.seal(
            "session",
            &Session {
                sid: format!("session-of-{uid}"),
                uid,
                exp: now() + 600,
                csrf: "csrf-token-of-this-browser".into(),
                first_name: String::new(),
                last_name: String::new(),
            },
        )
    };
    let sessions = [
        None,
        Some(session(other_user.id)),
        Some(session(owner_user.id)),
        Some(session(staff_user.id)),
    ];
    let tokens = [
        None,
        Some(other.as_str()),
        Some(owner.as_str()),
        Some(staff.as_str()),
    ];

    let (_, p) = app
        .post(
            "/api/pipelines/",
            Some(&owner),
            &json!({"name": "private", "tools": ["clone_subworkflow"]}),
        )
        .await;
    let p = p["id"].as_i64().unwrap();
    let (_, r) = app
        .post(
            &format!("/api/pipelines/{p}/runs/"),
            Some(&owner),
            &ci_parameters(),
        )
        .await;
    let r = r["id"].as_i64().unwrap();
    let (status, j) = app
        .send(
            app.client
                .post(app.url(&format!(
                    "/api/pipelines/{p}/runs/{r}/jobreports/?name=lint"
                )))
                .bearer_auth(launcher.token(r))
                .json(&json!({"ok": true})),
        )
        .await;
    assert_eq!(status, 201);
    let j = j["id"].as_i64().unwrap();

    let new = || Some(json!({"name": "new pipeline"}));
    let rows = [
        row("GET", "/api/", None, [200, 200, 200, 200]),
        row("GET", "/api/users/me/", None, [401, 200, 200, 200]),
        row("GET", "/api/settings/", None, [200, 200, 200, 200]),
        row("GET", "/api/tools/", None, [200, 200, 200, 200]),
        row(
            "GET",
            "/api/tools/clone_subworkflow/",
            None,
            [200, 200, 200, 200],
        ),
        row(
            "GET",
            "/api/tools/hidden_subworkflow/",
            None,
            [404, 404, 404, 200],
        ),
        row("POST", "/api/tools/", Some(json!({})), [405, 405, 405, 405]),
        row("GET", "/api/tags/", None, [200, 200, 200, 200]),
        row("GET", "/api/tags/{T}/", None, [200, 200, 200, 200]),
        row("GET", "/api/token/", None, [405, 405, 405, 405]),
        row("GET", "/api/pipelines/", None, [401, 200, 200, 200]),
        row("POST", "/api/pipelines/", new(), [401, 201, 201, 201]),
        row("GET", "/api/pipelines/{P}/", None, [401, 404, 200, 200]),
        row(
            "PATCH",
            "/api/pipelines/{P}/",
            Some(json!({"description": "d"})),
            [401, 404, 200, 200],
        ),
        row(
            "PUT",
            "/api/pipelines/{P}/",
            Some(json!({"name": "private", "tools": ["clone_subworkflow"]})),
            [401, 404, 200, 200],
        ),
        row("DELETE", "/api/pipelines/{D}/", None, [401, 404, 204, 204]),
        row("GET", "/api/pipelines/{Q}/", None, [401, 200, 200, 200]),
        row(
            "PATCH",
            "/api/pipelines/{Q}/",
            Some(json!({"description": "d"})),
            [401, 403, 403, 200],
        ),
        row("DELETE", "/api/pipelines/{DQ}/", None, [401, 403, 403, 204]),
        row(
            "GET",
            "/api/pipelines/{P}/runs/",
            None,
            [401, 200, 200, 200],
        ),
        row("GET", "/api/pipelines/_/runs/", None, [401, 200, 200, 200]),
        row(
            "POST",
            "/api/pipelines/{P}/runs/",
            Some(ci_parameters()),
            [401, 404, 201, 201],
        ),
        row(
            "POST",
            "/api/pipelines/{Q}/runs/",
            Some(ci_parameters()),
            [401, 201, 201, 201],
        ),
        row(
            "GET",
            "/api/pipelines/{P}/runs/{R}/",
            None,
            [401, 404, 200, 200],
        ),
        row(
            "GET",
            "/api/pipelines/-/runs/{R}/",
            None,
            [401, 404, 200, 200],
        ),
        row(
            "PUT",
            "/api/pipelines/{P}/runs/{R}/",
            Some(json!({"status": "x"})),
            [405, 405, 405, 405],
        ),
        // Only staff override the verdict, and nothing else of a run is writable.
        row(
            "PATCH",
            "/api/pipelines/{P}/runs/{R}/",
            Some(json!({"status": "x"})),
            [401, 403, 403, 400],
        ),
        row(
            "PATCH",
            "/api/pipelines/{P}/runs/{R}/",
            Some(json!({"digest": {"digest_quality": "pass"}})),
            [401, 403, 403, 200],
        ),
        row(
            "DELETE",
            "/api/pipelines/{P}/runs/{R}/",
            None,
            [405, 405, 405, 405],
        ),
        row(
            "GET",
            "/api/pipelines/{P}/runs/{R}/jobreports/",
            None,
            [401, 404, 200, 200],
        ),
        row(
            "GET",
            "/api/pipelines/{P}/runs/{R}/jobreports/{J}/",
            None,
            [401, 404, 200, 200],
        ),
        row(
            "POST",
            "/api/pipelines/{P}/runs/{R}/jobreports/?name=forged",
            Some(json!({})),
            [401, 401, 401, 401],
        ),
        row(
            "POST",
            "/api/pipelines/{P}/runs/{R}/cancel/",
            None,
            [401, 404, 200, 200],
        ),
        // Visible to owner and staff, but a recorded (never executed) run has no log.
        row(
            "GET",
            "/api/pipelines/{P}/runs/{R}/log/",
            None,
            [401, 404, 404, 404],
        ),
    ];

    let mut failures = Vec::new();
    for (mode, row) in ["bearer", "session"]
        .iter()
        .flat_map(|m| rows.iter().map(move |r| (*m, r)))
    {
        for (col, token) in tokens.iter().enumerate() {
            let mut path = row
                .path
                .replace("{P}", &p.to_string())
                .replace("{Q}", &cat.public_pipeline.to_string())
                .replace("{R}", &r.to_string())
                .replace("{J}", &j.to_string())
                .replace("{T}", &cat.tag_id.to_string());
            if path.contains("{DQ}") {
                let (_, d) = app
                    .post(
                        "/api/pipelines/",
                        Some(&staff),
                        &json!({"name": format!("public disposable {col} {mode}"), "owner": null}),
                    )
                    .await;
                assert_eq!(d["owner"], Value::Null);
                path = path.replace("{DQ}", &d["id"].to_string());
            }
            if path.contains("{D}") {
                let (_, d) = app
                    .post(
                        "/api/pipelines/",
                        Some(&owner),
                        &json!({"name": format!("disposable {col} {mode}")}),
                    )
                    .await;
                path = path.replace("{D}", &d["id"].to_string());
            }
            let (status, body) = if mode == "bearer" {
                call(&app, row.method, &path, *token, row.body.as_ref()).await
            } else {
                let mut req = app
                    .client
                    .request(row.method.parse().unwrap(), app.url(&path));
                if let Some(cookie) = &sessions[col] {
                    req = req
                        .header(
                            "cookie",
                            format!("aq_session={cookie}; csrftoken=csrf-token-of-this-browser"),
                        )
                        .header("x-csrftoken", "csrf-token-of-this-browser")
                        .header("origin", app.state.config.server.public_url.as_str());
                }
                if let Some(b) = &row.body {
                    let mut b = b.clone();
                    // Names are unique per owner: the second round creates its own.
                    if b["name"] == "new pipeline" {
                        b["name"] = json!("new pipeline (session)");
                    }
                    req = req.json(&b);
                }
                app.send(req).await
            };
            if status != row.expect[col] {
                failures.push(format!(
                    "{} {} as {} ({mode}): got {status}, want {} ({body})",
                    row.method, row.path, WHO[col], row.expect[col]
                ));
            }
            if status >= 400 && !body["detail"].is_string() && !body.is_object() {
                failures.push(format!(
                    "{} {} as {}: non-JSON error",
                    row.method, row.path, WHO[col]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // What each caller sees in the lists.
    let ids = |v: &Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_i64().unwrap())
            .collect()
    };
    let (_, mine) = app.get("/api/pipelines/", Some(&owner)).await;
    assert!(ids(&mine).contains(&p) && ids(&mine).contains(&cat.public_pipeline));
    let (_, theirs) = app.get("/api/pipelines/", Some(&other)).await;
    assert!(!ids(&theirs).contains(&p) && ids(&theirs).contains(&cat.public_pipeline));
    let (_, runs_other) = app.get("/api/pipelines/_/runs/", Some(&other)).await;
    let (_, runs_owner) = app.get("/api/pipelines/_/runs/", Some(&owner)).await;
    let (_, runs_staff) = app.get("/api/pipelines/_/runs/", Some(&staff)).await;
    assert_eq!(
        runs_other.as_array().unwrap().len(),
        2,
        "only the runs 'other' started (one per credential mode)"
    );
    assert_eq!(runs_owner.as_array().unwrap().len(), 5);
    assert_eq!(runs_staff.as_array().unwrap().len(), 11);
    assert!(!ids(&runs_other).contains(&r));
}
