//! Faults under load (issue 7): the database, the Kubernetes API server and the process itself.
//!
//! - PostgreSQL stopped under load: a PRIVATE cluster (`initdb` into a temp dir, its own port,
//!   never the shared test server) is stopped with `pg_ctl stop -m fast` while clients create
//!   runs over REST and deliver `pipeline.execute` events. Every answer is a success or a 503
//!   with `Retry-After`, never a 500; no run is left without its data; once PostgreSQL is
//!   back the same server answers again by itself, and redelivered events launch exactly once.
//!   Needs the PostgreSQL server binaries (`PG_BIN`, `pg_ctl` on `PATH`, or the Debian
//!   layout); without them the test is skipped with a note, or fails under `CI` /
//!   `AQ_REQUIRE_PG_FAULTS=1`.
//! - Kubernetes API server stopped: the launcher talks to the real test API server through a
//!   TCP proxy in the test (TLS passes through untouched), and "stopping" the server is
//!   closing the proxy. The shared API server itself is never touched.
//! - SIGTERM under load: the built binary is terminated while clients keep sending; every
//!   request the server had started (proven by its `100 Continue`) completes, every response
//!   is complete, and the process exits 0.

use crate::{
    common::{Options, TestApp},
    fake_launcher::FakeLauncher,
    support_http::{RawRequest, RawResponse, ResponseReader},
};
use application_quality_api::{
    config::Config,
    db::entities::{pipeline, pipeline_run, received_event},
    k8s::{self, objects},
    runs::RunStatus,
};
use sea_orm::{ColumnTrait, ConnectionTrait, Database, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::watch,
};

const EXECUTE: &str = "org.eoepca.application-quality.events.pipeline.execute";

