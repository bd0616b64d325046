//! The ingress routes and every row of the status map: the seed documentation's two curl
//! scripts replayed as curl sends them, structured mode, and the 400/413/415/422/503 rows.

use super::support::{
    binary, deliver, execute, execute_payload, execute_with, run_count, spawn, spawn_with_env,
    stored_event, structured,
};
use application_quality_api::{db::entities::pipeline_run, runs::RunStatus};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

/// The health-check script: `ce-id: 123`, its message body, `Host` of the broker.
fn health_script_body() -> String {
    "{\n  \"message\": \"Checking your health!\",\n  \"test\": 123\n}".to_string()
}

#[tokio::test]
async fn health_script_gets_ok_on_every_ingress_path() {
    let t = spawn().await;
    let app = &t.app;
    for path in ["/", "/api/events/", "/api/events", "/default/primary"] {
        let r = deliver(binary(
            app,
            path,
            &[
                ("host", "knative-broker.eoepca-plus-develop"),
                ("ce-id", "123"),
                ("ce-specversion", "1.0"),
                ("ce-type", "org.eoepca.application-quality.probes.health"),
                ("ce-source", "curl"),
            ],
            &health_script_body(),
        ))
        .await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
        assert_eq!(r.header("ce-id"), "123");
        assert_eq!(r.header("ce-specversion"), "1.0");
        assert_eq!(r.header("ce-source"), "/eoepca/application-quality");
        assert_eq!(
            r.header("ce-type"),
            "org.eoepca.application-quality.response.ok"
        );
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.body["status"], "ok");
        assert_eq!(r.body["processed_id"], "123");
        assert_eq!(r.body["message"], "Healthy.");
        assert!(r.body["timestamp"].as_i64().unwrap() > 1_700_000_000);
    }
    // health probes are not stored
    assert!(stored_event(app, "curl", "123").await.is_none());
}

#[tokio::test]
async fn execute_script_creates_and_launches_one_run() {
    let t = spawn().await;
    let app = &t.app;
    let r = deliver(execute(
        app,
        "/api/events/",
        "123",
        "event",
        t.pipeline_id,
        &execute_payload(),
    ))
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.header("ce-type"),
        "org.eoepca.application-quality.response.accepted"
    );
    let run_id = r.body["run_id"].as_i64().expect("run id in the reply");
    assert_eq!(r.header("ce-subject"), run_id.to_string());
    assert_eq!(r.body["pipeline_id"], t.pipeline_id);
    assert_eq!(r.body["status"], "accepted");
    let run = pipeline_run::Entity::find_by_id(run_id)
        .one(&app.state.db)
        .await
        .unwrap()
        .expect("run stored");
    assert_eq!(run.pipeline_id, t.pipeline_id);
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(
        run.parameters.unwrap()["clone_subworkflow"]["clone"]["repo_branch"],
        "main"
    );
    assert_eq!(t.launcher.of(run_id), 1);
    let stored = stored_event(app, "curl", "123").await.unwrap();
    assert_eq!(stored.outcome, "accepted");
    assert_eq!(stored.run_ids, json!([run_id]));
    assert_eq!(stored.user.as_deref(), Some("event"));

    // The same script sent to `/` (kn func invoke's path) with the reference docs' singular
    // type and a new id: another run.
    let r = deliver(execute_with(
        app,
        "/",
        "124",
        "event",
        t.pipeline_id,
        &[(
            "ce-type",
            "org.eoepca.application-quality.event.pipeline.execute",
        )],
        &execute_payload(),
    ))
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_ne!(r.body["run_id"].as_i64().unwrap(), run_id);
    assert_eq!(run_count(app).await, 2);
}

