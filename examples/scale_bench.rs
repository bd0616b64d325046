//! Scale benchmark used by `scripts/bench.sh scale`: the service's cost at 1k, 100k and 1M runs
//! (and as many received events) on SQLite or PostgreSQL. Rows are generated with SQL (a
//! recursive CTE or `generate_series`), not through the API. For each size it starts the
//! release binary and measures the full runs list (time to last byte, bytes, peak RSS), a page
//! of 50 (offset in the middle, and a keyset page), a user's own runs, one run, and
//! `pipeline.execute` events per second; then cold starts (exec -> readiness 200), on
//! PostgreSQL with the default `sslmode` (TLS), `sslmode=disable` and, when `BENCH_PG_CA`
//! names the server's CA file, `verify-full`. Prints a Markdown table.
//!
//! Usage: `scale_bench <binary> <database-url> [sizes...]` (default sizes 1000 100000 1000000).
//! The database (SQLite file or PostgreSQL database) is created afresh; each run carries an
//! executed CWL of `BENCH_CWL_BYTES` bytes (default 1000).

use reqwest::Client;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const SECRET: &str = "scale-bench-secret-0123456789abcdef0123";
const PASSWORD: &str = "bench-password-1";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_181)
}

fn command(bin: &str, url: &str) -> Command {
    let mut c = Command::new(bin);
    c.env("DATABASE_URL", url)
        .env("KUBERNETES", "off")
        .env("JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .env("MAINTENANCE_INTERVAL_SECS", "0")
        .env("APPLICATION_QUALITY_PASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Spawns `serve` and returns once readiness answers 200, with the time that took.
fn start(bin: &str, url: &str) -> (Server, Duration) {
    let port = free_port();
    let started = Instant::now();
    let server = Server {
        child: command(bin, url)
            .arg("serve")
            .env("PORT", port.to_string())
            .env("BIND_ADDRESS", "127.0.0.1")
            .spawn()
            .expect("spawn service"),
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = started + Duration::from_secs(20);
    while Instant::now() < deadline {
        if ready(port) {
            return (server, started.elapsed());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    panic!("no readiness within 20 s");
}

fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let req = "GET /health/readiness HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// Inserts runs and received events with ids in `(from, to]`.
async fn bulk(
    db: &DatabaseConnection,
    url: &str,
    from: u64,
    to: u64,
    users: (i64, i64),
    pipeline: i64,
) {
    let cwl = std::env::var("BENCH_CWL_BYTES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1000);
    let (u0, u1) = users;
    let mut lo = from;
    while lo < to {
        let hi = (lo + 100_000).min(to);
        let (series, ts, json, text) = if is_sqlite(url) {
            (
                format!(
                    "WITH RECURSIVE n(i) AS (SELECT {} UNION ALL SELECT i + 1 FROM n WHERE i < {hi}) ",
                    lo + 1
                ),
                "strftime('%Y-%m-%dT%H:%M:%S+00:00', 1764000000 + i, 'unixepoch')".to_string(),
                "",
                format!("printf('%.{cwl}c', 'x')"),
            )
        } else {
            (
                String::new(),
                "to_timestamp(1764000000 + i)".to_string(),
                "::jsonb",
                format!("repeat('x', {cwl})"),
            )
        };
        let from_clause = if is_sqlite(url) {
            "FROM n".to_string()
        } else {
            format!("FROM generate_series({}, {hi}) AS i", lo + 1)
        };
        let runs = format!(
            "INSERT INTO backend_pipelinerun (pipeline_id, status, status_message, started_by_id, \
             triggered_by, usage_report, inputs, parameters, executed_cwl, start_time, \
             completion_time, updated_at) {series} SELECT {pipeline}, \
             CASE i % 3 WHEN 0 THEN 'succeeded' WHEN 1 THEN 'failed' ELSE 'pending' END, 'bulk', \
             CASE i % 2 WHEN 0 THEN {u0} ELSE {u1} END, \
             CASE WHEN i % 10 = 0 THEN 'push-trigger' ELSE NULL END, '\"\"'{json}, \
             '{{\"clone_subworkflow.clone.repo_url\": \"https://github.com/org/repo\"}}'{json}, \
             '{{}}'{json}, {text}, {ts}, {ts}, {ts} {from_clause}"
        );
        db.execute_unprepared(&runs).await.expect("bulk runs");
        let events = format!(
            "INSERT INTO aq_received_event (source, event_id, event_type, headers, outcome, \
             run_ids, received_at, data) {series} SELECT 'github', 'delivery-' || i, \
             'org.eoepca.webhook.github.push', '{{\"content-type\": \"application/json\"}}'{json}, \
             'ignored', '[]'{json}, {ts}, '{{\"ref\": \"refs/heads/main\"}}'{json} {from_clause}"
        );
        db.execute_unprepared(&events).await.expect("bulk events");
        lo = hi;
    }
    if !is_sqlite(url) {
        // What autovacuum would have done by then (statistics and the visibility map, which
        // index-only counts need).
        db.execute_unprepared("VACUUM ANALYZE").await.unwrap();
    }
}

async fn token(client: &Client, base: &str, user: &str) -> String {
    let r: serde_json::Value = client
        .post(format!("{base}/api/token/"))
        .json(&serde_json::json!({"username": user, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access"].as_str().expect("token").to_string()
}

/// GET to the last byte: (seconds, bytes).
async fn download(client: &Client, url: &str, token: &str) -> (f64, u64) {
    let started = Instant::now();
    let mut r = client.get(url).bearer_auth(token).send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    let mut bytes = 0u64;
    while let Some(chunk) = r.chunk().await.unwrap() {
        bytes += chunk.len() as u64;
    }
    (started.elapsed().as_secs_f64(), bytes)
}

/// Median time of `n` GETs, in milliseconds.
async fn p50(client: &Client, url: &str, token: &str, n: usize) -> f64 {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        times.push(download(client, url, token).await.0 * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    times[n / 2]
}

fn median_ms(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    (
        v[v.len() / 2].as_secs_f64() * 1000.0,
        v[v.len() - 1].as_secs_f64() * 1000.0,
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: scale_bench <binary> <database-url> [sizes...]");
        std::process::exit(2);
    }
    let (bin, url) = (args[1].clone(), args[2].clone());
    let sizes: Vec<u64> = if args.len() > 3 {
        args[3..].iter().map(|s| s.parse().expect("size")).collect()
    } else {
        vec![1_000, 100_000, 1_000_000]
    };
    // A fresh database.
    if is_sqlite(&url) {
        let path = url
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap()
            .to_string();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    } else {
        let mut admin = url::Url::parse(&url).unwrap();
        let name = admin.path().trim_start_matches('/').to_string();
        admin.set_path("/postgres");
        admin.set_query(Some("sslmode=disable"));
        let a = Database::connect(admin.as_str()).await.unwrap();
        a.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .unwrap();
        a.execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    }
    let run = |args: &[&str]| {
        let ok = command(&bin, &url)
            .env("DATABASE_AUTO_MIGRATE", "true")
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{args:?}");
    };
    run(&["migrate"]);
    run(&["seed"]);
    run(&["user", "add", "bench", "--staff"]);
    run(&["user", "add", "alice"]);
    let db = Database::connect(url.as_str()).await.unwrap();
    let id = |sql: &'static str| {
        let db = &db;
        async move {
            db.query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                sql,
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap()
        }
    };
    let users = (
        id("SELECT id FROM auth_user WHERE username = 'bench'").await,
        id("SELECT id FROM auth_user WHERE username = 'alice'").await,
    );
    let pipeline = id("SELECT MIN(id) FROM backend_pipeline").await;
    let client = Client::new();
    let store = if is_sqlite(&url) {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    println!(
        "| {store}: runs (and received events) | full list: last byte, size, peak RSS | a user's own runs (half): last byte | page of 50 (offset in the middle / keyset) p50 | a user's page of 50 p50 | one run p50 | execute events/s (8 in flight) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut done = 0u64;
    for size in sizes {
        let t = Instant::now();
        bulk(&db, &url, done, size, users, pipeline).await;
        eprintln!("{size}: generated in {:.1} s", t.elapsed().as_secs_f64());
        done = size;
        let (server, _) = start(&bin, &url);
        let pid = server.child.id();
        let base = server.base.clone();
        let staff = token(&client, &base, "bench").await;
        let alice = token(&client, &base, "alice").await;
        let list = format!("{base}/api/pipelines/_/runs/");
        reset_peak(pid);
        let (secs, bytes) = download(&client, &list, &staff).await;
        let peak = status_kib(pid, "VmHWM:");
        let (own_secs, _) = download(&client, &list, &alice).await;
        let page = p50(
            &client,
            &format!("{list}?limit=50&offset={}", size / 2),
            &staff,
            21,
        )
        .await;
        // A keyset page from the middle: the cursor of run id size/2.
        let cursor = base64_cursor(size / 2);
        let keyset = p50(
            &client,
            &format!("{list}?limit=50&cursor={cursor}"),
            &staff,
            21,
        )
        .await;
        let own_page = p50(&client, &format!("{list}?limit=50"), &alice, 21).await;
        let one = p50(&client, &format!("{list}{}/", size / 2), &staff, 51).await;
        let eps = execute_events(&client, &base, pipeline, size).await;
        println!(
            "| {size} | {secs:.2} s, {:.0} MB, {} MiB | {own_secs:.2} s | {page:.1} / {keyset:.1} ms | {own_page:.1} ms | {one:.2} ms | {eps:.0} |",
            bytes as f64 / 1e6,
            peak / 1024
        );
        drop(server);
    }
    // Cold starts on the largest database.
    let mut variants = vec![("default", url.clone())];
    if !is_sqlite(&url) {
        let with = |q: &str| {
            let mut u = url::Url::parse(&url).unwrap();
            u.set_query(Some(q));
            u
        };
        variants.push(("sslmode=disable", with("sslmode=disable").to_string()));
        if let Ok(ca) = std::env::var("BENCH_PG_CA") {
            let mut u = with(&format!("sslmode=verify-full&sslrootcert={ca}"));
            u.set_host(Some("localhost")).unwrap();
            variants.push(("sslmode=verify-full", u.to_string()));
        }
    }
    println!();
    println!("| {store} cold start, exec -> readiness 200 (20 starts) | median | max |");
    println!("|---|---|---|");
    for (name, u) in variants {
        let times: Vec<Duration> = (0..20).map(|_| start(&bin, &u).1).collect();
        let (median, max) = median_ms(times);
        println!("| {name} | {median:.1} ms | {max:.1} ms |");
    }
}

/// The list's opaque cursor for "after run `id`" (URL-safe base64 of `after:<id>`).
fn base64_cursor(id: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("after:{id}"))
}

/// `pipeline.execute` events per second: 400 new events, 8 in flight.
async fn execute_events(client: &Client, base: &str, pipeline: i64, tag: u64) -> f64 {
    use futures::StreamExt;
    let body = r#"{"parameters": {"clone_subworkflow": {"clone": {"repo_url": "https://github.com/org/repo", "repo_branch": "main"}}}}"#;
    let started = Instant::now();
    let n = 400;
    let results: Vec<u16> = futures::stream::iter(0..n)
        .map(|i| {
            let req = client
                .post(format!("{base}/api/events/"))
                .header("ce-specversion", "1.0")
                .header("ce-id", format!("bench-{tag}-{i}"))
                .header("ce-source", "bench")
                .header(
                    "ce-type",
                    "org.eoepca.application-quality.events.pipeline.execute",
                )
                .header("ce-subject", format!("pipelines/{pipeline}"))
                .header("ce-user", "bench")
                .header("content-type", "application/json")
                .body(body);
            async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(results.iter().all(|s| *s == 200), "every event accepted");
    f64::from(n) / started.elapsed().as_secs_f64()
}
