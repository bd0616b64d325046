//! Starts the application for a test and offers small helpers around it.

#![allow(dead_code)]

use application_quality_api::{
    build_state_with, catalogue,
    config::Config,
    db::entities::user,
    runs::launcher::{Launcher, RecordingLauncher},
    serve,
    state::AppState,
};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Default PostgreSQL for tests (trust auth on this kind of machine).
pub const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Which store the suite runs against (`TEST_BACKEND=sqlite|postgres`).
pub fn backend() -> String {
    std::env::var("TEST_BACKEND").unwrap_or_else(|_| "sqlite".into())
}

/// A fresh, empty database URL for one test: a SQLite file in a temp dir, or a new PostgreSQL
/// database created on the test server.
pub async fn fresh_database_url(dir: &tempfile::TempDir) -> String {
    if backend() == "postgres" {
        fresh_postgres_database().await
    } else {
        format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display())
    }
}

/// Creates a new PostgreSQL database and returns its URL.
pub async fn fresh_postgres_database() -> String {
    use sea_orm::{ConnectionTrait, Database};
    let admin_url = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG.into());
    let admin = Database::connect(&admin_url)
        .await
        .expect("PostgreSQL for tests (TEST_DATABASE_URL)");
    let name = format!("aq_test_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// An address of this machine that is not loopback (the first IPv4 one of an interface that
/// is up, else IPv6, link-local excluded), to reach a server as a peer from the network
/// would: connections to it carry it as their source. `None` on a machine with loopback only.
pub fn non_loopback_address() -> Option<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut found: Vec<IpAddr> = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we only read, then free once.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut cur = list;
        while !cur.is_null() {
            let ifa = &*cur;
            let up = ifa.ifa_flags & (libc::IFF_UP as libc::c_uint) != 0;
            if up && !ifa.ifa_addr.is_null() {
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        found.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        found.push(IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(list);
    }
    let usable = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local() && !v6.is_unspecified(),
    };
    found
        .iter()
        .find(|ip| ip.is_ipv4() && usable(ip))
        .or_else(|| found.iter().find(|ip| usable(ip)))
        .copied()
}

/// [`non_loopback_address`], or `None` with a note (a failure when `CI` is set: CI machines
/// have a network interface).
pub fn non_loopback_or_skip() -> Option<std::net::IpAddr> {
    let ip = non_loopback_address();
    if ip.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no non-loopback address on this machine, needed to send as a network peer"
        );
        eprintln!("note: skipping: this machine has no non-loopback address to send from");
    }
    ip
}

/// Options for [`TestApp::spawn_with`].
#[derive(Default)]
pub struct Options {
    pub env: Vec<(String, String)>,
    pub launcher: Option<Arc<dyn Launcher>>,
    pub database_url: Option<String>,
    /// Pick the executor from the configuration (`EXECUTOR`, ...) as the service does,
    /// instead of the test recorder.
    pub executor_from_config: bool,
    /// Where to listen instead of `127.0.0.1:0` (e.g. `0.0.0.0:0`, to be reached from another
    /// address of this machine).
    pub bind: Option<String>,
}

/// A running server.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub base: String,
    pub state: AppState,
    pub client: reqwest::Client,
    pub recorder: Option<Arc<RecordingLauncher>>,
    pub database_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// Starts the app on a fresh database with a recording launcher.
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    /// Starts the app with extra environment, launcher or database.
    pub async fn spawn_with(opts: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database_url = match opts.database_url {
            Some(u) => u,
            None => fresh_database_url(&dir).await,
        };
        let mut vars: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), database_url.clone()),
            ("DATABASE_AUTO_MIGRATE".into(), "true".into()),
            ("KUBERNETES".into(), "off".into()),
            (
                "SETTINGS_FILE".into(),
                dir.path().join("settings.yaml").display().to_string(),
            ),
        ];
        // The per-user run limits (`runs::quota`) are off unless a test sets them: the
        // executors of many tests never end a run (launchers standing in for a cluster, a
        // cluster without a node), so tests about something else would reach any limit. The
        // limits' own tests (`access_fair_shares.rs`) set them.
        for limit in ["RUNS_MAX_ACTIVE_PER_USER", "RUNS_MAX_QUEUED_PER_USER"] {
            if !opts.env.iter().any(|(k, _)| k == limit) {
                vars.push((limit.into(), "0".into()));
            }
        }
        vars.extend(opts.env);
        let config = Config::from_iter(vars).expect("test config");
        let (launcher, recorder): (Arc<dyn Launcher>, _) = match opts.launcher {
            Some(l) => (l, None),
            None if opts.executor_from_config => (
                application_quality_api::select_launcher(&config)
                    .await
                    .expect("executor"),
                None,
            ),
            None => {
                let r = Arc::new(RecordingLauncher::new("Not executed: test recorder."));
                (r.clone() as Arc<dyn Launcher>, Some(r))
            }
        };
        let state = build_state_with(config, launcher).await.expect("app state");
        let listener = tokio::net::TcpListener::bind(opts.bind.as_deref().unwrap_or("127.0.0.1:0"))
            .await
            .unwrap();
        let bound = listener.local_addr().unwrap();
        // Listening on every address: the tests' own requests go through loopback.
        let addr = match bound.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
                std::net::SocketAddr::from(([127, 0, 0, 1], bound.port()))
            }
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
                std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, bound.port()))
            }
            _ => bound,
        };
        let (tx, rx) = oneshot::channel::<()>();
        let serve_state = state.clone();
        tokio::spawn(async move {
            serve(serve_state, listener, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            base: format!("http://{addr}"),
            state,
            client: reqwest::Client::new(),
            recorder,
            database_url,
            shutdown: Some(tx),
            _dir: dir,
        }
    }

    /// Absolute URL of a path on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates a user directly in the database.
    pub async fn user(&self, username: &str, password: &str, staff: bool) -> user::Model {
        catalogue::users::add_user(&self.state.db, username, password, staff)
            .await
            .unwrap()
    }

    /// Obtains an access token through the API.
    pub async fn token(&self, username: &str, password: &str) -> String {
        let r = self
            .client
            .post(self.url("/api/token/"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "token for {username}");
        let body: Value = r.json().await.unwrap();
        body["access"].as_str().unwrap().to_string()
    }

    /// A user plus an access token for it.
    pub async fn user_with_token(&self, username: &str, staff: bool) -> (user::Model, String) {
        let pw = format!("{username}-password-1");
        let u = self.user(username, &pw, staff).await;
        let t = self.token(username, &pw).await;
        (u, t)
    }

    /// Marks a user inactive directly in the database (as an administrator would).
    pub async fn deactivate(&self, user: user::Model) {
        use sea_orm::{ActiveModelTrait, ActiveValue::Set, IntoActiveModel};
        let mut inactive = user.into_active_model();
        inactive.is_active = Set(false);
        inactive.update(&self.state.db).await.unwrap();
    }

    /// Loads the demo catalogue.
    pub async fn seed(&self) {
        catalogue::seed::seed(&self.state.db).await.unwrap();
        // Written behind the server's back (like the CLI): drop the cached pipeline list.
        self.state.pipeline_list.invalidate();
    }

    /// Sends a request and returns (status, JSON body or Null).
    pub async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GET with an optional bearer token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    /// POST JSON with an optional bearer token.
    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
