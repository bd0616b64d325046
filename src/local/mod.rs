//! The local runner: runs execute on this machine as cwltool child processes (the engine
//! Calrissian is built on), one per run, in a working directory of their own under
//! `LOCAL_DATA_DIR`. It is the embedded default when no cluster is configured and cwltool is
//! installed.
//!
//! - **Queue**: at most `LOCAL_CONCURRENCY` runs execute at once, and at most
//!   `RUNS_MAX_ACTIVE_PER_USER` of one user's; more wait (`starting`, with a message), users
//!   taking turns ([`queue`]). How many may wait per user is checked when a run is requested
//!   (`runs::quota`).
//! - **Lifecycle**: `starting` -> `running` when the process starts -> `succeeded` | `failed`
//!   from its exit, through [`runs::finish`] like the Kubernetes path; `killed` by cancel,
//!   which stops the whole process group (see [`stop_group`]).
//! - **Time limit**: `AQBB_ACTIVE_DEADLINE_SECS`, as for Jobs.
//! - **Results**: tools post job reports through the authenticated callback endpoint with the
//!   run's token (`AQ_CALLBACK_TOKEN`), as pods do; cwltool's output object and the process
//!   tree's usage are stored with the final status.
//! - **Restarts**: runs left `starting`/`running` by an earlier process of this runner are
//!   failed with a message saying so (their processes die with the service; leftovers are
//!   killed). Resuming is not attempted: a half-run pipeline may have posted some reports.
//! - **Retention**: working directories are removed `AQBB_SUCCEEDED_RETENTION_SECS` /
//!   `AQBB_FAILED_RETENTION_SECS` after their run ended (swept when runs end and at start-up).

pub mod egress;
pub mod engine;
pub mod process;
pub mod queue;
pub mod sandbox;

use crate::{
    config::Config,
    db::entities::pipeline_run,
    runs::{
        self, RunResults, RunService, RunServiceInner, RunStatus,
        launcher::{JobObservation, LaunchError, LaunchOutcome, LaunchRequest, Launcher, Waiting},
    },
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use engine::{Containers, Engine, RunDir};
use process::GroupHandle;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, OnceLock, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

/// The namespace recorded for local runs (not a DNS label, so it never names a real one).
pub const NAMESPACE: &str = "@local";

/// How long cwltool gets to stop its tools and containers before the group is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// The most of a run's log the API serves (its end).
pub const LOG_SERVE_MAX: u64 = 4 * 1024 * 1024;

/// `LOCAL_DATA_DIR`, absolute (relative paths are taken from the working directory at start).
pub fn data_dir(config: &Config) -> PathBuf {
    let dir = PathBuf::from(&config.local.local_data_dir);
    if dir.is_absolute() {
        return dir;
    }
    std::env::current_dir().map(|d| d.join(&dir)).unwrap_or(dir)
}

/// Where the log of local run `run_id` is kept (until its retention ends).
pub fn log_path(config: &Config, run_id: i64) -> PathBuf {
    RunDir::new(&data_dir(config), run_id).log()
}

/// Job name recorded for a local run (never the name of a Kubernetes Job of ours).
fn job_name(run_id: i64) -> String {
    format!("local-{run_id}")
}

/// Why the run's process stopped, when we stopped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancelled,
    TimedOut,
    Shutdown,
}

/// A run this process has accepted, from launch to its end.
struct Active {
    req: LaunchRequest,
    group: GroupHandle,
    stop: Mutex<Option<Stop>>,
    /// `true` once the run's task has finished.
    done: watch::Sender<bool>,
}

impl Active {
    /// Records why the run is being stopped (the first reason wins).
    fn request_stop(&self, why: Stop) {
        if let Ok(mut stop) = self.stop.lock()
            && stop.is_none()
        {
            *stop = Some(why);
        }
    }

    fn stop_reason(&self) -> Option<Stop> {
        self.stop.lock().ok().and_then(|s| *s)
    }
}

/// Runs pipelines with cwltool on this machine (cheap to clone: one shared core, which the
/// supervising tasks hold too).
#[derive(Clone)]
pub struct LocalLauncher(Arc<Inner>);

struct Inner {
    engine: Engine,
    data_dir: PathBuf,
    slots: Arc<Semaphore>,
    concurrency: usize,
    /// Runs whose launch was recorded, by user; one dispatcher hands them slots, users taking
    /// turns.
    fair: Mutex<queue::FairQueue>,
    /// Something changed for the dispatcher: a run was queued, or one ended.
    wake: Notify,
    dispatching: AtomicBool,
    deadline: Option<Duration>,
    succeeded_retention: Duration,
    failed_retention: Duration,
    configured_callback: Option<String>,
    /// `REPO_FILE_ROOTS`: the only places `file://` repositories are bound from.
    file_roots: Vec<PathBuf>,
    /// The service's own files, hidden from runs whose repository contains them.
    hidden: Vec<PathBuf>,
    callback: OnceLock<String>,
    /// Where this process listens: the sandbox's callback relay connects there.
    listening: OnceLock<SocketAddr>,
    service: OnceLock<Weak<RunServiceInner>>,
    active: Mutex<HashMap<i64, Arc<Active>>>,
    sweeping: AtomicBool,
    /// The cache of cwltool's parsed schemas (see [`schema_cache_path`]), and whether it is
    /// being (or was) written.
    schema_cache: PathBuf,
    schema_cache_started: AtomicBool,
    /// Held while the sandbox's shared files are checked and written: launches never replace
    /// them under one another.
    shared_files: Arc<Mutex<()>>,
    started_at: DateTime<Utc>,
}

