//! The built binary as a process: start-up time to a ready probe, graceful shutdown on SIGTERM
//! with a request in flight, one-line configuration errors, and the CLI subcommands scripts
//! rely on (`user add`, `seed`, `import-fixtures`).

use application_quality_api::{
    auth::password::{self, Verified},
    config::Config,
    db::{self, entities::user},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_application-quality-api");

/// A child process that is killed if the test fails before it exits.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("proc.db").display())
}

/// The binary with a clean environment (nothing inherited from the developer's shell). It
/// never needs a fixed port: a `serve` that gets as far as listening takes any free loopback
/// port unless the test names one (a developer's server on 8080 must not fail the suite).
fn command(db_url: &str, extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("DATABASE_URL", db_url)
        .env("KUBERNETES", "off")
        .env("LOG_FORMAT", "json")
        .env("PORT", "0")
        .env("BIND_ADDRESS", "127.0.0.1");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Stderr without the JSON log records (`{...}` lines), i.e. what a person reads.
fn messages(stderr: &[u8]) -> Vec<String> {
    text(stderr)
        .lines()
        .filter(|l| !l.starts_with('{'))
        .map(str::to_string)
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `GET path` on a fresh connection; the status code, if a response came.
fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split(' ').nth(1)?.parse().ok()
}

/// Starts `serve` on a free port; stderr lines are forwarded to the returned channel.
fn serve(db_url: &str) -> (Proc, SocketAddr, Instant, mpsc::Receiver<String>) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    let mut child = command(
        db_url,
        &[("PORT", &port.to_string()), ("BIND_ADDRESS", "127.0.0.1")],
    )
    .arg("serve")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Proc(child), addr, started, rx)
}

/// Polls the readiness probe until it answers 200; returns the time since spawn.
fn wait_ready(proc: &mut Proc, addr: SocketAddr, started: Instant) -> Duration {
    let deadline = started + Duration::from_secs(30);
    loop {
        if get_status(addr, "/health/readiness") == Some(200) {
            return started.elapsed();
        }
        if let Some(status) = proc.0.try_wait().unwrap() {
            panic!("the server exited early: {status}");
        }
        assert!(Instant::now() < deadline, "not ready after 30 s");
        // Connection refused comes back at once; a short pause keeps this from spinning.
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn wait_exit(mut proc: Proc, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn readiness_answers_quickly_after_spawn() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    // Cold: a new database file, migrated at start-up.
    let (mut p, addr, started, _logs) = serve(&url);
    let cold = wait_ready(&mut p, addr, started);
    drop(p);
    // Warm: the same, already migrated database (a restart / scale-from-zero).
    let (mut p, addr, started, _logs) = serve(&url);
    let warm = wait_ready(&mut p, addr, started);
    eprintln!("readiness after spawn: cold {cold:?}, warm {warm:?} (debug build)");
    // Debug build on a shared machine: a generous bound. The release build is measured for
    // the figure in docs/performance.md.
    assert!(warm < Duration::from_secs(2), "warm start took {warm:?}");
    assert!(cold < Duration::from_secs(5), "cold start took {cold:?}");
    assert_eq!(get_status(addr, "/health/liveness"), Some(200));
}

#[test]
fn sigterm_lets_the_in_flight_request_finish_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, addr, started, logs) = serve(&sqlite_url(dir.path()));
    wait_ready(&mut p, addr, started);

    // A slow upload: headers first, and `Expect: 100-continue` so the server tells us when the
    // handler starts reading the body, i.e. when the request is really in flight.
    let body = br#"{"username": "nobody", "password": "not-the-password"}"#;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /api/token/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("HTTP/1.1 100"),
        "expected 100 Continue, got {line:?}"
    );
    reader.read_line(&mut line).unwrap(); // blank line after the interim response
    s.write_all(&body[..10]).unwrap();

    let pid = p.0.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    // Wait until the server has acted on the signal before finishing the upload.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let l = logs
            .recv_timeout(remaining)
            .expect("no shutdown log line after SIGTERM");
        if l.contains("shutdown signal received") {
            break;
        }
    }
    assert!(
        p.0.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );

    s.write_all(&body[10..]).unwrap();
    let mut response = String::new();
    reader.read_to_string(&mut response).unwrap();
    let status_line = response.lines().next().unwrap_or_default();
    assert!(
        status_line.starts_with("HTTP/1.1 401"),
        "the in-flight request must complete normally: {response:?}"
    );
    assert!(response.contains("No active account"), "{response}");

    let status = wait_exit(p, Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
}

#[test]
fn bad_configuration_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("PUBLIC_URL", "example.org")],
            "error: PUBLIC_URL must look like scheme://host[:port]",
        ),
        (
            &[("DATABASE_URL", "postgres://127.0.0.1:1/x")],
            "error: cannot open DATABASE_URL (postgres://127.0.0.1:1/x)",
        ),
        (&[("PORT", "eighty")], "error: invalid configuration"),
    ];
    for (env, expected) in cases {
        let out = run(command(&url, env).arg("serve"), None);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{env:?} must fail");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{env:?}: exactly one line, got {stderr:?}");
        assert!(lines[0].starts_with(expected), "{env:?}: {stderr:?}");
    }
    // A port another server holds (a developer's `scripts/dev.sh` on 8080) is one clear line
    // as well; the cases above never depend on a port being free.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(command(&url, &[("PORT", &port)]).arg("serve"), None);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a taken port must fail");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with(&format!("error: cannot listen on 127.0.0.1:{port}")),
        "{stderr:?}"
    );
}

