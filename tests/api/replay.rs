//! Replay tooling (issue 7): `application-quality-api events export|replay`, run as the built
//! binary against a running server's database: exported lines are structured CloudEvents in
//! received order, filters select by type prefix and receive time, a replay to our service is
//! harmless (duplicates, no new run), `--new-id` makes new runs, and a broker-like target that
//! answers 202 with no body counts as success.

use crate::{
    common::TestApp,
    events::support::{self, EventApp, deliver, execute},
};
use application_quality_api::db::entities::received_event;
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
};
use chrono::{Duration as Span, SecondsFormat, Utc};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};
use std::{
    fs::File,
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

const EXECUTE: &str = "org.eoepca.application-quality.events.pipeline.execute";

/// What the CLI did.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Stderr without JSON log records.
    fn messages(&self) -> String {
        self.stderr
            .lines()
            .filter(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Longest a CLI run may take (a replay that fed on its own output would never end).
const CLI_LIMIT: Duration = Duration::from_secs(60);

/// Runs the binary with a clean environment on the app's database (off the async runtime,
/// which keeps serving the test server meanwhile); killed after [`CLI_LIMIT`].
async fn cli(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_application-quality-api"));
    cmd.env_clear()
        .env("DATABASE_URL", &app.database_url)
        .env("KUBERNETES", "off")
        .env("LOG_FORMAT", "json")
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + CLI_LIMIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the CLI did not finish within {CLI_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await
    .unwrap();
    Ran {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
    }
}

fn lines_of(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Exports with extra arguments and returns the events.
async fn export(app: &TestApp, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["events", "export"];
    args.extend_from_slice(extra);
    let ran = cli(app, &args, &[]).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    lines_of(&ran.stdout)
}

/// A GitHub-like event that matches no trigger (stored as `ignored`).
async fn push_event(app: &TestApp, id: &str) {
    let r = deliver(support::binary(
        app,
        "/api/events/",
        &[
            ("ce-id", id),
            ("ce-specversion", "1.0"),
            ("ce-source", "github"),
            ("ce-type", "com.github.push"),
            ("ce-repository", "aq"),
        ],
        r#"{"ref": "refs/heads/main"}"#,
    ))
    .await;
    assert_eq!(r.status, 200, "{r:?}");
}

async fn received_count(app: &TestApp) -> u64 {
    received_event::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn export_then_replay_to_our_service_answers_duplicate_and_starts_nothing() {
    let EventApp {
        app,
        launcher,
        pipeline_id,
    } = support::spawn().await;
    let data = support::execute_payload();
    for id in ["e-1", "e-2"] {
        let r = deliver(execute(&app, "/", id, "event", pipeline_id, &data)).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    push_event(&app, "g-1").await;
    assert_eq!(support::run_count(&app).await, 2);
    assert_eq!(launcher.total(), 2);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let file_arg = file.to_str().unwrap();
    let ran = cli(&app, &["events", "export", "--output", file_arg], &[]).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.messages().contains("exported 3 event(s)"), "{ran:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    let events = lines_of(&text);
    assert_eq!(ids(&events), ["e-1", "e-2", "g-1"], "received order");
    let first = &events[0];
    assert_eq!(first["specversion"], "1.0");
    assert_eq!(first["source"], "curl");
    assert_eq!(first["type"], EXECUTE);
    assert_eq!(first["subject"], format!("pipelines/{pipeline_id}"));
    assert_eq!(first["user"], "event");
    assert_eq!(first["datacontenttype"], "application/json");
    assert_eq!(first["data"], data);
    // Binary-mode extensions are kept.
    assert_eq!(events[2]["repository"], "aq");
    assert_eq!(events[2]["data"], json!({"ref": "refs/heads/main"}));
    // Standard output carries the same lines.
    assert_eq!(export(&app, &[]).await, events);

    // From the file, and from the database: duplicates only.
    let to = app.url("/");
    let ran = cli(
        &app,
        &["events", "replay", "--input", file_arg, "--to", &to],
        &[],
    )
    .await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout
            .contains("sent 3 event(s): 3 succeeded, 0 failed"),
        "{ran:?}"
    );
    assert!(ran.stdout.contains("status 200: 3"), "{ran:?}");
    assert!(ran.stdout.contains("reply duplicate: 3"), "{ran:?}");
    let to = app.url("/api/events/");
    let ran = cli(&app, &["events", "replay", "--to", &to], &[]).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("reply duplicate: 3"), "{ran:?}");

    assert_eq!(support::run_count(&app).await, 2, "no new run");
    assert_eq!(launcher.total(), 2, "no new launch");
    assert_eq!(received_count(&app).await, 3, "no new event");
}

#[tokio::test]
async fn new_id_forces_new_runs() {
    let EventApp {
        app,
        launcher,
        pipeline_id,
    } = support::spawn().await;
    let data = support::execute_payload();
    let r = deliver(execute(&app, "/", "e-1", "event", pipeline_id, &data)).await;
    assert_eq!(r.status, 200, "{r:?}");
    push_event(&app, "g-1").await;

    let to = app.url("/");
    let ran = cli(
        &app,
        &[
            "events", "replay", "--to", &to, "--new-id", "--type", EXECUTE,
        ],
        &[],
    )
    .await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout
            .contains("sent 1 event(s): 1 succeeded, 0 failed"),
        "{ran:?}"
    );
    assert!(ran.stdout.contains("reply accepted: 1"), "{ran:?}");
    assert_eq!(support::run_count(&app).await, 2);
    assert_eq!(launcher.total(), 2);
    // The new event keeps the source; its id is fresh.
    let stored = received_event::Entity::find()
        .filter(received_event::Column::Source.eq("curl"))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    let fresh = stored.iter().find(|e| e.event_id != "e-1").unwrap();
    assert!(uuid::Uuid::parse_str(&fresh.event_id).is_ok(), "{fresh:?}");
    assert_eq!(fresh.user.as_deref(), Some("event"));
    assert_eq!(fresh.outcome, "accepted");
}

#[tokio::test]
async fn export_filters_by_type_prefix_and_receive_time() {
    let EventApp {
        app, pipeline_id, ..
    } = support::spawn().await;
    let data = support::execute_payload();
    let r = deliver(execute(&app, "/", "e-1", "event", pipeline_id, &data)).await;
    assert_eq!(r.status, 200, "{r:?}");
    push_event(&app, "g-1").await;
    push_event(&app, "g-2").await;
    // e-1 and g-1 were received three days ago.
    let old = Utc::now() - Span::days(3);
    received_event::Entity::update_many()
        .col_expr(received_event::Column::ReceivedAt, Expr::value(old))
        .filter(received_event::Column::EventId.is_in(["e-1", "g-1"]))
        .exec(&app.state.db)
        .await
        .unwrap();

    assert_eq!(
        ids(&export(&app, &["--type", "com.github."]).await),
        ["g-1", "g-2"]
    );
    assert_eq!(ids(&export(&app, &["--type", EXECUTE]).await), ["e-1"]);
    assert_eq!(ids(&export(&app, &["--since", "24h"]).await), ["g-2"]);
    let two_days_ago = (Utc::now() - Span::days(2)).to_rfc3339_opts(SecondsFormat::Secs, true);
    assert_eq!(
        ids(&export(&app, &["--since", &two_days_ago]).await),
        ["g-2"]
    );
    let four_days_ago = (Utc::now() - Span::days(4)).to_rfc3339_opts(SecondsFormat::Secs, true);
    assert_eq!(
        ids(&export(&app, &["--since", &four_days_ago]).await),
        ["e-1", "g-1", "g-2"]
    );
    assert!(
        export(&app, &["--since", "1h", "--type", "org."])
            .await
            .is_empty()
    );

    let ran = cli(&app, &["events", "export", "--since", "yesterday"], &[]).await;
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(ran.stderr.contains("24h"), "{ran:?}");
}

/// What the fake broker received.
#[derive(Debug, Clone)]
struct Delivery {
    headers: HeaderMap,
    body: Bytes,
}

type Received = Arc<Mutex<Vec<Delivery>>>;

/// A broker stand-in: 202 with no body (503 for events from `github` when `refuse_github`).
async fn broker(refuse_github: bool) -> (String, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .fallback(
            move |State(received): State<Received>, headers: HeaderMap, body: Bytes| async move {
                let refuse = refuse_github && headers["ce-source"] == "github";
                received.lock().unwrap().push(Delivery { headers, body });
                if refuse {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("content-type", "application/json")],
                        r#"{"detail": "broker is full"}"#,
                    )
                        .into_response()
                } else {
                    StatusCode::ACCEPTED.into_response()
                }
            },
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/aq/default"), received)
}

fn header(d: &Delivery, name: &str) -> String {
    d.headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn replay_to_a_broker_counts_2xx_as_success_and_reports_failures() {
    let EventApp {
        app, pipeline_id, ..
    } = support::spawn().await;
    let data = support::execute_payload();
    let r = deliver(execute(&app, "/", "e-1", "event", pipeline_id, &data)).await;
    assert_eq!(r.status, 200, "{r:?}");
    push_event(&app, "g-1").await;

    // Accepted with 202 and no body; the token comes from the environment.
    let (url, received) = broker(false).await;
    let ran = cli(
        &app,
        &["events", "replay", "--to", &url],
        &[("APPLICATION_QUALITY_REPLAY_TOKEN", "s3cret")],
    )
    .await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        ran.stdout
            .contains("sent 2 event(s): 2 succeeded, 0 failed"),
        "{ran:?}"
    );
    assert!(ran.stdout.contains("status 202: 2"), "{ran:?}");
    assert!(!ran.stdout.contains("reply "), "{ran:?}");
    assert!(!ran.stderr.contains("s3cret"), "the token is never printed");
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    let (e, g) = (&got[0], &got[1]);
    assert_eq!(header(e, "ce-specversion"), "1.0");
    assert_eq!(header(e, "ce-id"), "e-1");
    assert_eq!(header(e, "ce-source"), "curl");
    assert_eq!(header(e, "ce-type"), EXECUTE);
    assert_eq!(header(e, "ce-user"), "event");
    assert_eq!(header(e, "ce-subject"), format!("pipelines/{pipeline_id}"));
    assert_eq!(header(e, "content-type"), "application/json");
    assert_eq!(header(e, "authorization"), "Bearer s3cret");
    assert_eq!(serde_json::from_slice::<Value>(&e.body).unwrap(), data);
    assert_eq!(header(g, "ce-id"), "g-1");
    assert_eq!(header(g, "ce-repository"), "aq");

    // --new-id, with the token on the command line.
    let (url, received) = broker(false).await;
    let ran = cli(
        &app,
        &[
            "events", "replay", "--to", &url, "--new-id", "--token", "t0k",
        ],
        &[],
    )
    .await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    for d in &got {
        assert!(uuid::Uuid::parse_str(&header(d, "ce-id")).is_ok(), "{d:?}");
        assert_eq!(header(d, "authorization"), "Bearer t0k");
    }
    assert_eq!(header(&got[0], "ce-source"), "curl");

    // A refusal is counted and named, and the exit status says so.
    let (url, _) = broker(true).await;
    let ran = cli(&app, &["events", "replay", "--to", &url], &[]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stdout
            .contains("sent 2 event(s): 1 succeeded, 1 failed"),
        "{ran:?}"
    );
    assert!(ran.stdout.contains("status 503: 1"), "{ran:?}");
    let messages = ran.messages();
    assert!(
        messages.contains("github / g-1: HTTP 503: broker is full"),
        "{messages}"
    );
    assert!(
        messages.contains("error: 1 of 2 event(s) were not accepted"),
        "{messages}"
    );

    // Nobody listening: no answer for each event.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let ran = cli(&app, &["events", "replay", "--to", &url], &[]).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.stdout.contains("no answer: 2"), "{ran:?}");
}

#[tokio::test]
async fn replay_input_is_checked_before_anything_is_sent() {
    let EventApp {
        app, pipeline_id, ..
    } = support::spawn().await;
    let data = support::execute_payload();
    let r = deliver(execute(&app, "/", "e-1", "event", pipeline_id, &data)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.jsonl");
    let good = export(&app, &[]).await;
    std::fs::write(&file, format!("{}\n{{\"not\": \"an event\"}}\n", good[0])).unwrap();
    let (url, received) = broker(false).await;
    let ran = cli(
        &app,
        &[
            "events",
            "replay",
            "--input",
            file.to_str().unwrap(),
            "--to",
            &url,
        ],
        &[],
    )
    .await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.messages().contains("line 2"), "{ran:?}");
    assert!(received.lock().unwrap().is_empty(), "nothing sent");
    assert!(Path::new(&file).exists());
}