impl LocalLauncher {
    /// A runner with the given engine and the settings of `config`. Touches nothing yet.
    pub fn new(engine: Engine, config: &Config) -> Self {
        Self(Arc::new(Inner::new(engine, config)))
    }
}

impl Inner {
    fn new(mut engine: Engine, config: &Config) -> Self {
        let data_dir = data_dir(config);
        engine.sandbox = engine.sandbox.map(|s| s.for_data_dir(&data_dir));
        let concurrency = config.local.local_concurrency();
        let schema_cache = schema_cache_path(&data_dir, &engine);
        let secs = |s: i32| Duration::from_secs(s.max(0) as u64);
        Self {
            engine,
            data_dir,
            slots: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            fair: Mutex::new(queue::FairQueue::new(
                config.runs.runs_max_active_per_user as usize,
            )),
            wake: Notify::new(),
            dispatching: AtomicBool::new(false),
            deadline: (config.runs.aqbb_active_deadline_secs > 0)
                .then(|| Duration::from_secs(config.runs.aqbb_active_deadline_secs as u64)),
            succeeded_retention: secs(config.runs.aqbb_succeeded_retention_secs),
            failed_retention: secs(config.runs.aqbb_failed_retention_secs),
            configured_callback: config.local.local_callback_url.clone(),
            file_roots: config.runs.repo_file_roots.clone(),
            hidden: service_files(config, &self::data_dir(config)),
            callback: OnceLock::new(),
            listening: OnceLock::new(),
            service: OnceLock::new(),
            active: Mutex::new(HashMap::new()),
            sweeping: AtomicBool::new(false),
            schema_cache,
            schema_cache_started: AtomicBool::new(false),
            shared_files: Arc::new(Mutex::new(())),
            started_at: Utc::now(),
        }
    }

    fn service(&self) -> Option<RunService> {
        self.service.get().and_then(RunService::upgrade)
    }

    /// Writes the schema cache in the background after the first launch (which has written
    /// the sandbox's `init.py`) when it does not exist yet: that run starts cold, the following
    /// ones read it. About a second of CPU, once per installation; never on a request's path.
    fn ensure_schema_cache(&self) {
        let Some(sandbox) = self.engine.sandbox.clone().filter(|s| s.in_process) else {
            return;
        };
        if self.schema_cache_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let (init, out) = (
            self.data_dir.join("sandbox").join("init.py"),
            self.schema_cache.clone(),
        );
        tokio::task::spawn_blocking(move || {
            if out.exists() {
                return;
            }
            match sandbox.write_schema_cache(&init, &out) {
                Ok(()) => {
                    tracing::debug!(path = %out.display(), "local runner: cwltool's schemas cached")
                }
                // Runs still work, parsing the schemas themselves.
                Err(e) => {
                    tracing::warn!(error = %e, "local runner: cannot cache cwltool's schemas")
                }
            }
        });
    }

    fn entry(&self, run_id: i64) -> Option<Arc<Active>> {
        self.active.lock().ok()?.get(&run_id).cloned()
    }