async fn user_row(url: &str, username: &str) -> Option<user::Model> {
    let config = Config::from_iter([("DATABASE_URL".to_string(), url.to_string())]).unwrap();
    let conn = db::connect(&config).await.unwrap();
    user::Entity::find()
        .filter(user::Column::Username.eq(username))
        .one(&conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn user_add_reads_the_password_safely_and_refuses_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());

    // From stdin (first line only).
    let out = run(
        command(&url, &[]).args(["user", "add", "alice", "--staff", "--password-stdin"]),
        Some("correct horse battery\nignored\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("created user \"alice\""));
    let alice = user_row(&url, "alice").await.unwrap();
    assert!(alice.is_staff && alice.is_active);
    assert!(alice.password.starts_with("$argon2id$"));
    assert_eq!(
        password::verify("correct horse battery", &alice.password),
        Verified::Yes
    );

    // Twice: a clear error, nothing changed.
    let out = run(
        command(&url, &[]).args(["user", "add", "alice", "--password-stdin"]),
        Some("another-password\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        messages(&out.stderr),
        ["error: user \"alice\" already exists"]
    );
    assert_eq!(user_row(&url, "alice").await.unwrap(), alice);

    // From the environment variable.
    let out = run(
        command(&url, &[("APPLICATION_QUALITY_PASSWORD", "from-the-env-1")])
            .args(["user", "add", "bob"]),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bob = user_row(&url, "bob").await.unwrap();
    assert!(!bob.is_staff);
    assert_eq!(
        password::verify("from-the-env-1", &bob.password),
        Verified::Yes
    );

    // No password anywhere: a clear error, no user.
    let out = run(command(&url, &[]).args(["user", "add", "carol"]), None);
    assert!(!out.status.success());
    let stderr = messages(&out.stderr);
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].starts_with("error: no password given"),
        "{stderr:?}"
    );
    // An empty stdin is no password either.
    let out = run(
        command(&url, &[]).args(["user", "add", "carol", "--password-stdin"]),
        Some(""),
    );
    assert!(!out.status.success());
    let stderr = messages(&out.stderr);
    assert!(
        stderr.len() == 1 && stderr[0].starts_with("error: "),
        "{stderr:?}"
    );
    assert!(user_row(&url, "carol").await.is_none());
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn seed_and_import_fixtures_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());

    let first = run(command(&url, &[]).arg("seed"), None);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let out = text(&first.stdout);
    assert!(
        out.contains("(created 41, updated 0, unchanged 0)"),
        "{out}"
    );
    let ids: Vec<&str> = out.lines().filter(|l| l.contains(": pipeline ")).collect();
    assert_eq!(
        ids,
        [
            "Notebook static analysis: pipeline 1",
            "Python lint: pipeline 2",
            "Python pipeline: pipeline 3",
            "Notebook execution: pipeline 4",
            "Notebook pipeline: pipeline 5",
            "Application Package validation: pipeline 6"
        ]
    );
    let second = run(command(&url, &[]).arg("seed"), None);
    assert!(second.status.success());
    assert!(
        text(&second.stdout).contains("(created 0, updated 0, unchanged 41)"),
        "{}",
        text(&second.stdout)
    );

    let sample = fixture("reference-sample.json");
    let out = run(command(&url, &[]).arg("import-fixtures").arg(&sample), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!("{}: backend.tag 2", sample.display())),
        "{stdout}"
    );
    assert!(stdout.contains("skipped unknown models"), "{stdout}");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "[\n  {\"model\": \"backend.tag\",,}\n]").unwrap();
    let out = run(command(&url, &[]).arg("import-fixtures").arg(&bad), None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = messages(&out.stderr);
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].starts_with(&format!("error: {}:2:", bad.display())),
        "{stderr:?}"
    );
}

#[test]
fn logs_are_json_lines_without_health_probes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, addr, started, logs) = serve(&sqlite_url(dir.path()));
    wait_ready(&mut p, addr, started);
    for _ in 0..3 {
        assert_eq!(get_status(addr, "/health/liveness"), Some(200));
    }
    assert_eq!(get_status(addr, "/api/"), Some(200));
    assert_eq!(get_status(addr, "/api/nope/"), Some(404));
    let kill = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(wait_exit(p, Duration::from_secs(10)).code(), Some(0));
    // The stderr reader ends when the process is gone.
    let lines: Vec<String> = logs.iter().collect();
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for r in &records {
        assert!(r["timestamp"].is_string() && r["level"].is_string(), "{r}");
    }
    // Paths are logged after the trailing slash is trimmed.
    let paths: Vec<&str> = records
        .iter()
        .filter(|r| r["message"] == "request")
        .filter_map(|r| r["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"/api") && paths.contains(&"/api/nope"),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.starts_with("/health")),
        "probes must stay out of the request log: {paths:?}"
    );
}

/// `DATABASE_URL=sqlite:///data/aq.db` (no `?mode=`), as an image on a fresh volume is
/// configured: the file is created, by the server and by the CLI, instead of SQLite's bare
/// "unable to open database file" (found running the image on a real node).
#[test]
fn sqlite_file_named_without_a_mode_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
    let out = run(command(&url, &[]).arg("migrate"), None);
    assert!(out.status.success(), "migrate: {}", text(&out.stderr));
    assert!(dir.path().join("fresh.db").exists());

    let url = format!("sqlite://{}", dir.path().join("served.db").display());
    let (mut proc, addr, started, _stderr) = serve(&url);
    wait_ready(&mut proc, addr, started);
    assert!(dir.path().join("served.db").exists());

    // An explicit mode is respected: read-only on a missing file is still an error.
    let url = format!(
        "sqlite://{}?mode=ro",
        dir.path().join("missing.db").display()
    );
    let out = run(command(&url, &[]).arg("migrate"), None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!dir.path().join("missing.db").exists());
}