#[tokio::test]
async fn unknown_user_subject_pipeline_and_parameters_are_422() {
    let t = spawn().await;
    let app = &t.app;
    let r = deliver(execute(
        app,
        "/api/events/",
        "u1",
        "nobody",
        t.pipeline_id,
        &execute_payload(),
    ))
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["detail"], "Unknown or inactive user 'nobody'.");
    assert!(
        r.header("ce-type").is_empty(),
        "errors carry no reply event"
    );
    // recorded for staff, and a redelivery gets the same answer
    let stored = stored_event(app, "curl", "u1").await.unwrap();
    assert_eq!(stored.outcome, "rejected");
    app.user("nobody", "nobody-password-1", false).await;
    let again = deliver(execute(
        app,
        "/api/events/",
        "u1",
        "nobody",
        t.pipeline_id,
        &execute_payload(),
    ))
    .await;
    assert_eq!(again.status, 422);
    assert_eq!(again.body["detail"], "Unknown or inactive user 'nobody'.");

    // no ce-user at all
    let r = deliver(binary(
        app,
        "/api/events/",
        &[
            ("ce-id", "u2"),
            ("ce-specversion", "1.0"),
            (
                "ce-type",
                "org.eoepca.application-quality.events.pipeline.execute",
            ),
            ("ce-source", "curl"),
            ("ce-subject", "pipelines/1"),
        ],
        "{}",
    ))
    .await;
    assert_eq!(r.status, 422);
    assert!(r.body["detail"].as_str().unwrap().contains("ce-user"));

    let r = deliver(execute_with(
        app,
        "/api/events/",
        "u3",
        "event",
        t.pipeline_id,
        &[("ce-subject", "pipeline-17")],
        &execute_payload(),
    ))
    .await;
    assert_eq!(r.status, 422);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("pipelines/<id>")
    );

    let r = deliver(execute(
        app,
        "/api/events/",
        "u4",
        "event",
        999_999,
        &execute_payload(),
    ))
    .await;
    assert_eq!(
        r.status, 422,
        "unknown pipeline is 422, not 404 (Knative retries 404)"
    );

    let bad = json!({"parameters": {"clone_subworkflow": {"clone": {"repo_url": 42}}}});
    let r = deliver(execute(
        app,
        "/api/events/",
        "u5",
        "event",
        t.pipeline_id,
        &bad,
    ))
    .await;
    assert_eq!(r.status, 422);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("parameters.clone_subworkflow.clone.repo_url"),
        "{:?}",
        r.body
    );
    let r = deliver(execute(
        app,
        "/api/events/",
        "u6",
        "event",
        t.pipeline_id,
        &json!([1, 2]),
    ))
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(run_count(app).await, 0);
    assert_eq!(t.launcher.total(), 0);
}

#[tokio::test]
async fn structured_mode_execute_and_health() {
    let t = spawn().await;
    let app = &t.app;
    let event = json!({
        "specversion": "1.0",
        "id": "s-1",
        "source": "https://ci.example.org/jobs/7",
        "type": "org.eoepca.application-quality.events.pipeline.execute",
        "subject": format!("pipelines/{}", t.pipeline_id),
        "user": "event",
        "datacontenttype": "application/json",
        "data": execute_payload(),
    });
    let r = deliver(structured(app, "/api/events/", &event)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("ce-id"), "s-1");
    assert!(r.body["run_id"].as_i64().is_some());
    let health = json!({
        "specversion": "1.0", "id": "s-2", "source": "probe",
        "type": "org.eoepca.application-quality.probes.health"
    });
    let r = deliver(structured(app, "/", &health)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
    assert_eq!(run_count(app).await, 1);
}

#[tokio::test]
async fn malformed_requests_get_the_documented_4xx() {
    let t = spawn_with_env(vec![("MAX_BODY_BYTES".into(), "4096".into())]).await;
    let app = &t.app;
    // plain POST, as `kn func invoke --format http` sends it
    let r = deliver(binary(app, "/", &[], r#"{"message":"Hello World"}"#)).await;
    assert_eq!(r.status, 400);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("ce-specversion") && detail.contains("application/cloudevents+json"));

    // batch mode
    let r = deliver(
        app.client
            .post(app.url("/api/events/"))
            .header("content-type", "application/cloudevents-batch+json")
            .body("[]"),
    )
    .await;
    assert_eq!(r.status, 415);
    assert!(r.body["detail"].as_str().unwrap().contains("Batched"));

    // too large (binary and structured)
    let big = json!({"blob": "x".repeat(8000)}).to_string();
    let head = [
        ("ce-id", "big"),
        ("ce-specversion", "1.0"),
        ("ce-type", "org.eoepca.webhook.github.push"),
        ("ce-source", "gh"),
    ];
    let r = deliver(binary(app, "/api/events/", &head, &big)).await;
    assert_eq!(r.status, 413);
    assert!(r.body["detail"].as_str().unwrap().contains("too large"));

    // data that is not JSON
    let r = deliver(binary(app, "/api/events/", &head, "{not json")).await;
    assert_eq!(r.status, 400);
    assert!(r.body["detail"].as_str().unwrap().contains("must be JSON"));

    // missing id, wrong spec version, bad time, over-long source
    let r = deliver(binary(
        app,
        "/api/events/",
        &[
            ("ce-specversion", "1.0"),
            ("ce-type", "t"),
            ("ce-source", "s"),
        ],
        "{}",
    ))
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body["detail"].as_str().unwrap().contains("\"id\""));
    let r = deliver(binary(
        app,
        "/api/events/",
        &[
            ("ce-specversion", "0.3"),
            ("ce-id", "x"),
            ("ce-type", "t"),
            ("ce-source", "s"),
        ],
        "{}",
    ))
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body["detail"].as_str().unwrap().contains("1.0"));
    let r = deliver(binary(
        app,
        "/api/events/",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "x"),
            ("ce-type", "t"),
            ("ce-source", "s"),
            ("ce-time", "yesterday"),
        ],
        "{}",
    ))
    .await;
    assert_eq!(r.status, 400);
    let long = "s".repeat(300);
    let r = deliver(binary(
        app,
        "/api/events/",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "x"),
            ("ce-type", "t"),
            ("ce-source", &long),
        ],
        "{}",
    ))
    .await;
    assert_eq!(r.status, 400);
    // structured mode with a broken envelope
    let r = deliver(
        app.client
            .post(app.url("/api/events/"))
            .header("content-type", "application/cloudevents+json")
            .body("{\"specversion\":\"1.0\""),
    )
    .await;
    assert_eq!(r.status, 400);
    // GET on the ingress is not an event
    let (status, _) = app.get("/default/primary", None).await;
    assert_eq!(status, 404);
    assert_eq!(run_count(app).await, 0);
}