    /// Writes the run's files, owner-only: directories `0700`, files `0600`, whatever the
    /// umask. In a sandbox run by root they belong to the run's own user. Blocking file I/O, so
    /// it runs off the async threads.
    async fn prepare(&self, req: &LaunchRequest) -> Result<(), LaunchError> {
        let dir = RunDir::new(&self.data_dir, req.run_id);
        let cwl = req.cwl.clone();
        let params = serde_json::to_vec_pretty(&req.params).unwrap_or_default();
        let run_id = req.run_id;
        let owner = self
            .engine
            .sandbox
            .as_ref()
            .and_then(|s| s.run_uid(req.run_id));
        let shared = self
            .engine
            .sandbox
            .is_some()
            .then(|| self.data_dir.join("sandbox"));
        let shared_lock = self.shared_files.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
            let mkdir = |p: &Path| {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(p)
            };
            // The mode is set again after creation: the umask may have taken bits from it.
            let write = |p: &Path, data: &[u8], mode: u32| -> std::io::Result<()> {
                use std::{io::Write, os::unix::fs::PermissionsExt};
                let _ = std::fs::remove_file(p);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(p)?;
                file.set_permissions(std::fs::Permissions::from_mode(mode))?;
                file.write_all(data)
            };
            // A relaunch (a redelivered event) starts from a clean directory.
            if dir.root.exists() {
                std::fs::remove_dir_all(&dir.root)?;
            }
            mkdir(&dir.root)?;
            mkdir(&dir.tmp())?;
            mkdir(&dir.out())?;
            write(&dir.cwl(), cwl.as_bytes(), 0o600)?;
            write(&dir.params(), &params, 0o600)?;
            if let Some(uid) = owner {
                for p in [
                    dir.root.clone(),
                    dir.tmp(),
                    dir.out(),
                    dir.cwl(),
                    dir.params(),
                ] {
                    std::os::unix::fs::chown(&p, Some(uid), Some(uid))?;
                }
            }
            if let Some(shared) = shared {
                // The sandbox's own files, readable by every run's user (the service's data
                // directory above them stays owner-only). Written only when missing or
                // different (another version of the service): replacing a file while another
                // run's bubblewrap binds it fails that run ("Can't bind mount ... (deleted)").
                // Replaced by rename, so nothing ever sees half a file.
                let _guard = shared_lock.lock().unwrap_or_else(|e| e.into_inner());
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o711)
                    .create(&shared)?;
                for (name, content, mode) in [
                    ("init.py", sandbox::INIT, 0o644),
                    ("gitconfig", sandbox::GITCONFIG, 0o644),
                    ("container", sandbox::CONTAINER, 0o755),
                ] {
                    let path = shared.join(name);
                    let current = std::fs::metadata(&path).ok().and_then(|m| {
                        use std::os::unix::fs::PermissionsExt;
                        (m.permissions().mode() & 0o7777 == mode)
                            .then(|| std::fs::read(&path).ok())
                            .flatten()
                    });
                    if current.as_deref() == Some(content.as_bytes()) {
                        continue;
                    }
                    let tmp = shared.join(format!(".{name}.{run_id}"));
                    write(&tmp, content.as_bytes(), mode)?;
                    std::fs::rename(&tmp, path)?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| LaunchError::Unavailable(format!("preparing the run: {e}")))?
        .map_err(|e| {
            LaunchError::Unavailable(format!(
                "cannot write the run's working directory under {}: {e}",
                self.data_dir.display()
            ))
        })
    }

    /// Fails the runs an earlier process of this runner left in flight, killing what is left
    /// of their processes, then sweeps expired working directories.
    async fn recover(self: Arc<Self>, service: RunService) {
        let stale = pipeline_run::Entity::find()
            .filter(pipeline_run::Column::K8sNamespace.eq(NAMESPACE))
            .filter(
                pipeline_run::Column::Status
                    .is_in([RunStatus::Starting.as_str(), RunStatus::Running.as_str()]),
            )
            .filter(pipeline_run::Column::LaunchedAt.lt(self.started_at))
            .all(&service.db)
            .await;
        let stale = match stale {
            Ok(stale) => stale,
            Err(e) => {
                tracing::warn!(error = %e, "local runner: cannot look for interrupted runs");
                return;
            }
        };
        for run in stale {
            let dir = RunDir::new(&self.data_dir, run.id);
            if let Some(pgid) = std::fs::read_to_string(dir.pid())
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
                .filter(|p| *p > 1)
                && group_belongs_to(pgid, &dir.root)
            {
                // SAFETY: plain syscall on a group whose members work in this run's directory.
                unsafe {
                    libc::killpg(pgid, libc::SIGKILL);
                }
            }
            let obs = interrupted(Utc::now());
            match runs::finish(&service, run.id, &obs, RunResults::default()).await {
                Ok(_) => tracing::warn!(run_id = run.id, "local runner: interrupted run failed"),
                Err(e) => {
                    tracing::warn!(run_id = run.id, error = %e, "local runner: cannot fail interrupted run")
                }
            }
        }
        self.sweep(&service).await;
    }