fn required(var: &str) -> bool {
    std::env::var_os("CI").is_some() || std::env::var(var).as_deref() == Ok("1")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it returns `Some`, failing after `limit`.
async fn within<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn parameters() -> Value {
    json!({"parameters": {"clone_subworkflow": {"clone": {
        "repo_url": "https://github.com/SpaceApplications/eoepca-aqbb-test-files",
        "repo_branch": "main"
    }}}})
}

async fn notebook_pipeline(app: &TestApp) -> i64 {
    pipeline::Entity::find()
        .filter(pipeline::Column::Name.eq("Notebook static analysis"))
        .one(&app.state.db)
        .await
        .unwrap()
        .expect("demo notebook pipeline")
        .id
}

fn execute_event(app: &TestApp, id: &str, user: &str, pipeline_id: i64) -> reqwest::RequestBuilder {
    app.client
        .post(app.url("/api/events/"))
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "faults")
        .header("ce-type", EXECUTE)
        .header("ce-user", user)
        .header("ce-subject", format!("pipelines/{pipeline_id}"))
        .body(parameters().to_string())
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A private PostgreSQL cluster in a temp dir, run as the `postgres` user when the tests run
/// as root (PostgreSQL refuses to run as root). Stopped (immediately) on drop.
struct PrivatePg {
    bin: PathBuf,
    data: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    run_as: Option<String>,
}

/// Where `pg_ctl` and `initdb` are: `PG_BIN`, then `PATH`, then the Debian/Ubuntu layout
/// (highest version first).
fn pg_bin() -> Option<PathBuf> {
    let has = |d: &Path| d.join("pg_ctl").is_file() && d.join("initdb").is_file();
    if let Some(d) = std::env::var_os("PG_BIN").map(PathBuf::from) {
        return has(&d).then_some(d);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has(&d) {
                return Some(d);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

fn output_of(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl PrivatePg {
    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(tool);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe).args(args);
                c
            }
            None => {
                let mut c = Command::new(exe);
                c.args(args);
                c
            }
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool, args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}\n{}\nlog: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("pg.log")).unwrap_or_default()
        );
    }

    /// `initdb` and start; `None` (with a note) when the binaries are missing and not required.
    fn start_new() -> Option<Self> {
        let Some(bin) = pg_bin() else {
            assert!(
                !required("AQ_REQUIRE_PG_FAULTS"),
                "no PostgreSQL server binaries (pg_ctl, initdb): install PostgreSQL or set PG_BIN; CI / AQ_REQUIRE_PG_FAULTS=1 require this test"
            );
            eprintln!(
                "skipped: no PostgreSQL server binaries (pg_ctl, initdb); set PG_BIN to run the PostgreSQL fault test"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let root = output_of("id", &["-u"]) == "0";
        let run_as = root.then(|| "postgres".to_string());
        if let Some(user) = &run_as {
            let uid: u32 = output_of("id", &["-u", user])
                .parse()
                .expect("a postgres user");
            let gid: u32 = output_of("id", &["-g", user]).parse().unwrap();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let pg = Self {
            bin,
            data: dir.path().join("data"),
            port: free_port(),
            dir,
            run_as,
        };
        let data = pg.data.display().to_string();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.start();
        Some(pg)
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("pg.log").display().to_string();
        let data = self.data.display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "60", "start",
            ],
        );
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = self
            .command("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// What one request under load got.
#[derive(Debug, Clone)]
struct Outcome {
    kind: &'static str,
    /// Event id for events.
    event_id: Option<String>,
    status: Option<u16>,
    retry_after: bool,
    json: bool,
    error: Option<String>,
    /// Run id in a success.
    run_id: Option<i64>,
    /// Sent after PostgreSQL was stopped.
    after_stop: bool,
}

async fn one_request(
    app: &TestApp,
    kind: &'static str,
    n: usize,
    token: &str,
    pipeline_id: i64,
    after_stop: bool,
) -> Outcome {
    let (req, event_id) = if kind == "rest" {
        (
            app.client
                .post(app.url(&format!("/api/pipelines/{pipeline_id}/runs/")))
                .bearer_auth(token)
                .json(&parameters()),
            None,
        )
    } else {
        let id = format!("load-{n}");
        (execute_event(app, &id, "event", pipeline_id), Some(id))
    };
    let mut o = Outcome {
        kind,
        event_id,
        status: None,
        retry_after: false,
        json: false,
        error: None,
        run_id: None,
        after_stop,
    };
    match req.timeout(Duration::from_secs(60)).send().await {
        Ok(r) => {
            o.status = Some(r.status().as_u16());
            o.retry_after = r.headers().contains_key("retry-after");
            match r.text().await {
                Ok(text) => {
                    let body: Option<Value> = serde_json::from_str(&text).ok();
                    o.json = body.is_some();
                    o.run_id = body
                        .as_ref()
                        .and_then(|b| b["id"].as_i64().or_else(|| b["run_id"].as_i64()));
                }
                Err(e) => o.error = Some(format!("body: {e}")),
            }
        }
        Err(e) => o.error = Some(e.to_string()),
    }
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load_answers_503_then_recovers_by_itself() {
    let Some(pg) = PrivatePg::start_new() else {
        return;
    };
    let admin = Database::connect(pg.url("postgres")).await.unwrap();
    admin
        .execute_unprepared("CREATE DATABASE aq_faults")
        .await
        .unwrap();
    drop(admin);
    let launcher = Arc::new(FakeLauncher::default());
    let app = Arc::new(
        TestApp::spawn_with(Options {
            database_url: Some(pg.url("aq_faults")),
            launcher: Some(launcher.clone()),
            // A short lease for runs whose launch the outage cut off (see the redeliveries).
            env: vec![("REQUEST_TIMEOUT_SECS".into(), "5".into())],
            ..Default::default()
        })
        .await,
    );
    app.seed().await;
    let (_, token) = app.user_with_token("event", false).await;
    let pipeline_id = notebook_pipeline(&app).await;

    // Load: 8 clients, half REST run creation, half pipeline.execute events.
    let stopped = Arc::new(AtomicBool::new(false));
    let finish = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (app, token, stopped, finish, counter, outcomes) = (
            app.clone(),
            token.clone(),
            stopped.clone(),
            finish.clone(),
            counter.clone(),
            outcomes.clone(),
        );
        clients.push(tokio::spawn(async move {
            let kind = if c % 2 == 0 { "rest" } else { "event" };
            while !finish.load(Ordering::SeqCst) {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let after = stopped.load(Ordering::SeqCst);
                let o = one_request(&app, kind, n, &token, pipeline_id, after).await;
                outcomes.lock().unwrap().push(o);
            }
        }));
    }
    let successes = |o: &[Outcome]| {
        o.iter()
            .filter(|o| matches!(o.status, Some(200 | 201)))
            .count()
    };
    within(
        "20 successful requests before the outage",
        Duration::from_secs(60),
        || {
            let n = successes(&outcomes.lock().unwrap());
            async move { (n >= 20).then_some(()) }
        },
    )
    .await;

    // Outage.
    let stop_started = Instant::now();
    tokio::task::spawn_blocking({
        let data = pg.data.clone();
        let cmd = pg.command(
            "pg_ctl",
            &[
                "-D",
                &data.display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
        move || {
            let mut cmd = cmd;
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "pg_ctl stop: {out:?}");
        }
    })
    .await
    .unwrap();
    stopped.store(true, Ordering::SeqCst);
    eprintln!("PostgreSQL stopped in {:?}", stop_started.elapsed());
    within(
        "10 answers of each kind while PostgreSQL is down",
        Duration::from_secs(120),
        || {
            let o = outcomes.lock().unwrap();
            let rest = o
                .iter()
                .filter(|o| o.after_stop && o.kind == "rest")
                .count();
            let ev = o
                .iter()
                .filter(|o| o.after_stop && o.kind == "event")
                .count();
            async move { (rest >= 10 && ev >= 10).then_some(()) }
        },
    )
    .await;
    finish.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }

    let all = outcomes.lock().unwrap().clone();
    let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
    for o in &all {
        let key = format!(
            "{} {} {}",
            o.kind,
            if o.after_stop { "down" } else { "up" },
            o.status.map_or("error".to_string(), |s| s.to_string())
        );
        *histogram.entry(key).or_default() += 1;
    }
    eprintln!("requests under load: {} {histogram:?}", all.len());
    let bad: Vec<&Outcome> = all
        .iter()
        .filter(|o| match o.status {
            Some(200 | 201) => o.error.is_some() || !o.json,
            Some(503) => !o.retry_after || !o.json || o.error.is_some(),
            _ => true,
        })
        .collect();
    assert!(
        bad.is_empty(),
        "answers other than a success or a 503 with Retry-After: {bad:#?}"
    );
    let unavailable = all.iter().filter(|o| o.status == Some(503)).count();
    assert!(
        all.iter()
            .filter(|o| o.after_stop && o.status == Some(503))
            .count()
            >= 10,
        "the outage was not seen"
    );

    // PostgreSQL returns; the same server recovers without a restart.
    let restarted = Instant::now();
    pg.start();
    within(
        "a run created after PostgreSQL returned",
        Duration::from_secs(60),
        || {
            let app = app.clone();
            let token = token.clone();
            async move {
                let o = one_request(&app, "rest", 0, &token, pipeline_id, false).await;
                (o.status == Some(201)).then_some(())
            }
        },
    )
    .await;
    eprintln!(
        "recovered {:?} after PostgreSQL was restarted; {unavailable} answers were 503",
        restarted.elapsed()
    );
    let o = one_request(&app, "event", 1_000_000, &token, pipeline_id, false).await;
    assert_eq!(o.status, Some(200), "{o:?}");

    // Every event that got a 503 is redelivered as a broker would, honouring Retry-After (a
    // run whose launch was cut off is resumed once its lease, REQUEST_TIMEOUT_SECS + 5 s,
    // has passed): each ends accepted, its run launched exactly once.
    let mut redelivered = 0;
    let mut retries = 0;
    for o in all
        .iter()
        .filter(|o| o.kind == "event" && o.status != Some(200))
    {
        let id = o.event_id.clone().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = execute_event(&app, &id, "event", pipeline_id)
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                break;
            }
            assert_eq!(r.status(), 503, "redelivery of {id}");
            let wait: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(Instant::now() < deadline, "redelivery of {id} still 503");
            retries += 1;
            tokio::time::sleep(Duration::from_secs(wait.min(5))).await;
        }
        redelivered += 1;
    }
    let db = &app.state.db;
    let runs = pipeline_run::Entity::find().all(db).await.unwrap();
    let events = received_event::Entity::find()
        .filter(received_event::Column::Source.eq("faults"))
        .all(db)
        .await
        .unwrap();
    // No partial run: every stored run has its parameters, inputs and CWL.
    let partial: Vec<_> = runs
        .iter()
        .filter(|r| r.inputs.is_none() || r.parameters.is_none() || r.executed_cwl.is_none())
        .map(|r| (r.id, r.status))
        .collect();
    assert!(
        partial.is_empty(),
        "runs stored without their data: {partial:?}"
    );
    // Every success names a stored run; every stored event's runs exist and were launched once.
    for o in all.iter().filter(|o| matches!(o.status, Some(200 | 201))) {
        let id = o.run_id.expect("a success names its run");
        assert!(
            runs.iter().any(|r| r.id == id),
            "run {id} of a success is missing"
        );
    }
    // Each event's run was launched, as one set of objects: a launch that reached the
    // cluster while recording it failed (PostgreSQL went down in between) is resumed after
    // its lease, and the resumed launch carries the same callback token, so the Kubernetes
    // launcher's create-or-keep objects are identical and pods of the first attempt keep
    // their access. Such repeats are bounded by the events that got a 503.
    let mut repeated = 0;
    for ev in &events {
        assert_eq!(ev.outcome, "accepted", "{ev:?}");
        let ids: Vec<i64> = serde_json::from_value(ev.run_ids.clone()).unwrap();
        assert_eq!(ids.len(), 1, "{ev:?}");
        let launches = launcher.of(ids[0]);
        assert!(launches >= 1, "event {} launched", ev.event_id);
        assert_eq!(
            launcher.tokens_of(ids[0]),
            1,
            "event {}: every launch of its run carries the same token",
            ev.event_id
        );
        let run = runs.iter().find(|r| r.id == ids[0]).unwrap();
        assert!(
            run.launched_at.is_some(),
            "run {} recorded as launched",
            run.id
        );
        repeated += launches - 1;
    }
    let event_503 = all
        .iter()
        .filter(|o| o.kind == "event" && o.status != Some(200))
        .count();
    assert!(
        repeated <= event_503,
        "{repeated} repeated launches, {event_503} event 503s"
    );
    // Runs left behind by REST requests that got a 503 after their row was written are
    // bounded by those 503s (and are never launched twice).
    let event_runs: Vec<i64> = events
        .iter()
        .flat_map(|e| serde_json::from_value::<Vec<i64>>(e.run_ids.clone()).unwrap())
        .collect();
    let rest_503 = all
        .iter()
        .filter(|o| o.kind == "rest" && o.status == Some(503))
        .count();
    let orphans = runs
        .iter()
        .filter(|r| !event_runs.contains(&r.id) && r.launched_at.is_none())
        .count();
    assert!(
        orphans <= rest_503,
        "{orphans} unlaunched REST runs, {rest_503} REST 503s"
    );
    assert!(runs.iter().all(|r| launcher.tokens_of(r.id) <= 1));
    eprintln!(
        "runs {}, events {}, redelivered {redelivered} ({retries} retries after 503), resumed launches {repeated}, unlaunched REST runs left by 503s {orphans}",
        runs.len(),
        events.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Kubernetes API server

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward to the API server.
    Up,
    /// "Stopped": close new connections at once, and every open one.
    Refuse,
    /// "Hung": accept and never answer (a partitioned or wedged server).
    Hang,
}

/// A TCP proxy to the API server that can be "stopped" (TLS passes through untouched).
struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Mode::Up);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let mut rx = rx.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let current = *rx.borrow_and_update();
                    match current {
                        Mode::Refuse => return,
                        Mode::Hang => {
                            // Hold the connection silently until the mode changes.
                            let _ = rx.changed().await;
                            return;
                        }
                        Mode::Up => {}
                    }
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.wait_for(|m| *m != Mode::Up) => {}
                    }
                    let _ = client.shutdown().await;
                });
            }
        });
        Self { addr, mode }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

