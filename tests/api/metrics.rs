//! Observability (issue 7): `GET /metrics` in the Prometheus text format after real requests
//! and events, and the W3C `traceparent` (HTTP header or CloudEvent extension) reaching the
//! launcher's request and the logs.

use crate::{
    common::{Options, TestApp},
    events::support::{self, EventApp, deliver, execute, execute_with, structured},
    fake_launcher::FakeLauncher,
};
use application_quality_api::{
    catalogue,
    db::{self, entities::pipeline},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener},
    process::{Command, Stdio},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

const TP_HEADER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TP_EXTENSION: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TP_STRUCTURED: &str = "00-11111111111111111111111111111111-2222222222222222-00";
const TP_REST: &str = "00-abcdefabcdefabcdefabcdefabcdef01-0123456789abcdef-01";

/// The metrics text and its content type.
async fn scrape(app: &TestApp) -> (String, String) {
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    (r.text().await.unwrap(), ct)
}

/// The value of one series (`name{labels}` exactly as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test]
async fn metrics_count_requests_events_launches_and_runs() {
    let EventApp {
        app, pipeline_id, ..
    } = support::spawn().await;
    let data = support::execute_payload();

    // REST: one hit, two misses, one refused by the Host check.
    assert_eq!(app.get("/api/", None).await.0, 200);
    assert_eq!(app.get("/api/nope/", None).await.0, 404);
    assert_eq!(app.get("/no/such/route", None).await.0, 404);
    let foreign = app
        .client
        .get(app.url("/api/"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 400);
    let (status, _) = app
        .get(&format!("/api/pipelines/{pipeline_id}/"), None)
        .await;
    assert!(status == 200 || status == 401, "{status}");

    // Events: health, accepted, duplicate, rejected (unknown user), ignored (no trigger).
    let health = support::binary(
        &app,
        "/",
        &[
            ("ce-id", "h-1"),
            ("ce-specversion", "1.0"),
            ("ce-source", "probe"),
            ("ce-type", "org.eoepca.application-quality.probes.health"),
        ],
        "",
    );
    assert_eq!(deliver(health).await.status, 200);
    let first = deliver(execute(&app, "/", "m-1", "event", pipeline_id, &data)).await;
    assert_eq!(first.status, 200, "{first:?}");
    let again = deliver(execute(&app, "/", "m-1", "event", pipeline_id, &data)).await;
    assert!(again.header("ce-type").ends_with(".duplicate"), "{again:?}");
    let rejected = deliver(execute(&app, "/", "m-2", "nobody", pipeline_id, &data)).await;
    assert_eq!(rejected.status, 422);
    let ignored = support::binary(
        &app,
        "/api/events/",
        &[
            ("ce-id", "g-1"),
            ("ce-specversion", "1.0"),
            ("ce-source", "github"),
            ("ce-type", "com.github.push"),
        ],
        "{}",
    );
    assert_eq!(deliver(ignored).await.status, 200);

    // A scrape with a pod-IP Host works (Prometheus scrapes pods by address).
    let by_ip = app
        .client
        .get(app.url("/metrics"))
        .header("host", "10.1.2.3:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(by_ip.status(), 200);

    let (text, content_type) = scrape(&app).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let req = |m: &str, route: &str, s: u16| {
        value(
            &text,
            &format!(r#"http_requests_total{{method="{m}",route="{route}",status="{s}"}}"#),
        )
    };
    assert_eq!(req("GET", "/api", 200), 1.0);
    assert_eq!(req("GET", "/api", 400), 1.0);
    assert_eq!(req("GET", "unmatched", 404), 1.0);
    // Two segments reach the broker-shaped event route, which 404s other methods.
    assert_eq!(req("GET", "/{namespace}/{broker}", 404), 1.0);
    assert_eq!(req("POST", "/", 200), 3.0);
    assert_eq!(req("POST", "/", 422), 1.0);
    assert_eq!(req("POST", "/api/events", 200), 1.0);
    // Route templates, never raw paths; probes and scrapes are not counted.
    assert!(text.contains(r#"route="/api/pipelines/{id}""#), "{text}");
    assert!(
        !text.contains(&format!("/api/pipelines/{pipeline_id}\"")),
        "{text}"
    );
    assert!(!text.contains("nope") && !text.contains("such"), "{text}");
    assert!(!text.contains(r#"route="/metrics""#), "{text}");
    assert_eq!(
        value(&text, r#"http_request_duration_seconds_count{route="/"}"#),
        4.0
    );

    let ev = |family: &str, outcome: &str| {
        value(
            &text,
            &format!(r#"cloudevents_received_total{{type_family="{family}",outcome="{outcome}"}}"#),
        )
    };
    assert_eq!(ev("health", "ok"), 1.0);
    assert_eq!(ev("execute", "accepted"), 1.0);
    assert_eq!(ev("execute", "duplicate"), 1.0);
    assert_eq!(ev("execute", "rejected"), 1.0);
    assert_eq!(ev("trigger", "ignored"), 1.0);

    assert_eq!(
        value(
            &text,
            r#"run_launch_duration_seconds_count{launcher="fake",outcome="launched"}"#
        ),
        1.0
    );
    assert_eq!(value(&text, r#"pipeline_runs{status="running"}"#), 1.0);
    for status in ["starting", "pending", "succeeded", "failed", "killed"] {
        assert_eq!(
            value(&text, &format!(r#"pipeline_runs{{status="{status}"}}"#)),
            0.0
        );
    }
}

#[tokio::test]
async fn an_unreachable_cluster_counts_as_an_event_error_and_an_unavailable_launch() {
    let EventApp {
        app,
        launcher,
        pipeline_id,
    } = support::spawn().await;
    launcher.down.store(true, Ordering::SeqCst);
    let r = deliver(execute(
        &app,
        "/",
        "down-1",
        "event",
        pipeline_id,
        &support::execute_payload(),
    ))
    .await;
    assert_eq!(r.status, 503, "{r:?}");
    let (text, _) = scrape(&app).await;
    assert_eq!(
        value(
            &text,
            r#"cloudevents_received_total{type_family="execute",outcome="error"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"run_launch_duration_seconds_count{launcher="fake",outcome="unavailable"}"#
        ),
        1.0
    );
    // The run waits for a redelivery as `failed`; the gauge reads the database.
    assert_eq!(value(&text, r#"pipeline_runs{status="failed"}"#), 1.0);
    assert_eq!(value(&text, r#"pipeline_runs{status="running"}"#), 0.0);
}

async fn demo_pipeline(app: &TestApp) -> i64 {
    pipeline::Entity::find()
        .filter(pipeline::Column::Name.eq("Notebook static analysis"))
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap()
        .id
}

#[tokio::test]
async fn traceparent_from_header_or_extension_reaches_the_launch_request() {
    let launcher = Arc::new(FakeLauncher::default());
    let app = TestApp::spawn_with(Options {
        launcher: Some(launcher.clone()),
        ..Default::default()
    })
    .await;
    app.seed().await;
    let (_, token) = app.user_with_token("event", false).await;
    let pid = demo_pipeline(&app).await;
    let data = support::execute_payload();

    // Sends one execute event and returns the run id it created.
    let run_of = |r: support::Replied| -> i64 {
        assert_eq!(r.status, 200, "{r:?}");
        r.body["run_id"].as_i64().unwrap()
    };

    // The HTTP header.
    let req = execute(&app, "/", "t-1", "event", pid, &data).header("traceparent", TP_HEADER);
    let run = run_of(deliver(req).await);
    assert_eq!(launcher.traceparent_of(run).as_deref(), Some(TP_HEADER));

    // The distributed-tracing extension in binary mode.
    let req = execute_with(
        &app,
        "/",
        "t-2",
        "event",
        pid,
        &[("ce-traceparent", TP_EXTENSION)],
        &data,
    );
    let run = run_of(deliver(req).await);
    assert_eq!(launcher.traceparent_of(run).as_deref(), Some(TP_EXTENSION));

    // The extension in structured mode.
    let event = json!({
        "specversion": "1.0",
        "id": "t-3",
        "source": "sdk",
        "type": "org.eoepca.application-quality.events.pipeline.execute",
        "subject": format!("pipelines/{pid}"),
        "user": "event",
        "traceparent": TP_STRUCTURED,
        "datacontenttype": "application/json",
        "data": data,
    });
    let run = run_of(deliver(structured(&app, "/", &event)).await);
    assert_eq!(launcher.traceparent_of(run).as_deref(), Some(TP_STRUCTURED));

    // Both: the header (the delivery's own trace) wins.
    let req = execute_with(
        &app,
        "/",
        "t-4",
        "event",
        pid,
        &[("ce-traceparent", TP_EXTENSION)],
        &data,
    )
    .header("traceparent", TP_HEADER);
    let run = run_of(deliver(req).await);
    assert_eq!(launcher.traceparent_of(run).as_deref(), Some(TP_HEADER));

    // A malformed header is ignored in favour of a valid extension, and alone yields none.
    let req = execute_with(
        &app,
        "/",
        "t-5",
        "event",
        pid,
        &[("ce-traceparent", TP_EXTENSION)],
        &data,
    )
    .header("traceparent", "00-nothex-00f067aa0ba902b7-01");
    let run = run_of(deliver(req).await);
    assert_eq!(launcher.traceparent_of(run).as_deref(), Some(TP_EXTENSION));
    let bad_upper = TP_HEADER.to_uppercase();
    let req = execute_with(
        &app,
        "/",
        "t-6",
        "event",
        pid,
        &[("ce-traceparent", "ff-junk")],
        &data,
    )
    .header("traceparent", bad_upper.as_str());
    let run = run_of(deliver(req).await);
    assert_eq!(launcher.traceparent_of(run), None);

    // REST: `POST .../runs/` with the header, and with a malformed one.
    let body = json!({"parameters": data["parameters"]});
    let created = |tp: &str| {
        app.client
            .post(app.url(&format!("/api/pipelines/{pid}/runs/")))
            .bearer_auth(&token)
            .header("traceparent", tp)
            .json(&body)
    };
    let (status, run) = app.send(created(TP_REST)).await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(
        launcher
            .traceparent_of(run["id"].as_i64().unwrap())
            .as_deref(),
        Some(TP_REST)
    );
    let (status, run) = app
        .send(created(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        ))
        .await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(launcher.traceparent_of(run["id"].as_i64().unwrap()), None);
}

/// A child process killed if the test fails first.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_trace_id_is_logged_with_the_request_and_the_launch() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("trace.db").display()
    );
    let conn = sea_orm::Database::connect(&url).await.unwrap();
    db::migrate(&conn).await.unwrap();
    catalogue::seed::seed(&conn).await.unwrap();
    catalogue::users::add_user(&conn, "event", "event-password-1", false)
        .await
        .unwrap();
    let pid = pipeline::Entity::find()
        .filter(pipeline::Column::Name.eq("Notebook static analysis"))
        .one(&conn)
        .await
        .unwrap()
        .unwrap()
        .id;
    drop(conn);

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_application-quality-api"))
        .env_clear()
        .env("DATABASE_URL", &url)
        .env("KUBERNETES", "off")
        .env("LOG_FORMAT", "json")
        .env("PORT", port.to_string())
        .env("BIND_ADDRESS", "127.0.0.1")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut proc = Proc(child);
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });

    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client
            .get(format!("{base}/health/readiness"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            break;
        }
        assert!(proc.0.try_wait().unwrap().is_none(), "the server exited");
        assert!(Instant::now() < deadline, "not ready after 30 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = client
        .post(format!("{base}/"))
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "logged-1")
        .header("ce-source", "curl")
        .header(
            "ce-type",
            "org.eoepca.application-quality.events.pipeline.execute",
        )
        .header("ce-user", "event")
        .header("ce-subject", format!("pipelines/{pid}"))
        .header("traceparent", TP_HEADER)
        .body(support::execute_payload().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let kill = Command::new("kill")
        .args(["-TERM", &proc.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let lines = reader.join().unwrap();
    let records: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let trace_id = &TP_HEADER[3..35];
    let launch = records
        .iter()
        .find(|r| r["message"] == "launch")
        .unwrap_or_else(|| panic!("no launch record: {lines:#?}"));
    assert_eq!(launch["trace_id"], trace_id, "{launch}");
    // The request line carries the request span with its trace id.
    let request = records
        .iter()
        .find(|r| r["message"] == "request" && r["path"] == "/")
        .unwrap_or_else(|| panic!("no request record: {lines:#?}"));
    let spans = request["spans"].as_array().expect("span list");
    assert!(
        spans
            .iter()
            .any(|s| s["name"] == "request" && s["trace_id"] == trace_id),
        "{request}"
    );
}
