//! A hostile but ordinary user (not staff), through the public API only, tries to make user
//! data become CWL structure or reach the host (issue 19): schema-salad directives and maps in
//! every value that reaches a rendered CWL or the runner's input object, data stored before the
//! checks existed, repository URLs outside the policy, and a run's callback token after its run
//! ended. Each attempt must be refused with a 4xx naming the field, and create nothing.

use crate::{
    common::{Options, TestApp},
    events::support::{EventApp, binary, deliver, execute, run_count, spawn_with_env},
    fake_launcher::FakeLauncher,
    rest_support::spawn_with_fake,
};
use application_quality_api::{
    db::entities::{pipeline, pipeline_run},
    runs::{self, RunStatus},
};
use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel};
use serde_json::{Value, json};
use std::sync::Arc;

const INCLUDE: &str = "/etc/passwd";

fn clone_params(repo_url: Value) -> Value {
    json!({"clone_subworkflow": {"clone": {"repo_url": repo_url}}})
}

/// The field names of a DRF-style validation body.
fn fields(body: &Value) -> Vec<String> {
    body.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Asserts a 400 whose body names `field`.
fn assert_refused(status: u16, body: &Value, field: &str, what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert!(
        fields(body).iter().any(|f| f == field),
        "{what}: {field} not named in {body}"
    );
}

async fn own_pipeline(app: &TestApp, token: &str, name: &str) -> i64 {
    let (status, body) = app
        .post(
            "/api/pipelines/",
            Some(token),
            &json!({"name": name, "tools": ["clone_subworkflow"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

async fn patch(app: &TestApp, path: &str, token: &str, body: &Value) -> (u16, Value) {
    app.send(
        app.client
            .patch(app.url(path))
            .bearer_auth(token)
            .json(body),
    )
    .await
}

/// Writes a pipeline's `default_inputs` behind the API's back: data stored before the checks.
async fn store_defaults(app: &TestApp, pipeline_id: i64, defaults: Value) {
    let p = pipeline::Entity::find_by_id(pipeline_id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut active = p.into_active_model();
    active.default_inputs = Set(Some(defaults));
    active.update(&app.state.db).await.unwrap();
    app.state.pipeline_list.invalidate();
}

/// A GitHub push relayed by the webhook source, with a repository chosen by the attacker.
fn push(app: &TestApp, id: &str, repository: Value) -> reqwest::RequestBuilder {
    binary(
        app,
        "/api/events/",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", id),
            ("ce-source", "https://github.com/mallory/evil"),
            ("ce-type", "org.eoepca.webhook.github.push"),
            ("ce-webhooksource", "github"),
        ],
        &json!({"ref": "refs/heads/main", "repository": repository}).to_string(),
    )
}

async fn trigger(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    app.post("/api/triggers/", Some(token), &body).await
}

#[tokio::test]
async fn directives_and_structure_in_user_data_are_refused_naming_the_field() {
    let t: EventApp = spawn_with_env(Vec::new()).await;
    let app = &t.app;
    let (_, mallory) = app.user_with_token("mallory", false).await;
    let mine = own_pipeline(app, &mallory, "mine").await;

    // Pipeline default_inputs, on create and on update.
    let cases = [
        (
            json!({"clone_subworkflow": {"clone": {"repo_url": {"default": {"$include": INCLUDE}}}}}),
            "default_inputs.clone_subworkflow.clone.repo_url.default.$include",
        ),
        (json!({"$import": INCLUDE}), "default_inputs.$import"),
        (
            json!({"clone_subworkflow": {"$mixin": {"x": {"default": 1}}}}),
            "default_inputs.clone_subworkflow.$mixin",
        ),
        (
            json!({"clone_subworkflow": {"clone": {"repo_url": {"default": {"class": "File", "location": "file:///etc/passwd"}}}}}),
            "default_inputs.clone_subworkflow.clone.repo_url.default",
        ),
        (
            json!({"clone_subworkflow": {"clone": {"repo_url": {"default": ["https://a", "https://b"]}}}}),
            "default_inputs.clone_subworkflow.clone.repo_url.default",
        ),
        (
            json!({"clone_subworkflow": {"clone": {"repo_url": {"default": "https://x", "label": {"$include": INCLUDE}}}}}),
            "default_inputs.clone_subworkflow.clone.repo_url.label.$include",
        ),
        (
            json!({"clone_subworkflow": {"clone": {"repo_url": {"default": "https://x", "label": {"text": "a map"}}}}}),
            "default_inputs.clone_subworkflow.clone.repo_url.label",
        ),
    ];
    for (defaults, field) in &cases {
        let (status, body) = app
            .post(
                "/api/pipelines/",
                Some(&mallory),
                &json!({"name": "evil", "tools": ["clone_subworkflow"], "default_inputs": defaults}),
            )
            .await;
        assert_refused(status, &body, field, "create");
        let (status, body) = patch(
            app,
            &format!("/api/pipelines/{mine}/"),
            &mallory,
            &json!({"default_inputs": defaults}),
        )
        .await;
        assert_refused(status, &body, field, "update");
    }
    // Names are strings, never structure.
    let (status, body) = app
        .post(
            "/api/pipelines/",
            Some(&mallory),
            &json!({"name": {"$include": INCLUDE}}),
        )
        .await;
    assert_refused(status, &body, "name", "name");
    // A string that looks like a directive is a string, and is kept as one.
    let look_alike = format!("{{\"$include\": \"{INCLUDE}\"}}");
    let (status, body) = patch(
        app,
        &format!("/api/pipelines/{mine}/"),
        &mallory,
        &json!({"name": "{\"$include\": 1}", "default_inputs": {"clone_subworkflow": {"clone": {"repo_branch": {"default": look_alike}}}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Run parameters through REST.
    let runs_path = format!("/api/pipelines/{}/runs/", t.pipeline_id);
    for (parameters, field) in [
        (
            clone_params(json!({"$include": INCLUDE})),
            "parameters.clone_subworkflow.clone.repo_url.$include",
        ),
        (json!({"$import": INCLUDE}), "parameters.$import"),
        (
            clone_params(json!({"class": "File", "location": "file:///etc/passwd"})),
            "parameters.clone_subworkflow.clone.repo_url",
        ),
        (
            clone_params(json!(["https://a"])),
            "parameters.clone_subworkflow.clone.repo_url",
        ),
    ] {
        let (status, body) = app
            .post(
                &runs_path,
                Some(&mallory),
                &json!({"parameters": parameters}),
            )
            .await;
        assert_refused(status, &body, field, "run parameters");
    }

    // Event parameters (`pipeline.execute`): a 422 naming the field (Knative: never retried).
    app.user("mallory-events", "pw-mallory-events-1", false)
        .await;
    for (i, (parameters, field)) in [
        (
            clone_params(json!({"$include": INCLUDE})),
            "parameters.clone_subworkflow.clone.repo_url.$include",
        ),
        (
            clone_params(json!({"nested": {"$import": INCLUDE}})),
            "parameters.clone_subworkflow.clone.repo_url.nested.$import",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let r = deliver(execute(
            app,
            "/api/events/",
            &format!("hostile-{i}"),
            "mallory-events",
            t.pipeline_id,
            &json!({"parameters": parameters}),
        ))
        .await;
        assert_eq!(r.status, 422, "{:?}", r.body);
        assert!(r.body.to_string().contains(field), "{field}: {:?}", r.body);
    }

    // Trigger defaults and mappings.
    let base = |extra: Value| {
        let mut body = json!({"slug": "evil", "trigger_type": "github_webhook_push", "pipeline": t.pipeline_id});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (extra, field) in [
        (
            json!({"params_default": {"parameters": clone_params(json!({"$include": INCLUDE}))}}),
            "params_default.parameters.clone_subworkflow.clone.repo_url.$include",
        ),
        (
            json!({"params_default": {"$import": INCLUDE}}),
            "params_default.$import",
        ),
        (
            json!({"params_mapping": {"$include": "repository.clone_url"}}),
            "params_mapping.$include",
        ),
        (
            json!({"params_mapping": {"clone_subworkflow.clone.repo_url": {"path": "repository.clone_url", "$import": INCLUDE}}}),
            "params_mapping.clone_subworkflow.clone.repo_url.$import",
        ),
    ] {
        let (status, body) = trigger(app, &mallory, base(extra)).await;
        assert_refused(status, &body, field, "trigger");
    }
    let (status, body) = trigger(
        app,
        &mallory,
        base(json!({"params_default": {"parameters": clone_params(json!({"a": 1}))}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["params_default"][0]
            .as_str()
            .unwrap()
            .starts_with("parameters.clone_subworkflow.clone.repo_url:"),
        "{body}"
    );

    // A mapping that is valid at save time but picks a map from the event: the trigger's run
    // is refused when the event comes (the trigger is skipped, the reason recorded).
    let (status, body) = trigger(
        app,
        &mallory,
        base(json!({"params_mapping": {"clone_subworkflow.clone.repo_url": "repository"}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let r = deliver(push(
        app,
        "push-map",
        json!({"$include": INCLUDE, "clone_url": "https://x"}),
    ))
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "ignored", "{:?}", r.body);
    assert!(
        r.body
            .to_string()
            .contains("parameters.clone_subworkflow.clone.repo_url"),
        "{:?}",
        r.body
    );

    assert_eq!(run_count(app).await, 0, "nothing ran");
    assert_eq!(t.launcher.total(), 0);
}

/// `default_inputs` stored before the checks existed (or written to the database directly)
/// are refused when a run would render them, on every path, and nothing runs.
#[tokio::test]
async fn stored_defaults_are_refused_when_a_run_would_render_them() {
    let t = spawn_with_env(Vec::new()).await;
    let app = &t.app;
    let (_, mallory) = app.user_with_token("mallory", false).await;
    let mine = own_pipeline(app, &mallory, "mine").await;
    store_defaults(
        app,
        mine,
        json!({"clone_subworkflow": {"clone": {"repo_url": {"default": {"$include": INCLUDE}}}}}),
    )
    .await;
    let (status, body) = app
        .post(
            &format!("/api/pipelines/{mine}/runs/"),
            Some(&mallory),
            &json!({}),
        )
        .await;
    assert_refused(
        status,
        &body,
        "default_inputs.clone_subworkflow.clone.repo_url.default.$include",
        "REST",
    );
    store_defaults(
        app,
        mine,
        json!({"clone_subworkflow": {"clone": {"repo_url": {"default": {"class": "File", "location": "file:///etc/passwd"}}}}}),
    )
    .await;
    let (status, body) = app
        .post(
            &format!("/api/pipelines/{mine}/runs/"),
            Some(&mallory),
            &json!({}),
        )
        .await;
    assert_refused(
        status,
        &body,
        "default_inputs.clone_subworkflow.clone.repo_url.default",
        "REST, a map",
    );
    let r = deliver(execute(
        app,
        "/api/events/",
        "stored-1",
        "mallory",
        mine,
        &json!({}),
    ))
    .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert!(
        r.body
            .to_string()
            .contains("default_inputs.clone_subworkflow.clone.repo_url.default"),
        "{:?}",
        r.body
    );
    // A trigger's run: skipped, with the reason.
    let (status, body) = trigger(
        app,
        &mallory,
        json!({"slug": "stored", "trigger_type": "github_webhook_push", "pipeline": mine}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let r = deliver(push(app, "stored-push", json!({"clone_url": "https://x"}))).await;
    assert_eq!(r.body["status"], "ignored", "{:?}", r.body);
    assert!(
        r.body
            .to_string()
            .contains("default_inputs.clone_subworkflow"),
        "{:?}",
        r.body
    );
    assert_eq!(run_count(app).await, 0);

    // A run stored by an older version with a structured input is never handed to a runner.
    let (status, body) = app
        .post(
            &format!("/api/pipelines/{}/runs/", t.pipeline_id),
            Some(&mallory),
            &json!({"parameters": clone_params(json!("https://example.org/r.git"))}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let launched = t.launcher.total();
    let template = pipeline_run::Entity::find_by_id(body["id"].as_i64().unwrap())
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut old = template.into_active_model();
    old.id = sea_orm::ActiveValue::NotSet;
    old.status = Set(RunStatus::Starting);
    old.launched_at = Set(None);
    old.callback_token_hash = Set(None);
    old.inputs = Set(Some(
        json!({"clone_subworkflow.clone.repo_url": {"$include": INCLUDE}}),
    ));
    let old = old.insert(&app.state.db).await.unwrap();
    let run = runs::launch(&app.state.runs, old, None).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.status_message
            .as_deref()
            .unwrap()
            .starts_with("Refused before launch"),
        "{:?}",
        run.status_message
    );
    assert_eq!(t.launcher.total(), launched, "not launched");
}

/// Repository URLs by policy, on every path: schemes outside `REPO_URL_SCHEMES`, local paths,
/// and `file://` outside `REPO_FILE_ROOTS` (also through `..` and symbolic links).
#[tokio::test]
async fn repository_urls_outside_the_policy_are_refused_on_every_path() {
    let roots = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = roots.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("repo")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
    let t = spawn_with_env(vec![
        ("REPO_URL_SCHEMES".into(), "https,file".into()),
        ("REPO_FILE_ROOTS".into(), root.display().to_string()),
    ])
    .await;
    let app = &t.app;
    let (_, mallory) = app.user_with_token("mallory", false).await;
    let runs_path = format!("/api/pipelines/{}/runs/", t.pipeline_id);
    let field = "parameters.clone_subworkflow.clone.repo_url";
    for url in [
        "file:///etc".to_string(),
        format!("file://{}/repo/../..", root.display()),
        format!("file://{}/escape", root.display()),
        format!("file://{}/%2e%2e/etc", root.display()),
        "http://169.254.169.254/latest/meta-data".into(),
        "ssh://git@github.com/o/r.git".into(),
        "git@github.com:o/r.git".into(),
        "git://example.org/r.git".into(),
        "/etc".into(),
        "ext::sh -c id".into(),
    ] {
        let (status, body) = app
            .post(
                &runs_path,
                Some(&mallory),
                &json!({"parameters": clone_params(json!(url))}),
            )
            .await;
        assert_refused(status, &body, field, &url);
    }
    // Allowed: https, and file:// below the root.
    for url in [
        "https://github.com/o/r.git".to_string(),
        format!("file://{}/repo", root.display()),
    ] {
        let (status, body) = app
            .post(
                &runs_path,
                Some(&mallory),
                &json!({"parameters": clone_params(json!(url))}),
            )
            .await;
        assert_eq!(status, 201, "{url}: {body}");
    }
    let created = run_count(app).await;

    // Any other value with a scheme is held to the same policy.
    let (status, body) = app
        .post(
            &runs_path,
            Some(&mallory),
            &json!({"parameters": {"clone_subworkflow": {"clone": {"repo_url": "https://github.com/o/r.git", "repo_branch": "file:///etc/shadow"}}}}),
        )
        .await;
    assert_refused(
        status,
        &body,
        "parameters.clone_subworkflow.clone.repo_branch",
        "a branch with a URL",
    );

    // Pipeline defaults: refused when saved, and when stored behind the API's back.
    let mine = own_pipeline(app, &mallory, "mine").await;
    let evil = json!({"clone_subworkflow": {"clone": {"repo_url": {"default": "file:///etc"}}}});
    let (status, body) = patch(
        app,
        &format!("/api/pipelines/{mine}/"),
        &mallory,
        &json!({"default_inputs": evil}),
    )
    .await;
    assert_refused(
        status,
        &body,
        "default_inputs.clone_subworkflow.clone.repo_url.default",
        "saved default",
    );
    store_defaults(app, mine, evil).await;
    let (status, body) = app
        .post(
            &format!("/api/pipelines/{mine}/runs/"),
            Some(&mallory),
            &json!({}),
        )
        .await;
    assert_refused(
        status,
        &body,
        "default_inputs.clone_subworkflow.clone.repo_url.default",
        "stored default",
    );

    // Events: 422 naming the field.
    let r = deliver(execute(
        app,
        "/api/events/",
        "policy-1",
        "mallory",
        t.pipeline_id,
        &json!({"parameters": clone_params(json!("file:///etc"))}),
    ))
    .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert!(r.body.to_string().contains(field), "{:?}", r.body);

    // Triggers: defaults refused when saved; a webhook's URL refused when the event comes.
    let (status, body) = trigger(
        app,
        &mallory,
        json!({"slug": "evil", "trigger_type": "github_webhook_push", "pipeline": t.pipeline_id,
               "params_default": {"parameters": clone_params(json!("file:///etc"))}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["params_default"][0]
            .as_str()
            .unwrap()
            .starts_with(field),
        "{body}"
    );
    let (status, body) = trigger(
        app,
        &mallory,
        json!({"slug": "webhook", "trigger_type": "github_webhook_push", "pipeline": t.pipeline_id,
               "params_mapping": {"clone_subworkflow.clone.repo_url": "repository.clone_url"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let r = deliver(push(
        app,
        "policy-push",
        json!({"clone_url": format!("file://{}/escape/x.git", root.display())}),
    ))
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "ignored", "{:?}", r.body);
    assert!(r.body.to_string().contains(field), "{:?}", r.body);
    assert_eq!(run_count(app).await, created, "nothing else ran");
}

/// With the default policy (https only), no local repository at all.
#[tokio::test]
async fn by_default_only_https_repositories_are_cloned() {
    let (app, _) = spawn_with_fake().await;
    app.seed().await;
    let (_, mallory) = app.user_with_token("mallory", false).await;
    let (_, list) = app.get("/api/pipelines/", Some(&mallory)).await;
    let lint = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Python lint")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let here = std::env::current_dir().unwrap();
    for url in [
        format!("file://{}", here.display()),
        "http://example.org/r.git".into(),
    ] {
        let (status, body) = app
            .post(
                &format!("/api/pipelines/{lint}/runs/"),
                Some(&mallory),
                &json!({"parameters": clone_params(json!(url))}),
            )
            .await;
        assert_refused(
            status,
            &body,
            "parameters.clone_subworkflow.clone.repo_url",
            &url,
        );
        let msg = body["parameters.clone_subworkflow.clone.repo_url"][0]
            .as_str()
            .unwrap();
        assert!(msg.contains("REPO_URL_SCHEMES"), "{msg}");
    }
}

async fn set_ended(app: &TestApp, run_id: i64, status: &str, ago_secs: i64) {
    let run = pipeline_run::Entity::find_by_id(run_id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut active = run.into_active_model();
    active.status = Set(RunStatus::parse(status).unwrap());
    active.completion_time = Set(Some(Utc::now() - chrono::Duration::seconds(ago_secs)));
    active.update(&app.state.db).await.unwrap();
}

fn report_path(pipeline: i64, run: i64, name: &str) -> String {
    format!("/api/pipelines/{pipeline}/runs/{run}/jobreports/?name={name}")
}

/// A run's callback token is accepted while the run runs and for `CALLBACK_GRACE_SECS` after
/// it ended, never later; the results callback follows the same rule.
#[tokio::test]
async fn the_callback_token_expires_after_its_run_ended() {
    let launcher = Arc::new(FakeLauncher::default());
    let app = TestApp::spawn_with(Options {
        launcher: Some(launcher.clone()),
        env: vec![("CALLBACK_GRACE_SECS".into(), "60".into())],
        ..Default::default()
    })
    .await;
    app.seed().await;
    let (_, mallory) = app.user_with_token("mallory", false).await;
    let (_, list) = app.get("/api/pipelines/", Some(&mallory)).await;
    let pipeline = list[0]["id"].as_i64().unwrap();
    let (status, run) = app
        .post(
            &format!("/api/pipelines/{pipeline}/runs/"),
            Some(&mallory),
            &json!({"parameters": clone_params(json!("https://example.org/r.git"))}),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_i64().unwrap();
    let token = launcher.token(id);
    let post = |name: &'static str| {
        let path = report_path(pipeline, id, name);
        let token = token.clone();
        let app = &app;
        async move { app.post(&path, Some(&token), &json!({"ok": true})).await }
    };
    assert_eq!(post("running").await.0, 201, "while the run runs");
    set_ended(&app, id, "succeeded", 30).await;
    assert_eq!(post("late").await.0, 201, "within the grace");
    set_ended(&app, id, "succeeded", 61).await;
    let (status, body) = post("too-late").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let (status, _) = app
        .post(
            &format!("/api/pipelines/{pipeline}/runs/{id}/results/"),
            Some(&token),
            &json!({"usage_report": {"total_tasks": 1}}),
        )
        .await;
    assert_eq!(status, 403, "results after the grace");
    // A cancelled run: its token ends with the cancel, plus the grace.
    let (status, run) = app
        .post(
            &format!("/api/pipelines/{pipeline}/runs/"),
            Some(&mallory),
            &json!({"parameters": clone_params(json!("https://example.org/r.git"))}),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let other = run["id"].as_i64().unwrap();
    let other_token = launcher.token(other);
    let (status, body) = app
        .post(
            &format!("/api/pipelines/{pipeline}/runs/{other}/cancel/"),
            Some(&mallory),
            &json!({}),
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("killed")));
    let other_report = report_path(pipeline, other, "after-cancel");
    assert_eq!(
        app.post(&other_report, Some(&other_token), &json!({}))
            .await
            .0,
        201,
        "within the grace after the cancel"
    );
    set_ended(&app, other, "killed", 61).await;
    let other_report = report_path(pipeline, other, "much-later");
    assert_eq!(
        app.post(&other_report, Some(&other_token), &json!({}))
            .await
            .0,
        403
    );
    // The other run's token was never this run's.
    assert_eq!(
        app.post(
            &report_path(pipeline, id, "x"),
            Some(&other_token),
            &json!({})
        )
        .await
        .0,
        403
    );
    // Three reports stored, none of the refused ones.
    let (_, reports) = app
        .get(
            &format!("/api/pipelines/{pipeline}/runs/{id}/jobreports/"),
            Some(&mallory),
        )
        .await;
    let names: Vec<&str> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["running", "late"]);
}

/// Job reports per run are capped in count (429) and in stored bytes (413).
#[tokio::test]
async fn job_reports_are_capped_per_run() {
    let launcher = Arc::new(FakeLauncher::default());
    let app = TestApp::spawn_with(Options {
        launcher: Some(launcher.clone()),
        env: vec![
            ("CALLBACK_MAX_REPORTS_PER_RUN".into(), "3".into()),
            ("CALLBACK_MAX_REPORT_BYTES_PER_RUN".into(), "4000".into()),
        ],
        ..Default::default()
    })
    .await;
    app.seed().await;
    let (_, mallory) = app.user_with_token("mallory", false).await;
    let (_, list) = app.get("/api/pipelines/", Some(&mallory)).await;
    let pipeline = list[0]["id"].as_i64().unwrap();
    let start = || async {
        let (status, run) = app
            .post(
                &format!("/api/pipelines/{pipeline}/runs/"),
                Some(&mallory),
                &json!({"parameters": clone_params(json!("https://example.org/r.git"))}),
            )
            .await;
        assert_eq!(status, 201, "{run}");
        let id = run["id"].as_i64().unwrap();
        let token = launcher.token(id);
        (id, token)
    };
    let (id, token) = start().await;
    for i in 0..3 {
        let (status, body) = app
            .post(
                &report_path(pipeline, id, &format!("r{i}")),
                Some(&token),
                &json!({"i": i}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = app
        .post(&report_path(pipeline, id, "r3"), Some(&token), &json!({}))
        .await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("CALLBACK_MAX_REPORTS_PER_RUN"),
        "{body}"
    );

    let (id, token) = start().await;
    let big = json!({"text": "x".repeat(3000)});
    let (status, body) = app
        .post(&report_path(pipeline, id, "big"), Some(&token), &big)
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .post(&report_path(pipeline, id, "bigger"), Some(&token), &big)
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("CALLBACK_MAX_REPORT_BYTES_PER_RUN"),
        "{body}"
    );
    let (status, body) = app
        .post(
            &report_path(pipeline, id, "small"),
            Some(&token),
            &json!({"a": 1}),
        )
        .await;
    assert_eq!(status, 201, "a small one still fits: {body}");
}

/// End to end with the real runner: a string shaped like a schema-salad directive reaches the
/// tool as that string, both as a run parameter (the runner's input object) and as a pipeline
/// default (written into the rendered CWL): git is asked for a branch of that name and says it
/// does not exist; the file the directive names is read by nobody.
#[tokio::test]
async fn directive_shaped_strings_reach_the_tools_as_strings() {
    use crate::local_runs::{cwltool, demo_repository, spawn_local};
    let Some(cwltool) = cwltool() else { return };
    let t = spawn_local(&cwltool, &[]).await;
    let repo_dir = tempfile::tempdir().unwrap();
    let url = demo_repository(repo_dir.path());
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("secret.txt");
    let marker = format!("TOP-SECRET-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(&secret, &marker).unwrap();
    let branch = format!("{{\"$include\": \"{}\"}}", secret.display());

    // As a run parameter.
    let by_parameter = t
        .start(
            t.lint_pipeline,
            json!({"clone_subworkflow": {"clone": {"repo_url": url, "repo_branch": branch}}}),
        )
        .await;
    // As a pipeline default, written into the CWL.
    let (status, mine) = t
        .app
        .post(
            "/api/pipelines/",
            Some(&t.token),
            &json!({"name": "mine", "tools": ["clone_subworkflow"], "default_inputs":
                {"clone_subworkflow": {"clone": {"repo_branch": {"default": branch}}}}}),
        )
        .await;
    assert_eq!(status, 201, "{mine}");
    let by_default = t
        .start(
            mine["id"].as_i64().unwrap(),
            json!({"clone_subworkflow": {"clone": {"repo_url": url}}}),
        )
        .await;
    for id in [by_parameter, by_default] {
        let run = t.wait(id, None).await;
        assert_eq!(run["status"], "failed", "{run}");
        let message = run["status_message"].as_str().unwrap();
        assert!(
            message.contains("$include") && message.contains("not found"),
            "git was asked for the branch named by the string: {message}"
        );
        let log = t.log(id).await;
        assert!(log.contains("$include"), "{log}");
        for text in [run.to_string(), log] {
            assert!(!text.contains(&marker), "the file was read: {text}");
        }
    }
}