    fn fair(&self) -> std::sync::MutexGuard<'_, queue::FairQueue> {
        self.fair.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands execution slots to recorded runs, users taking turns ([`queue::FairQueue`]).
    async fn dispatch(self: Arc<Self>) {
        if self.dispatching.swap(true, Ordering::AcqRel) {
            return;
        }
        loop {
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                return;
            };
            // `notify_one` keeps a wake-up for a dispatcher that is not waiting yet, so none
            // is lost between the look and the wait.
            let (user, run_id) = loop {
                if let Some(next) = self.fair().take_next() {
                    break next;
                }
                self.wake.notified().await;
            };
            let Some(entry) = self.entry(run_id) else {
                self.fair().finished(user);
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                this.clone().execute(run_id, entry.clone(), permit).await;
                this.fair().finished(user);
                this.wake.notify_one();
                if let Ok(mut a) = this.active.lock()
                    && a.get(&run_id).is_some_and(|e| Arc::ptr_eq(e, &entry))
                {
                    a.remove(&run_id);
                }
                let _ = entry.done.send(true);
                if let Some(service) = this.service() {
                    this.sweep(&service).await;
                }
            });
        }
    }

    /// Executes one run in its slot: runs cwltool, records the end.
    async fn execute(
        self: Arc<Self>,
        run_id: i64,
        entry: Arc<Active>,
        permit: OwnedSemaphorePermit,
    ) {
        let req = entry.req.clone();
        let Some(service) = self.service() else {
            return;
        };
        if entry.stop_reason().is_some() {
            return;
        }
        match runs::mark_running(&service, run_id).await {
            Ok(true) => {}
            Ok(false) => return, // cancelled while it waited
            Err(e) => {
                tracing::warn!(run_id, error = %e, "local runner: cannot mark the run running");
                return;
            }
        }
        let dir = RunDir::new(&self.data_dir, run_id);
        let started = Utc::now();
        let exit = self.spawn_and_wait(&req, &dir, &entry).await;
        drop(permit);
        let finished = Utc::now();
        let stop = entry.stop_reason();
        if matches!(stop, Some(Stop::Cancelled)) {
            // `runs::cancel` records `killed`; nothing else to say about this run.
            return;
        }
        let (obs, results) = self
            .outcome(&dir, &req.callback_token, exit, stop, started, finished)
            .await;
        if let Err(e) = runs::finish(&service, run_id, &obs, results).await {
            tracing::error!(run_id, error = %e, "local runner: cannot record the end of the run");
        }
        tracing::info!(
            run_id,
            status = obs.status.as_str(),
            elapsed_ms = (finished - started).num_milliseconds(),
            "local run ended"
        );
    }

    /// Starts cwltool and waits for it within the time limit; `Err` when it could not start.
    async fn spawn_and_wait(
        &self,
        req: &LaunchRequest,
        dir: &RunDir,
        entry: &Arc<Active>,
    ) -> Result<process::Exit, String> {
        let callback_port = self
            .callback
            .get()
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.port_or_known_default())
            .unwrap_or(80);
        let mut env = engine::child_env(&self.engine, &req.callback_token, callback_port);
        if self.engine.images_dir.is_some() {
            // The run's `file://` repositories, which its steps clone from inside their images
            // too (bound read-only there, as in the sandbox), one per line.
            let repos: Vec<String> = file_repositories(&req.params, &self.file_roots)
                .iter()
                .filter_map(|p| p.to_str().filter(|s| !s.contains('\n')).map(str::to_string))
                .collect();
            env.push((sandbox::REPOSITORIES_VAR.into(), repos.join("\n").into()));
            // What a Kubernetes step pod has (the run's Secret): the reference's catalogue's
            // stand-in images use them to authenticate its job reports.
            let server_url = req.params.get("server_url").and_then(|v| v.as_str());
            env.extend(
                [
                    (
                        "AQ_CALLBACK_URL",
                        server_url.unwrap_or_default().to_string(),
                    ),
                    ("AQ_PIPELINE_ID", req.pipeline_id.to_string()),
                    ("AQ_RUN_ID", req.run_id.to_string()),
                ]
                .map(|(k, v)| (k.into(), v.into())),
            );
        }
        let args = engine::cwltool_args(&self.engine, dir);
        // The run's ways out live as long as this wait.
        let mut _net = None;
        let mut cmd = match &self.engine.sandbox {
            None => {
                let mut cmd = std::process::Command::new(&self.engine.cwltool);
                cmd.args(args);
                cmd
            }
            Some(sandbox) => {
                let sockets = self.data_dir.join("sandbox").join(req.run_id.to_string());
                let service = self.service_addr();
                let net =
                    egress::RunNet::open(&sockets, service, egress::allowed_hosts(&req.params))
                        .map_err(|e| {
                            format!(
                                "cannot open the sandbox's sockets in {}: {e}",
                                sockets.display()
                            )
                        })?;
                let mut argv = vec![self.engine.cwltool.clone().into_os_string()];
                argv.extend(args);
                let spec = sandbox::RunSpec {
                    run_id: req.run_id,
                    run_dir: dir.root.clone(),
                    scratch: dir.tmp(),
                    init_file: self.data_dir.join("sandbox").join("init.py"),
                    gitconfig_file: self.data_dir.join("sandbox").join("gitconfig"),
                    callback_socket: net.callback_socket.clone(),
                    egress_socket: net.egress_socket.clone(),
                    callback_port,
                    repositories: file_repositories(&req.params, &self.file_roots),
                    hidden: self.hidden.clone(),
                    argv,
                    schema_cache: Some(self.schema_cache.clone()).filter(|p| p.is_file()),
                    images: self
                        .engine
                        .images_dir
                        .clone()
                        .map(|store| (self.data_dir.join("sandbox").join("container"), store)),
                };
                let mut cmd = std::process::Command::new(&sandbox.bwrap);
                cmd.args(sandbox.args(&spec));
                _net = Some(net);
                cmd
            }
        };
        cmd.current_dir(&dir.root)
            .env_clear()
            .envs(env)
            .stdin(std::process::Stdio::null());
        let (group, output, log, pid_file) =
            (entry.group.clone(), dir.output(), dir.log(), dir.pid());
        // File opening and the wait both block: one dedicated thread does them.
        let mut waiter = tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::OpenOptionsExt;
            // Opened here and inherited: the run writes them whatever user it runs as.
            let open = |p: PathBuf| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(p)
            };
            cmd.stdout(open(output)?).stderr(open(log)?);
            process::run(cmd, &group, Some(pid_file))
        });
        let joined = match self.deadline {
            Some(limit) => match tokio::time::timeout(limit, &mut waiter).await {
                Ok(joined) => joined,
                Err(_) => {
                    entry.request_stop(Stop::TimedOut);
                    stop_group(&entry.group, self.engine.containers).await;
                    waiter.await
                }
            },
            None => waiter.await,
        };
        match joined {
            Ok(Ok(exit)) => Ok(exit),
            Ok(Err(e)) => Err(match &self.engine.sandbox {
                Some(s) => format!("cannot start the sandbox ({}): {e}", s.bwrap.display()),
                None => format!(
                    "cannot start cwltool ({}): {e}",
                    self.engine.cwltool.display()
                ),
            }),
            Err(e) => Err(format!("the run's supervisor failed: {e}")),
        }
    }

    /// The address the sandbox's callback relay connects to: where this process listens, on
    /// loopback when it listens on every address.
    fn service_addr(&self) -> SocketAddr {
        let addr = self
            .listening
            .get()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 80)));
        match addr.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::from(([127, 0, 0, 1], addr.port()))
            }
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
            }
            _ => addr,
        }
    }

    /// The run's end as an observation plus its results.
    async fn outcome(
        &self,
        dir: &RunDir,
        token: &str,
        exit: Result<process::Exit, String>,
        stop: Option<Stop>,
        started: DateTime<Utc>,
        finished: DateTime<Utc>,
    ) -> (JobObservation, RunResults) {
        let failed = |message: String| JobObservation {
            status: RunStatus::Failed,
            message: Some(message),
            completion_time: Some(finished),
        };
        let mut exit = match exit {
            Ok(exit) => exit,
            Err(message) => return (failed(message), RunResults::default()),
        };
        let mut schemas = None;
        if self.engine.sandbox.is_some()
            && let Some((usage, cwl_schemas)) =
                sandbox_usage(&dir.root.join(sandbox::USAGE_FILE)).await
        {
            // Bubblewrap's monitor does not reap the sandbox's PID 1, so the usage of the
            // run's process tree comes from the sandbox's first process instead.
            exit.usage = usage;
            schemas = cwl_schemas;
        }
        let mut usage = json!({
            "executor": "local",
            "containers": self.engine.containers.as_str(),
            "sandbox": if self.engine.sandbox.is_some() { "bwrap" } else { "off" },
            "start_time": crate::db::iso(&started),
            "end_time": crate::db::iso(&finished),
            "elapsed_seconds": (finished - started).num_milliseconds() as f64 / 1000.0,
            "cpu_user_seconds": exit.usage.user_cpu_secs,
            "cpu_system_seconds": exit.usage.system_cpu_secs,
            "max_rss_kib": exit.usage.max_rss_kib,
            "exit_code": exit.code,
            "signal": exit.signal,
        });
        if let Some(schemas) = schemas {
            // Whether cwltool read its schemas from the runner's cache or parsed them.
            usage["cwltool_schemas"] = json!(schemas);
        }
        // The run's own token never shows in what its user reads.
        let tail = crate::auth::run_token::redact(&read_tail(&dir.log(), 64 * 1024).await)
            .replace(token, "[callback token]");
        let obs = match (stop, exit.code) {
            (Some(Stop::TimedOut), _) => failed(format!(
                "Stopped: the run exceeded its time limit of {} s (AQBB_ACTIVE_DEADLINE_SECS).",
                self.deadline.map_or(0, |d| d.as_secs())
            )),
            (Some(Stop::Shutdown), _) => interrupted(finished),
            (_, Some(0)) => JobObservation {
                status: RunStatus::Succeeded,
                message: None,
                completion_time: Some(finished),
            },
            (_, Some(code)) => failed(failure_message(
                &format!("cwltool exited with status {code}"),
                &tail,
            )),
            (_, None) => failed(failure_message(
                &format!("cwltool was killed by signal {}", exit.signal.unwrap_or(0)),
                &tail,
            )),
        };
        let output = if obs.status == RunStatus::Succeeded {
            tokio::fs::read(dir.output())
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        } else {
            None
        };
        let _ = tokio::fs::remove_file(dir.pid()).await;
        (
            obs,
            RunResults {
                output,
                usage_report: Some(usage),
            },
        )
    }

    /// Removes working directories whose run ended longer ago than its retention, and those
    /// of runs that no longer exist. One sweep at a time.
    async fn sweep(&self, service: &RunService) {
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let runs_dir = self.data_dir.join("runs");
        let mut ids = Vec::new();
        if let Ok(mut entries) = tokio::fs::read_dir(&runs_dir).await {
            while let Ok(Some(e)) = entries.next_entry().await {
                if let Some(id) = e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()) {
                    ids.push(id);
                }
            }
        }
        let now = Utc::now();
        for id in ids {
            if self.entry(id).is_some() {
                continue;
            }
            let expired = match pipeline_run::Entity::find_by_id(id).one(&service.db).await {
                Ok(None) => true,
                Ok(Some(run)) => {
                    let keep = if run.status == RunStatus::Succeeded {
                        self.succeeded_retention
                    } else {
                        self.failed_retention
                    };
                    run.status.is_terminal()
                        && run.completion_time.is_some_and(|t| {
                            now.signed_duration_since(t).to_std().unwrap_or_default() >= keep
                        })
                }
                Err(_) => false,
            };
            if expired {
                let _ = tokio::fs::remove_dir_all(runs_dir.join(id.to_string())).await;
            }
        }
        self.sweeping.store(false, Ordering::Release);
    }
}