fn kube_configured() -> bool {
    if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()) {
        return true;
    }
    assert!(
        !required("AQ_REQUIRE_KUBE"),
        "KUBECONFIG is not set, but CI / AQ_REQUIRE_KUBE=1 require the Kubernetes tests: run `scripts/kube.sh` and export what it prints"
    );
    eprintln!("skipped: KUBECONFIG is not set (start a local API server with scripts/kube.sh)");
    false
}

#[tokio::test]
async fn kubernetes_api_down_gives_503_and_redelivery_launches_exactly_once() {
    use k8s_openapi::api::{batch::v1::Job, core::v1::Namespace};
    use kube::{
        Api, Client,
        api::{DeleteParams, ListParams, PostParams},
    };
    if !kube_configured() {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let admin_config = k8s::kube_config_from_env().await.unwrap().unwrap();
    let admin = Client::try_from(admin_config.clone()).unwrap();
    let ns_name = format!("aqf-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": ns_name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    let upstream = format!(
        "{}:{}",
        admin_config.cluster_url.host().unwrap(),
        admin_config.cluster_url.port_u16().unwrap_or(443)
    );
    let proxy = Proxy::start(upstream).await;
    let mut proxied = admin_config.clone();
    proxied.cluster_url = format!("https://127.0.0.1:{}", proxy.addr.port())
        .parse()
        .unwrap();
    let env = vec![
        ("AQBB_NAMESPACE".to_string(), ns_name.clone()),
        ("KUBE_TIMEOUT_MS".to_string(), "2000".to_string()),
    ];
    let config = Config::from_iter(env.clone()).unwrap();
    let launcher = Arc::new(k8s::launcher_with(proxied, &config).unwrap());
    launcher
        .check()
        .await
        .expect("the API server through the proxy");
    let app = TestApp::spawn_with(Options {
        env,
        launcher: Some(launcher.clone()),
        ..Default::default()
    })
    .await;
    app.seed().await;
    app.user("runner", "runner-password-1", false).await;
    let pipeline_id = notebook_pipeline(&app).await;
    let jobs: Api<Job> = Api::namespaced(admin.clone(), &ns_name);
    let job_count = || async {
        let selector = format!("{}={}", objects::MANAGED_BY_LABEL, objects::MANAGED_BY);
        jobs.list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
            .len()
    };

    // The API server "stops".
    proxy.set(Mode::Refuse);
    let started = Instant::now();
    let r = execute_event(&app, "k8s-down-1", "runner", pipeline_id)
        .send()
        .await
        .unwrap();
    let down_latency = started.elapsed();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        r.headers().get("ce-type").is_none(),
        "an error is not a reply event"
    );
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Kubernetes API is unavailable"),
        "{body}"
    );
    let runs = pipeline_run::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.status, RunStatus::Failed);
    let message = run.status_message.clone().unwrap();
    assert!(
        message.contains("Kubernetes API unavailable") && message.contains("redelivered"),
        "{message}"
    );
    assert_eq!(job_count().await, 0);
    // A redelivery while still down: 503 again, still one run.
    let r = execute_event(&app, "k8s-down-1", "runner", pipeline_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));

    // A hung API server (connections accepted, never answered) is bounded by KUBE_TIMEOUT_MS.
    proxy.set(Mode::Hang);
    let started = Instant::now();
    let r = execute_event(&app, "k8s-down-1", "runner", pipeline_id)
        .send()
        .await
        .unwrap();
    let hang_latency = started.elapsed();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        hang_latency < Duration::from_secs(10),
        "a hung API server held the delivery for {hang_latency:?}"
    );
    assert_eq!(job_count().await, 0);

    // It comes back; the broker redelivers the same event.
    proxy.set(Mode::Up);
    let r = execute_event(&app, "k8s-down-1", "runner", pipeline_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["ce-type"]
            .to_str()
            .unwrap()
            .ends_with(".duplicate"),
        "{:?}",
        r.headers()
    );
    let reply: Value = r.json().await.unwrap();
    assert_eq!(reply["run_id"].as_i64(), Some(run.id), "{reply}");
    assert_eq!(job_count().await, 1);
    let relaunched = pipeline_run::Entity::find_by_id(run.id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(relaunched.status, RunStatus::Running);
    assert!(relaunched.launched_at.is_some());
    // Further redeliveries change nothing.
    for _ in 0..3 {
        let r = execute_event(&app, "k8s-down-1", "runner", pipeline_id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(job_count().await, 1);
    assert_eq!(
        pipeline_run::Entity::find()
            .all(&app.state.db)
            .await
            .unwrap()
            .len(),
        1
    );
    eprintln!(
        "503 while the API server was down after {down_latency:?}, while it hung after {hang_latency:?}"
    );
    let _ = namespaces.delete(&ns_name, &DeleteParams::default()).await;
}

// ---------------------------------------------------------------------------------------------
// SIGTERM

const BIN: &str = env!("CARGO_BIN_EXE_application-quality-api");

/// The server process, killed if the test fails before it exits.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What one request of the SIGTERM test got.
#[derive(Debug)]
struct Sent {
    what: &'static str,
    /// The server started it (`100 Continue`) before SIGTERM was sent.
    started_before_term: bool,
    result: Result<RawResponse, String>,
}

fn load_request(i: usize) -> (&'static str, RawRequest) {
    match i % 4 {
        0 => (
            "health event",
            RawRequest::new("POST", "/api/events/")
                .header("ce-specversion", "1.0")
                .header("ce-id", format!("term-{i}"))
                .header("ce-source", "term")
                .header("ce-type", "org.eoepca.application-quality.probes.health")
                .header("expect", "100-continue")
                .json_text("{}"),
        ),
        1 => (
            "rejected execute event",
            RawRequest::new("POST", "/api/events/")
                .header("ce-specversion", "1.0")
                .header("ce-id", format!("term-{i}"))
                .header("ce-source", "term")
                .header("ce-type", EXECUTE)
                .header("ce-user", "nobody")
                .header("ce-subject", "pipelines/1")
                .header("expect", "100-continue")
                .json_text(r#"{"parameters": {}}"#),
        ),
        2 => (
            "login",
            RawRequest::new("POST", "/api/token/")
                .header("expect", "100-continue")
                .json_text(r#"{"username": "nobody", "password": "not-the-password"}"#),
        ),
        _ => ("openapi", RawRequest::new("GET", "/api/openapi.json")),
    }
}

/// The response is complete and valid: a final status below 500, a body of the advertised
/// length (checked by the reader) that is JSON.
fn valid(r: &RawResponse) -> bool {
    (200..500).contains(&r.status) && r.json().is_some()
}

/// Sends one request on a new connection, honouring `Expect: 100-continue`. Returns whether
/// the server started it (its `100 Continue` came) before SIGTERM was sent. With `hold`, the
/// body is sent only once `hold` turns true, and `held` counts the requests waiting so.
async fn send_one(
    addr: SocketAddr,
    req: &RawRequest,
    term_sent: &AtomicBool,
    hold: Option<(&watch::Receiver<bool>, &AtomicUsize)>,
) -> Option<(bool, Result<RawResponse, String>)> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (rd, mut wr) = stream.into_split();
    let mut reader = ResponseReader::new(rd);
    let expect = req
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(b"expect"));
    let bytes = req.to_bytes(true);
    let head_len = bytes.len() - req.body.len();
    let mut started = false;
    if expect {
        if let Err(e) = wr.write_all(&bytes[..head_len]).await {
            return Some((false, Err(format!("write: {e}"))));
        }
        let first = match reader.next().await {
            Ok(r) => r,
            Err(e) => return Some((false, Err(e.to_string()))),
        };
        if first.status != 100 {
            // Answered without reading the body.
            return Some((false, Ok(first)));
        }
        started = !term_sent.load(Ordering::SeqCst);
        if let Some((gate, held)) = hold {
            held.fetch_add(1, Ordering::SeqCst);
            let mut gate = gate.clone();
            let _ = gate.wait_for(|go| *go).await;
        }
        if let Err(e) = wr.write_all(&bytes[head_len..]).await {
            return Some((started, Err(format!("write body: {e}"))));
        }
    } else if let Err(e) = wr.write_all(&bytes).await {
        return Some((false, Err(format!("write: {e}"))));
    }
    Some((started, reader.next().await.map_err(|e| e.to_string())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drops_no_in_flight_request_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new(BIN)
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("term.db").display()),
        )
        .env("KUBERNETES", "off")
        .env("LOG_FORMAT", "json")
        .env("PORT", port.to_string())
        .env("BIND_ADDRESS", "127.0.0.1")
        .env("LOGIN_MAX_FAILURES_PER_USER", "0")
        .env("LOGIN_MAX_FAILURES_PER_ADDRESS", "0")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (log_tx, mut log_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if log_tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut child = KillOnDrop(Some(child));
    within("the server is ready", Duration::from_secs(30), || async {
        let r = crate::support_http::exchange(addr, &RawRequest::new("GET", "/health/readiness"))
            .await
            .ok()?;
        (r.status == 200).then_some(())
    })
    .await;

    let term_sent = Arc::new(AtomicBool::new(false));
    let (release_tx, release_rx) = watch::channel(false);
    let results = Arc::new(Mutex::new(Vec::<Sent>::new()));
    // Holders: requests the server has started (100 Continue) whose bodies are sent only
    // after the server logged that it is shutting down.
    let held = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for h in 0..4 {
        let (results, term_sent, release_rx, held) = (
            results.clone(),
            term_sent.clone(),
            release_rx.clone(),
            held.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (what, req) = load_request(h * 4);
            let (started, result) = send_one(addr, &req, &term_sent, Some((&release_rx, &held)))
                .await
                .expect("connect");
            results.lock().unwrap().push(Sent {
                what,
                started_before_term: started,
                result,
            });
        }));
    }
    // Hammers: send continuously, one connection per request, until the server is gone.
    for c in 0..12 {
        let (results, term_sent) = (results.clone(), term_sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            loop {
                let (what, req) = load_request(i);
                i += 12;
                let Some((started, result)) = send_one(addr, &req, &term_sent, None).await else {
                    return; // no longer accepting: the server is gone
                };
                results.lock().unwrap().push(Sent {
                    what,
                    started_before_term: started,
                    result,
                });
            }
        }));
    }
    within("4 held requests in flight", Duration::from_secs(30), || {
        let n = held.load(Ordering::SeqCst);
        async move { (n == 4).then_some(()) }
    })
    .await;
    // Load for a while: at least 300 answers before SIGTERM.
    within("300 answers under load", Duration::from_secs(60), || {
        let n = results.lock().unwrap().len();
        async move { (n >= 300).then_some(()) }
    })
    .await;
    let before_term = results.lock().unwrap().len();
    term_sent.store(true, Ordering::SeqCst);
    let pid = child.0.as_ref().unwrap().id().to_string();
    let term_at = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // Release the held requests only once the server acts on the signal.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let line = tokio::time::timeout_at(deadline.into(), log_rx.recv())
            .await
            .expect("no shutdown log line after SIGTERM")
            .expect("stderr closed before the shutdown log line");
        if line.contains("shutdown signal received") {
            break;
        }
    }
    release_tx.send_replace(true);
    let status = within(
        "the server exits after SIGTERM",
        Duration::from_secs(15),
        || {
            let status = child.0.as_mut().unwrap().try_wait().unwrap();
            async move { status }
        },
    )
    .await;
    let exit_after = term_at.elapsed();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("a client hung")
            .unwrap();
    }
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );

    let all = results.lock().unwrap();
    let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
    for s in all.iter() {
        let key = match &s.result {
            Ok(r) => r.status.to_string(),
            Err(_) => "no response".to_string(),
        };
        *histogram.entry(key).or_default() += 1;
    }
    let in_flight = all.iter().filter(|s| s.started_before_term).count();
    let held = all
        .iter()
        .filter(|s| s.started_before_term && s.what == "health event" && s.result.is_ok())
        .count();
    eprintln!(
        "SIGTERM after {before_term} answers; {} requests in all, {in_flight} started before SIGTERM; exit after {exit_after:?}; {histogram:?}",
        all.len()
    );
    // Every response is complete and valid (the reader checks the framing).
    let broken: Vec<String> = all
        .iter()
        .filter_map(|s| match &s.result {
            Ok(r) if !valid(r) => Some(format!(
                "{}: {} {:.200}",
                s.what,
                r.status,
                String::from_utf8_lossy(&r.body)
            )),
            Err(e) if e.contains("Truncated") || e.contains("Malformed") => {
                Some(format!("{}: {e}", s.what))
            }
            _ => None,
        })
        .collect();
    assert!(
        broken.is_empty(),
        "incomplete or failed responses: {broken:#?}"
    );
    // Every request the server had started before SIGTERM got its response.
    let dropped: Vec<String> = all
        .iter()
        .filter(|s| s.started_before_term && s.result.is_err())
        .map(|s| format!("{}: {:?}", s.what, s.result.as_ref().err()))
        .collect();
    assert!(
        dropped.is_empty(),
        "in-flight requests dropped: {dropped:#?}"
    );
    assert!(
        held >= 4,
        "the 4 held requests completed after SIGTERM ({held})"
    );
    assert!(before_term >= 300);
}