#[tokio::test]
async fn unmatched_events_are_ignored_and_recorded_with_safe_headers() {
    let t = spawn().await;
    let app = &t.app;
    let r = deliver(binary(
        app,
        "/api/events/",
        &[
            ("ce-id", "n-1"),
            ("ce-specversion", "1.0"),
            ("ce-type", "org.example.something.else"),
            ("ce-source", "elsewhere"),
            ("authorization", "Bearer secret-value"),
            ("cookie", "session=abc"),
            ("x-github-token", "ghp_x"),
            ("x-request-id", "req-7"),
        ],
        r#"{"a": 1}"#,
    ))
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("ce-type"),
        "org.eoepca.application-quality.response.ignored"
    );
    let stored = stored_event(app, "elsewhere", "n-1").await.unwrap();
    assert_eq!(stored.outcome, "ignored");
    assert_eq!(stored.data, Some(json!({"a": 1})));
    let h = stored.headers.as_object().unwrap();
    assert!(h.get("authorization").is_none());
    assert!(h.get("cookie").is_none());
    assert!(h.get("x-github-token").is_none());
    assert_eq!(h["x-request-id"], "req-7");
    // a redelivery is acknowledged as a duplicate
    let r = deliver(binary(
        app,
        "/api/events/",
        &[
            ("ce-id", "n-1"),
            ("ce-specversion", "1.0"),
            ("ce-type", "org.example.something.else"),
            ("ce-source", "elsewhere"),
        ],
        r#"{"a": 1}"#,
    ))
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "duplicate");
}

#[tokio::test]
async fn staff_list_of_received_events() {
    let t = spawn().await;
    let app = &t.app;
    for (i, ty) in [
        "org.eoepca.webhook.github.ping",
        "org.example.a",
        "org.example.b",
    ]
    .iter()
    .enumerate()
    {
        let id = format!("l-{i}");
        let r = deliver(binary(
            app,
            "/api/events/",
            &[
                ("ce-id", &id),
                ("ce-specversion", "1.0"),
                ("ce-type", ty),
                ("ce-source", "lister"),
            ],
            "{}",
        ))
        .await;
        assert_eq!(r.status, 200);
    }
    let (_, staff) = app.user_with_token("boss", true).await;
    let (_, user) = app.user_with_token("pleb", false).await;
    let (status, _) = app.get("/api/events/", None).await;
    assert_eq!(status, 401);
    let (status, _) = app.get("/api/events/", Some(&user)).await;
    assert_eq!(status, 403);
    let (status, body) = app.get("/api/events/", Some(&staff)).await;
    assert_eq!(status, 200);
    let items = body.as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["event_id"], "l-2", "newest first");
    assert_eq!(items[0]["outcome"], "ignored");
    let (_, body) = app
        .get("/api/events/?type=org.example.&limit=1", Some(&staff))
        .await;
    assert_eq!(body["count"], 2, "paged: {body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 1);
    assert_eq!(body["results"][0]["type"], "org.example.b");
    assert!(
        body["next"]
            .as_str()
            .unwrap()
            .ends_with("/api/events/?type=org.example.&limit=1&offset=1")
    );
    let (_, body) = app
        .get("/api/events/?type=org.example.", Some(&staff))
        .await;
    assert_eq!(body.as_array().unwrap().len(), 2);
    let (_, body) = app.get("/api/events/?type=nothing", Some(&staff)).await;
    assert_eq!(body, Value::Array(vec![]));
}

#[tokio::test]
async fn database_outage_is_503_with_retry_after() {
    let t = spawn().await;
    let app = &t.app;
    app.state.db.clone().close().await.unwrap();
    let r = deliver(execute(
        app,
        "/api/events/",
        "db-1",
        "event",
        t.pipeline_id,
        &execute_payload(),
    ))
    .await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert!(!r.header("retry-after").is_empty());
    assert!(r.header("ce-type").is_empty());
    // health probes do not need the database
    let r = deliver(binary(
        app,
        "/",
        &[
            ("ce-id", "h"),
            ("ce-specversion", "1.0"),
            ("ce-type", "x.probes.health"),
            ("ce-source", "k"),
        ],
        "",
    ))
    .await;
    assert_eq!(r.status, 200);
}