/// Stops a process group, or dooms it when it has not started yet. With host tools every
/// process is in the group: SIGKILL at once (cwltool may linger for many seconds after SIGTERM
/// once a tool has died). With containers, SIGTERM first so cwltool stops them (its handler
/// runs `docker kill`), SIGKILL after [`STOP_GRACE`].
async fn stop_group(group: &GroupHandle, containers: Containers) {
    if containers == Containers::Host || group.pgid().is_none() {
        group.kill();
        return;
    }
    if !group.signal(libc::SIGTERM) {
        return;
    }
    if tokio::time::timeout(STOP_GRACE, group.ended())
        .await
        .is_err()
    {
        group.kill();
    }
}

/// Whether a live member of process group `pgid` works inside `dir` (so an old pid file can
/// never make us kill an unrelated group that reused the id).
fn group_belongs_to(pgid: i32, dir: &Path) -> bool {
    process::group_members(pgid).into_iter().any(|pid| {
        std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
    })
}

/// The local repositories a run clones (`file://` URLs among its parameters), bound read-only
/// into its sandbox: existing git repositories only (a bare one, or a work tree with `.git`),
/// so a URL can never expose an arbitrary directory of the host.
fn file_repositories(
    params: &std::collections::BTreeMap<String, Value>,
    roots: &[PathBuf],
) -> Vec<PathBuf> {
    let mut repos: Vec<PathBuf> = params
        .values()
        .filter_map(|v| url::Url::parse(v.as_str()?.trim()).ok())
        .filter(|u| u.scheme() == "file")
        .filter_map(|u| u.to_file_path().ok())
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .filter(|p| roots.iter().any(|root| p.starts_with(root)))
        .filter(|p| {
            p.join(".git").exists() || (p.join("HEAD").is_file() && p.join("objects").is_dir())
        })
        .collect();
    repos.sort();
    repos.dedup();
    repos
}

