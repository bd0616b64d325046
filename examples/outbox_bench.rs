//! Commit-status numbers (docs/performance.md): the latency of a GitHub push event that starts
//! a run, with statuses off and on (on, the `pending` status is one more row in the event's
//! transaction; delivery happens after the reply), and how many statuses per second the outbox
//! delivers to a local HTTP server standing in for GitHub (answering 201 at once).
//!
//! `cargo run --release --example outbox_bench` (SQLite in a temporary directory;
//! `BENCH_DATABASE_URL=postgres://...` for a PostgreSQL server to create databases on;
//! `BENCH_SPACED=1` leaves 30 ms between events).

use application_quality_api::{
    build_state_with, catalogue, config::Config, db::entities::commit_status,
    runs::launcher::RecordingLauncher, serve, statuses,
};
use axum::{Router, http::StatusCode, routing::any};
use chrono::Utc;
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use serde_json::{Value, json};
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

const EVENTS: usize = 300;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn stand_in(count: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(any(move || {
        let count = count.clone();
        async move {
            count.fetch_add(1, Ordering::Relaxed);
            (StatusCode::CREATED, "{\"id\": 1}")
        }
    }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn database(dir: &tempfile::TempDir, n: usize) -> String {
    match std::env::var("BENCH_DATABASE_URL") {
        Ok(u) => {
            // One database per configuration: `<url>_<n>`, created on the server.
            use sea_orm::{ConnectionTrait, Database};
            let admin = Database::connect(&u).await.unwrap();
            let name = format!("aq_outbox_bench_{n}_{}", std::process::id());
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let mut url = url::Url::parse(&u).unwrap();
            url.set_path(&format!("/{name}"));
            url.to_string()
        }
        Err(_) => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join(format!("b{n}.db")).display()
        ),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let delivered = Arc::new(AtomicUsize::new(0));
    let forge = stand_in(delivered.clone()).await;
    let dir = tempfile::tempdir()?;
    let client = reqwest::Client::new();
    println!("| statuses | events | event p50 | p95 | max |");
    println!("|---|---|---|---|---|");
    let spaced = std::env::var("BENCH_SPACED").is_ok();
    for (n, enabled) in [false, true].into_iter().enumerate() {
        let url = database(&dir, n).await;
        let config = Config::from_iter([
            ("DATABASE_URL".to_string(), url),
            ("DATABASE_AUTO_MIGRATE".into(), "true".into()),
            ("KUBERNETES".into(), "off".into()),
            ("GITHUB_STATUS_ENABLED".into(), enabled.to_string()),
            ("GITHUB_API_URL".into(), forge.clone()),
            ("GITHUB_API_TOKEN".into(), "bench-token".into()),
        ])?;
        let state = build_state_with(config, Arc::new(RecordingLauncher::new("bench"))).await?;
        catalogue::seed::seed(&state.db).await?;
        catalogue::users::add_user(&state.db, "bench", "bench-password-1", true).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(serve(state.clone(), listener, std::future::pending()));
        let token: Value = client
            .post(format!("{base}/api/token/"))
            .json(&json!({"username": "bench", "password": "bench-password-1"}))
            .send()
            .await?
            .json()
            .await?;
        let token = token["access"].as_str().unwrap().to_string();
        let pipelines: Value = client
            .get(format!("{base}/api/pipelines/"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let r = client
            .post(format!("{base}/api/triggers/"))
            .bearer_auth(&token)
            .json(
                &json!({"slug": "bench", "trigger_type": "github_webhook_push",
                "pipeline": pipelines[0]["id"],
                "params_mapping": {"clone_subworkflow.clone.repo_url": "repository.clone_url"}}),
            )
            .send()
            .await?;
        assert_eq!(r.status(), 201, "{}", r.text().await?);
        let mut times = Vec::with_capacity(EVENTS);
        for i in 0..EVENTS + 20 {
            let sha = format!("{:040x}", i + 1);
            let body = json!({"ref": "refs/heads/main", "head_commit": {"id": sha}, "pusher": {},
                "repository": {"name": "r", "owner": {"login": "o"}, "clone_url": "https://github.com/o/r.git"}});
            let started = Instant::now();
            let r = client
                .post(format!("{base}/api/events/"))
                .header("ce-specversion", "1.0")
                .header("ce-id", format!("e{i}"))
                .header("ce-source", "bench")
                .header("ce-type", "org.eoepca.webhook.github.push")
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await?;
            assert_eq!(r.status(), 200);
            let _ = r.bytes().await?;
            if i >= 20 {
                times.push(started.elapsed());
            }
            // Spaced out, the background deliveries of one event are done before the next:
            // the figure is the request path alone, without contention for the store.
            if spaced {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        times.sort();
        println!(
            "| {} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
            if enabled { "on" } else { "off" },
            if spaced {
                "30 ms apart"
            } else {
                "back to back"
            },
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            percentile(&times, 1.0)
        );
        if !enabled {
            continue;
        }
        // Throughput: rows for many commits (delivered 8 at a time), then for one commit
        // (strictly in order, one at a time).
        println!();
        println!("| outbox rows | commits | delivered | seconds | statuses/s |");
        println!("|---|---|---|---|---|");
        for (rows, commits) in [(2000usize, 2000usize), (500, 1)] {
            statuses::deliver_now(&state.runs.notifier).await?;
            let before = delivered.load(Ordering::Relaxed);
            let now = Utc::now();
            for i in 0..rows {
                commit_status::ActiveModel {
                    run_id: Set(None),
                    forge: Set("github".into()),
                    api_url: Set(forge.clone()),
                    repository: Set("o/r".into()),
                    token_scope: Set("o".into()),
                    sha: Set(format!("{:040x}", 1_000_000 + i % commits)),
                    context: Set("bench".into()),
                    state: Set("success".into()),
                    description: Set("bench".into()),
                    target_url: Set(None),
                    outcome: Set(statuses::outcome::QUEUED.into()),
                    attempts: Set(0),
                    next_attempt_at: Set(now),
                    lease_until: Set(None),
                    last_error: Set(None),
                    created_at: Set(now),
                    delivered_at: Set(None),
                    ..Default::default()
                }
                .insert(&state.db)
                .await?;
            }
            let started = Instant::now();
            statuses::deliver_now(&state.runs.notifier).await?;
            // A pass started by the events may hold some rows: wait for the stand-in's count.
            while delivered.load(Ordering::Relaxed) - before < rows {
                assert!(started.elapsed() < Duration::from_secs(120));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let secs = started.elapsed().as_secs_f64();
            let got = delivered.load(Ordering::Relaxed) - before;
            println!(
                "| {rows} | {commits} | {got} | {secs:.2} | {:.0} |",
                rows as f64 / secs
            );
        }
    }
    Ok(())
}