/// The usage the sandbox's first process wrote for the run's process tree (at most a few
/// bytes of JSON; a run could write the file itself, so it is read bounded and typed, and it
/// only ever informs the usage report).
async fn sandbox_usage(path: &Path) -> Option<(process::Usage, Option<&'static str>)> {
    #[derive(serde::Deserialize)]
    struct Written {
        user: f64,
        system: f64,
        maxrss: i64,
        #[serde(default)]
        schemas: Option<String>,
    }
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    tokio::fs::File::open(path)
        .await
        .ok()?
        .take(4096)
        .read_to_end(&mut buf)
        .await
        .ok()?;
    let w: Written = serde_json::from_slice(&buf).ok()?;
    let sane = |x: f64| x.is_finite() && x >= 0.0;
    // The file is in the run's directory, so the run could have rewritten it: only known
    // words pass.
    let schemas = match w.schemas.as_deref() {
        Some("cached") => Some("cached"),
        Some("parsed") => Some("parsed"),
        _ => None,
    };
    (sane(w.user) && sane(w.system)).then_some((
        process::Usage {
            user_cpu_secs: w.user,
            system_cpu_secs: w.system,
            max_rss_kib: w.maxrss.max(0),
        },
        schemas,
    ))
}

/// The cache of cwltool's parsed schemas, in the sandbox's shared directory, named after the
/// installation it comes from (size and time of cwltool's script and interpreter: an upgrade
/// rewrites them) and after the script that writes it (a release that caches more schemas
/// writes a new file), so a file once written is never replaced under a run binding it.
fn schema_cache_path(data_dir: &Path, engine: &Engine) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    sandbox::INIT.hash(&mut h);
    let python = engine.sandbox.as_ref().map(|s| s.python.clone());
    for file in [Some(engine.cwltool.clone()), python].into_iter().flatten() {
        file.hash(&mut h);
        if let Ok(m) = std::fs::metadata(&file) {
            (m.len(), m.modified().ok()).hash(&mut h);
        }
    }
    data_dir
        .join("sandbox")
        .join(format!("schemas-{:016x}.pickle", h.finish()))
}

/// The service's own files a repository bound into a sandbox may contain: its data directory
/// and its SQLite database (with its journal files).
fn service_files(config: &Config, data_dir: &Path) -> Vec<PathBuf> {
    // As bound repositories are compared (canonical), even for files not created yet: the
    // directory resolved, the name kept.
    let canonical = |p: &Path| {
        let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        match (
            p.parent().and_then(|d| std::fs::canonicalize(d).ok()),
            p.file_name(),
        ) {
            (Some(dir), Some(name)) => dir.join(name),
            _ => p,
        }
    };
    std::iter::once(data_dir.to_path_buf())
        .chain(crate::files::sqlite_files(&config.database.database_url))
        .map(|p| canonical(&p))
        .collect()
}

/// How a run the service stopped (or left behind) ends.
fn interrupted(at: DateTime<Utc>) -> JobObservation {
    JobObservation {
        status: RunStatus::Failed,
        message: Some(
            "Interrupted: the service stopped while this run was in flight on the local runner; start the run again."
                .into(),
        ),
        completion_time: Some(at),
    }
}

/// The end of a file, at most `max` bytes, as text.
async fn read_tail(path: &Path, max: u64) -> String {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return String::new();
    };
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    if len > max {
        let _ = f.seek(std::io::SeekFrom::Start(len - max)).await;
    }
    let mut buf = Vec::new();
    let _ = f.take(max).read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// A failure's `status_message`: what happened, then the lines of the log that explain it
/// (the tools' own messages and cwltool's warnings and errors, not its command echoes).
pub fn failure_message(head: &str, log: &str) -> String {
    const MAX_LINES: usize = 12;
    const MAX_CHARS: usize = 1500;
    let mut lines: Vec<&str> = log
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with("INFO ") && !l.starts_with(char::is_whitespace))
        .collect();
    if lines.len() > MAX_LINES {
        lines.drain(..lines.len() - MAX_LINES);
    }
    let mut msg = format!("{head}.");
    if !lines.is_empty() {
        msg.push('\n');
        msg.push_str(&lines.join("\n"));
    }
    if msg.len() > MAX_CHARS {
        let cut = (0..=MAX_CHARS - 3)
            .rev()
            .find(|i| msg.is_char_boundary(*i))
            .unwrap_or(0);
        msg.truncate(cut);
        msg.push_str("...");
    }
    msg
}

#[async_trait]
impl Launcher for LocalLauncher {
    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome, LaunchError> {
        if let Some(store) = &self.0.engine.images_dir {
            // Every image the run names must be in the store, hints included: a step whose
            // image is missing would fail halfway, after the steps before it ran.
            let missing: Vec<String> = engine::docker_images(&req.cwl)
                .into_iter()
                .filter(|image| !engine::image_dir(store, image).is_dir())
                .collect();
            if !missing.is_empty() {
                return Err(LaunchError::Rejected(format!(
                    "its images {} are not in the local runner's image store ({}): export them from a container engine with scripts/local-images.sh",
                    missing.join(", "),
                    store.display()
                )));
            }
        }
        if self.0.engine.containers == engine::Containers::Host {
            let needs_images = engine::container_only_processes(&req.cwl);
            if !needs_images.is_empty() {
                return Err(LaunchError::Rejected(format!(
                    "its tools {} require container images (DockerRequirement under requirements) and no container engine is available here: install docker or podman, or run it on Kubernetes",
                    needs_images.join(", ")
                )));
            }
        }
        self.0.prepare(req).await?;
        self.0.ensure_schema_cache();
        let (done, _) = watch::channel(false);
        let entry = Arc::new(Active {
            req: req.clone(),
            group: GroupHandle::default(),
            stop: Mutex::new(None),
            done,
        });
        if let Ok(mut a) = self.0.active.lock() {
            a.insert(req.run_id, entry);
        }
        let user = req.user_id.unwrap_or(0);
        let message = {
            let fair = self.0.fair();
            if fair.starts_at_once(user, self.0.concurrency) {
                "Starting on the local runner.".to_string()
            } else {
                format!(
                    "Queued for the local runner: {} run(s) ahead in the queue (users take turns), {} running, {} at a time.",
                    fair.ahead_of_new(user),
                    fair.executing(),
                    self.0.concurrency
                )
            }
        };
        Ok(LaunchOutcome::Queued {
            namespace: NAMESPACE.into(),
            job_name: job_name(req.run_id),
            message,
        })
    }

    fn recorded(&self, run_id: i64) {
        let Some(entry) = self.0.entry(run_id) else {
            return;
        };
        self.0.fair().push(entry.req.user_id.unwrap_or(0), run_id);
        self.0.wake.notify_one();
    }

    fn queues(&self) -> bool {
        true
    }

    fn waiting(&self) -> Option<Waiting> {
        let fair = self.0.fair();
        let for_user_limit = fair.waiting_for_user_limit();
        Some(Waiting {
            for_slot: fair.waiting() - for_user_limit,
            for_user_limit,
        })
    }

    async fn observe(&self, _run_id: i64) -> Result<Option<JobObservation>, LaunchError> {
        // This runner reports every transition itself; nothing to reconcile on read.
        Ok(None)
    }

    async fn cancel(&self, run_id: i64) -> Result<(), LaunchError> {
        let Some(entry) = self.0.entry(run_id) else {
            return Ok(());
        };
        entry.request_stop(Stop::Cancelled);
        // Still waiting: it leaves the queue at once and never takes its user's turn.
        if self.0.fair().remove(entry.req.user_id.unwrap_or(0), run_id) {
            if let Ok(mut a) = self.0.active.lock() {
                a.remove(&run_id);
            }
            let _ = entry.done.send(true);
            return Ok(());
        }
        let started = entry.group.pgid().is_some();
        stop_group(&entry.group, self.0.engine.containers).await;
        if started {
            // Bounded: a process stuck in uninterruptible I/O must not hang the API.
            let _ = tokio::time::timeout(Duration::from_secs(5), entry.group.ended()).await;
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "local"
    }

    fn rejection_prefix(&self) -> &'static str {
        "The local runner cannot execute this run"
    }

    fn describe(&self) -> String {
        format!(
            "runs execute on this machine: {}, sandbox: {}, tools {}, {} at a time, working directories in {}",
            self.0.engine.cwltool.display(),
            match &self.0.engine.sandbox {
                Some(s) => s.describe(),
                None =>
                    "OFF (LOCAL_SANDBOX=off: every run sees this machine as the service's user)"
                        .into(),
            },
            match self.0.engine.containers {
                Containers::Host => "on the host (no container engine)",
                Containers::Docker => "in their images with docker",
                Containers::Podman => "in their images with podman",
                Containers::Images =>
                    "in their images' files from the image store, nested in the sandbox",
            },
            self.0.concurrency,
            self.0.data_dir.display()
        )
    }

    fn attach(&self, service: &RunService, listening: SocketAddr) {
        let _ = self.0.service.set(service.downgrade());
        let url = self.0.configured_callback.clone().unwrap_or_else(|| {
            let port = listening.port();
            if listening.is_ipv6()
                && !listening.ip().is_unspecified()
                && !listening.ip().is_loopback()
            {
                format!("http://[::1]:{port}")
            } else {
                format!("http://127.0.0.1:{port}")
            }
        });
        let _ = self.0.callback.set(url);
        let _ = self.0.listening.set(listening);
        tokio::spawn(self.0.clone().dispatch());
        tokio::spawn(self.0.clone().recover(service.clone()));
    }

    fn callback_base_url(&self) -> Option<String> {
        self.0.callback.get().cloned()
    }

    async fn shutdown(&self) {
        let entries: Vec<(i64, Arc<Active>)> = self
            .0
            .active
            .lock()
            .map(|a| a.iter().map(|(id, e)| (*id, e.clone())).collect())
            .unwrap_or_default();
        let containers = self.0.engine.containers;
        let mut started = Vec::new();
        for (run_id, entry) in &entries {
            entry.request_stop(Stop::Shutdown);
            let running = entry.group.pgid().is_some();
            stop_group(&entry.group, containers).await;
            if running {
                started.push(entry.clone());
            } else if let Some(service) = self.0.service() {
                // Still queued: nothing will report it, so record its end here.
                let obs = interrupted(Utc::now());
                if let Err(e) = runs::finish(&service, *run_id, &obs, RunResults::default()).await {
                    tracing::warn!(run_id, error = %e, "local runner: cannot fail a queued run");
                }
            }
        }
        // Running ones record their own end once their process is gone (bounded).
        let waits = started.iter().map(|e| {
            let mut done = e.done.subscribe();
            async move {
                let _ = done.wait_for(|d| *d).await;
            }
        });
        let _ =
            tokio::time::timeout(Duration::from_secs(15), futures::future::join_all(waits)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_messages_keep_what_explains() {
        let log = "INFO [job clone] /tmp/x$ sh \\\n    -c \\\n    'set -eu'\nfatal: repository 'file:///nope' does not exist\nWARNING [job clone] exited with status: 128\nWARNING Final process status is permanentFail\n";
        let msg = failure_message("cwltool exited with status 1", log);
        assert_eq!(
            msg,
            "cwltool exited with status 1.\nfatal: repository 'file:///nope' does not exist\nWARNING [job clone] exited with status: 128\nWARNING Final process status is permanentFail"
        );
        let long = "é".repeat(5000);
        let msg = failure_message("x", &long);
        assert!(msg.len() <= 1500 && msg.ends_with("..."));
        assert_eq!(failure_message("nothing", ""), "nothing.");
    }
}
