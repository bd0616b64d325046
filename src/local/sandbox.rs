//! The local runner's sandbox: every run (cwltool itself and every step) executes inside
//! [bubblewrap](https://github.com/containers/bubblewrap), the tool Flatpak uses, because each
//! run executes code nobody here has vetted (a repository's tool configuration, a notebook).
//!
//! What a run gets:
//! - **its own namespaces**: mount, PID (with its own `/proc`), network, IPC and UTS;
//! - **an unprivileged user**: when the service runs as root, bubblewrap sets the namespaces up
//!   and the sandbox's first process ([`INIT`]) drops to a user of the run's own
//!   (`UID_BASE + run id`), so runs cannot read one another's files nor anything of root's;
//!   otherwise a user namespace maps the service's own user;
//! - **a minimal file system**: `/usr` and a few files of `/etc` read-only, cwltool's Python
//!   installation read-only, the repositories the run clones from `file://` read-only, its own
//!   working directory writable, scratch space on a size-limited tmpfs. The service's data
//!   directory, database, keys, other runs, `/root`, `/home` and the project tree are not there;
//! - **two ways out and no other network**: the service's callback port and an egress proxy on
//!   the sandbox's own loopback, relayed to Unix sockets of this run (see [`super::egress`]);
//! - **limits**: memory, processes, CPU time, file size and scratch space (configuration), plus
//!   the run's wall-clock limit, enforced by the runner.

use crate::config::{Config, SandboxMode};
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

/// The sandbox's first process, run with cwltool's own interpreter (see the script).
pub const INIT: &str = include_str!("sandbox_init.py");

/// Users of sandboxed runs when the service runs as root:
/// `UID_BASE + block * UID_SPAN + run id % UID_SPAN`, where `block` comes from the data
/// directory (two runners on one machine, such as parallel tests, get different users for
/// their run 1). Far above the ranges distributions and `subuid` hand out, and below 2^31:
/// bubblewrap, which also runs each step of `LOCAL_CONTAINERS=images` nested in the sandbox,
/// writes user ids as signed integers ("setting up uid map: Invalid argument" above).
pub const UID_BASE: u32 = 2_000_000_000;
const UID_SPAN: i64 = 100_000;
const UID_BLOCKS: u32 = 1_474;

/// Where the egress proxy listens inside the sandbox (`https_proxy`).
pub const EGRESS_PORT: u16 = 3128;

/// Where the sandbox's first process writes the usage of the run's process tree (in the run's
/// directory; see `sandbox_init.py`).
pub const USAGE_FILE: &str = "usage.json";

/// Paths inside the sandbox.
pub const INIT_PATH: &str = "/aq/init.py";
/// The container command of `LOCAL_CONTAINERS=images` (cwltool's user-space docker): runs a
/// step in its image's files from the store with a nested bubblewrap.
pub const CONTAINER: &str = include_str!("container.py");
/// Where [`CONTAINER`] is inside the sandbox.
pub const CONTAINER_PATH: &str = "/aq/container";
/// The variable that tells [`CONTAINER`] where the image store is.
pub const IMAGES_VAR: &str = "AQ_IMAGES";
/// The variable that lists the run's `file://` repositories for [`CONTAINER`].
pub const REPOSITORIES_VAR: &str = "AQ_REPOSITORIES";
pub const SCHEMA_CACHE_PATH: &str = "/aq/schemas.pickle";
pub const CALLBACK_SOCKET: &str = "/aq/callback.sock";
pub const EGRESS_SOCKET: &str = "/aq/egress.sock";

/// Files of the host's `/etc` a run may read (what programs need to start, resolve users and
/// check TLS certificates); nothing else of `/etc` is there.
const ETC_FILES: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/mime.types",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/alternatives",
    "/etc/nodejs",
    "/etc/python3",
    "/etc/python3.11",
];

/// `git` inside the sandbox: repositories bound from the host belong to another user (git
/// refuses them otherwise), and a server that stops sending data ends the clone.
pub const GITCONFIG: &str = "[safe]\n\tdirectory = *\n[http]\n\tlowSpeedLimit = 1000\n\tlowSpeedTime = 30\n[core]\n\taskPass =\n";

/// Limits of one sandboxed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_mib: u64,
    pub processes: u64,
    pub cpu_secs: u64,
    pub disk_mib: u64,
}

/// bubblewrap and what every run binds.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub bwrap: PathBuf,
    /// cwltool's interpreter, which also runs [`INIT`].
    pub python: PathBuf,
    /// Read-only directories beside `/usr`: cwltool's virtualenv and its Python installation.
    pub ro_dirs: Vec<PathBuf>,
    pub limits: Limits,
    /// The service runs as root: drop to a user of the run's own.
    pub as_root: bool,
    /// This runner's block of users (see [`UID_BASE`]).
    pub uid_block: u32,
    /// cwltool is a script of [`Sandbox::python`]: the first process imports it and runs it
    /// in-process (one interpreter start, schemas from the cache) instead of starting it.
    pub in_process: bool,
}

/// One run's part of the sandbox.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub run_id: i64,
    /// The run's working directory (bound writable) and its scratch directory (a tmpfs).
    pub run_dir: PathBuf,
    pub scratch: PathBuf,
    /// Host files of the service's sandbox directory: [`INIT`] and [`GITCONFIG`].
    pub init_file: PathBuf,
    pub gitconfig_file: PathBuf,
    /// This run's Unix sockets (callback relay and egress proxy).
    pub callback_socket: PathBuf,
    pub egress_socket: PathBuf,
    /// The callback port tools connect to on the sandbox's loopback.
    pub callback_port: u16,
    /// `file://` repositories of the run, bound read-only.
    pub repositories: Vec<PathBuf>,
    /// The service's own files (its data directory, its SQLite database): hidden when a
    /// repository contains them (a user's working directory often holds both).
    pub hidden: Vec<PathBuf>,
    /// cwltool's command line.
    pub argv: Vec<OsString>,
    /// The service's cache of cwltool's parsed schemas, when it exists (bound read-only).
    pub schema_cache: Option<PathBuf>,
    /// `LOCAL_CONTAINERS=images`: the host file of [`CONTAINER`] and the image store, both
    /// bound read-only.
    pub images: Option<(PathBuf, PathBuf)>,
}

impl Sandbox {
    /// Finds bubblewrap and cwltool's interpreter; `Ok(None)` when the operator turned the
    /// sandbox off. `Err` says what is missing, in one line.
    pub fn detect(config: &Config, cwltool: &Path) -> Result<Option<Sandbox>, String> {
        if config.local.local_sandbox == SandboxMode::Off {
            return Ok(None);
        }
        let bwrap = super::engine::find_executable("bwrap").ok_or(
            "the local runner's sandbox needs bubblewrap (`apt-get install bubblewrap`); set LOCAL_SANDBOX=off only if every user is trusted",
        )?;
        // cwltool's own interpreter (its `#!` line), else the system's.
        let own = interpreter_of(cwltool);
        let in_process = own.is_some();
        let python = own
            .or_else(|| super::engine::find_executable("python3"))
            .ok_or_else(|| {
                format!(
                    "the local runner's sandbox needs Python 3 (for {}, or python3 in PATH)",
                    cwltool.display()
                )
            })?;
        Ok(Some(Sandbox {
            bwrap,
            ro_dirs: python_dirs(cwltool, &python),
            python,
            limits: Limits {
                memory_mib: config.local.local_sandbox_memory_mib,
                processes: config.local.local_sandbox_processes,
                cpu_secs: config.local.local_sandbox_cpu_secs,
                disk_mib: config.local.local_sandbox_disk_mib,
            },
            // SAFETY: geteuid has no preconditions.
            as_root: unsafe { libc::geteuid() } == 0,
            uid_block: 0,
            in_process,
        }))
    }

    /// The user a run executes as, when the service runs as root.
    pub fn run_uid(&self, run_id: i64) -> Option<u32> {
        self.as_root.then(|| {
            UID_BASE + self.uid_block * UID_SPAN as u32 + run_id.rem_euclid(UID_SPAN) as u32
        })
    }

    /// bubblewrap's arguments for one run (a pure function, unit-tested below).
    pub fn args(&self, run: &RunSpec) -> Vec<OsString> {
        let mut a = Args::default();
        a.flags(&[
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "aq-run",
        ]);
        if self.as_root {
            // Root sets the namespaces up; the first process keeps only what it needs to
            // become the run's user, and drops that too.
            a.flags(&[
                "--cap-drop",
                "ALL",
                "--cap-add",
                "CAP_SETUID",
                "--cap-add",
                "CAP_SETGID",
            ]);
        } else {
            a.flags(&["--unshare-user", "--cap-drop", "ALL"]);
        }
        a.pair("--ro-bind", "/usr", "/usr");
        for dir in ["/bin", "/sbin", "/lib", "/lib64", "/lib32"] {
            match std::fs::read_link(dir) {
                Ok(target) => a.pair("--symlink", target, dir),
                Err(_) if Path::new(dir).is_dir() => a.pair("--ro-bind", dir, dir),
                Err(_) => {}
            }
        }
        a.flags(&["--proc", "/proc", "--dev", "/dev"]);
        let size = (self.limits.disk_mib * 1024 * 1024).to_string();
        a.flags(&["--perms", "1777", "--size", &size, "--tmpfs", "/tmp"]);
        // Mount points below directories the sandbox does not otherwise have are created
        // world-searchable (bubblewrap's own default is 0700, which the run's user could not
        // cross).
        let mut mounts: Vec<&Path> = vec![
            &run.run_dir,
            &run.scratch,
            Path::new(INIT_PATH),
            Path::new("/etc/gitconfig"),
        ];
        mounts.extend(self.ro_dirs.iter().map(PathBuf::as_path));
        mounts.extend(run.repositories.iter().map(PathBuf::as_path));
        if let Some((_, store)) = &run.images {
            mounts.push(store);
        }
        for dir in parents(&mounts) {
            a.flags(&["--perms", "0755"]);
            a.one("--dir", dir);
        }
        for file in ETC_FILES {
            a.pair("--ro-bind-try", file, file);
        }
        a.pair("--ro-bind", &run.gitconfig_file, "/etc/gitconfig");
        for dir in &self.ro_dirs {
            a.pair("--ro-bind", dir, dir);
        }
        for repo in &run.repositories {
            a.pair("--ro-bind", repo, repo);
        }
        let mut masked = Vec::new();
        for hidden in &run.hidden {
            if !run.repositories.iter().any(|r| hidden.starts_with(r)) {
                continue;
            }
            if hidden.is_dir() {
                // Empty, and crossed by the run's user on the way to its own directory.
                a.flags(&["--perms", "0755"]);
                a.one("--tmpfs", hidden);
                masked.push(hidden.as_path());
            } else if hidden.exists() {
                a.pair("--ro-bind", "/dev/null", hidden);
            }
        }
        // The run's own directory may lie below a hidden one: its mount points again.
        for dir in parents(&[&run.run_dir])
            .into_iter()
            .filter(|d| masked.iter().any(|m| d.starts_with(m) && d != m))
        {
            a.flags(&["--perms", "0755"]);
            a.one("--dir", dir);
        }
        a.pair("--bind", &run.run_dir, &run.run_dir);
        a.flags(&["--perms", "1777", "--size", &size]);
        a.one("--tmpfs", &run.scratch);
        a.pair("--ro-bind", &run.init_file, INIT_PATH);
        a.pair("--ro-bind", &run.callback_socket, CALLBACK_SOCKET);
        a.pair("--ro-bind", &run.egress_socket, EGRESS_SOCKET);
        if let Some(cache) = run.schema_cache.as_ref().filter(|_| self.in_process) {
            a.pair("--ro-bind", cache, SCHEMA_CACHE_PATH);
        }
        if let Some((command, store)) = &run.images {
            a.pair("--ro-bind", command, CONTAINER_PATH);
            a.pair("--ro-bind", store, store);
        }
        a.flags(&["--chdir", "/"]);
        a.0.push(self.python.clone().into());
        // -I: the run's environment cannot redirect the interpreter (PYTHONPATH and friends,
        // the user's site directory). `site` stays: it finds cwltool's virtualenv.
        a.0.push("-I".into());
        a.0.push(INIT_PATH.into());
        a.0.push(self.init_spec(run).into());
        a.0
    }

    /// The JSON argument of [`INIT`].
    fn init_spec(&self, run: &RunSpec) -> String {
        let uid = self.run_uid(run.run_id);
        let mib = 1024 * 1024;
        serde_json::json!({
            "relays": [
                [run.callback_port, CALLBACK_SOCKET],
                [egress_port(run.callback_port), EGRESS_SOCKET],
            ],
            "uid": uid,
            "gid": uid,
            "limits": {
                "RLIMIT_NPROC": self.limits.processes,
                "RLIMIT_DATA": self.limits.memory_mib * mib,
                "RLIMIT_CPU": self.limits.cpu_secs,
                "RLIMIT_FSIZE": self.limits.disk_mib * mib,
                "RLIMIT_NOFILE": 4096,
                "RLIMIT_CORE": 0,
            },
            "cwd": run.run_dir,
            "usage": run.run_dir.join(USAGE_FILE),
            "argv": run.argv.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>(),
            "cwltool": self.in_process.then(|| serde_json::json!({
                "args": run.argv.iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>(),
                "schema_cache": run.schema_cache.as_ref().map(|_| SCHEMA_CACHE_PATH),
            })),
        })
        .to_string()
    }

    /// The environment a sandboxed cwltool passes on to its tools, beside the token: the
    /// egress proxy for `https://`, the callback port direct.
    pub fn env(&self, callback_port: u16) -> Vec<(OsString, OsString)> {
        let proxy = format!("http://127.0.0.1:{}", egress_port(callback_port));
        let mut env: Vec<(OsString, OsString)> = Vec::new();
        for k in ["https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"] {
            env.push((k.into(), proxy.clone().into()));
        }
        for k in ["no_proxy", "NO_PROXY"] {
            env.push((k.into(), "127.0.0.1,localhost,::1".into()));
        }
        env.push(("GIT_TERMINAL_PROMPT".into(), "0".into()));
        // Whichever git is first in `PATH` (its compiled-in system file may be elsewhere).
        env.push(("GIT_CONFIG_SYSTEM".into(), "/etc/gitconfig".into()));
        env.push(("HOME".into(), "/tmp".into()));
        env
    }

    /// Writes the cache of cwltool's parsed schemas to `out` with [`INIT`] (at `init`), run by
    /// cwltool's interpreter as the service's own user: it reads only cwltool's bundled
    /// schemas, never anything of a run, and runs read the file read-only. Blocking (about a
    /// second of CPU).
    pub fn write_schema_cache(&self, init: &Path, out: &Path) -> std::io::Result<()> {
        let spec = serde_json::json!({ "schema_cache_out": out }).to_string();
        let output = std::process::Command::new(&self.python)
            .arg("-I")
            .arg(init)
            .arg(spec)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .stdin(std::process::Stdio::null())
            .output()?;
        if output.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&output.stderr);
            Err(std::io::Error::other(format!(
                "{} exited with {}: {}",
                self.python.display(),
                output.status,
                err.lines().last().unwrap_or_default()
            )))
        }
    }

    /// Picks this runner's block of users from its data directory.
    pub fn for_data_dir(mut self, data_dir: &Path) -> Self {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
        self.uid_block = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % UID_BLOCKS;
        self
    }

    /// What the "listening" line and the runner's description say.
    pub fn describe(&self) -> String {
        format!(
            "bubblewrap ({}; {}, no network but the callback and an egress proxy, {} MiB memory, {} processes, {} s CPU, {} MiB disk per run)",
            self.bwrap.display(),
            if self.as_root {
                "a user of its own per run"
            } else {
                "the service's user in a user namespace"
            },
            self.limits.memory_mib,
            self.limits.processes,
            self.limits.cpu_secs,
            self.limits.disk_mib
        )
    }
}

/// Variables cwltool must hand to its tools in a sandbox (`--preserve-environment`).
pub const PRESERVED: &[&str] = &[
    "https_proxy",
    "HTTPS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "no_proxy",
    "NO_PROXY",
    "GIT_TERMINAL_PROMPT",
    "GIT_CONFIG_SYSTEM",
];

/// The egress proxy's port inside the sandbox (never the callback's).
pub fn egress_port(callback_port: u16) -> u16 {
    if callback_port == EGRESS_PORT {
        EGRESS_PORT + 1
    } else {
        EGRESS_PORT
    }
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flags(&mut self, flags: &[&str]) {
        self.0.extend(flags.iter().map(OsString::from));
    }
    fn one(&mut self, flag: &str, value: impl AsRef<std::ffi::OsStr>) {
        self.0.push(flag.into());
        self.0.push(value.as_ref().to_owned());
    }
    fn pair(&mut self, flag: &str, a: impl AsRef<std::ffi::OsStr>, b: impl AsRef<std::ffi::OsStr>) {
        self.one(flag, a);
        self.0.push(b.as_ref().to_owned());
    }
}

/// Every ancestor directory of the mount points that the sandbox does not provide otherwise,
/// shortest first.
fn parents(mounts: &[&Path]) -> Vec<PathBuf> {
    let provided = ["/", "/usr", "/tmp", "/proc", "/dev"];
    let mut dirs: Vec<PathBuf> = mounts
        .iter()
        .flat_map(|m| m.ancestors().skip(1).map(Path::to_path_buf))
        .filter(|d| !provided.iter().any(|p| d == Path::new(p)) && !d.starts_with("/usr"))
        .collect();
    dirs.sort_by_key(|d| (d.components().count(), d.clone()));
    dirs.dedup();
    dirs
}

/// The interpreter named on the first line of a Python script (`#!/path/python`), resolved.
fn interpreter_of(script: &Path) -> Option<PathBuf> {
    use std::io::BufRead;
    let file = std::fs::File::open(script).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(file).read_line(&mut line).ok()?;
    let interp = line.strip_prefix("#!")?.split_whitespace().next()?;
    let path = PathBuf::from(interp);
    (path.is_absolute() && path.exists()).then_some(path)
}

/// The directories a Python program needs beside `/usr`: its virtualenv (when it has one) and
/// the installation the interpreter comes from.
fn python_dirs(cwltool: &Path, python: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut add = |d: PathBuf| {
        if !d.starts_with("/usr") && d != Path::new("/") && !dirs.contains(&d) {
            dirs.push(d);
        }
    };
    for exe in [cwltool, python] {
        // The virtualenv: `<venv>/bin/<exe>` next to `<venv>/pyvenv.cfg`.
        if let Some(venv) = exe.parent().and_then(Path::parent)
            && venv.join("pyvenv.cfg").is_file()
        {
            add(venv.to_path_buf());
            if let Ok(cfg) = std::fs::read_to_string(venv.join("pyvenv.cfg"))
                && let Some(home) = cfg.lines().find_map(|l| {
                    let (k, v) = l.split_once('=')?;
                    (k.trim() == "home").then(|| PathBuf::from(v.trim()))
                })
                && let Some(prefix) = home.parent()
            {
                add(prefix.to_path_buf());
            }
        }
        // The real interpreter's installation: `<prefix>/bin/python3.x`.
        if let Ok(real) = std::fs::canonicalize(exe)
            && let Some(prefix) = real.parent().and_then(Path::parent)
        {
            add(prefix.to_path_buf());
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(as_root: bool) -> Sandbox {
        Sandbox {
            bwrap: "/usr/bin/bwrap".into(),
            python: "/opt/venv/bin/python".into(),
            ro_dirs: vec!["/opt/venv".into(), "/opt/py".into()],
            limits: Limits {
                memory_mib: 512,
                processes: 64,
                cpu_secs: 60,
                disk_mib: 100,
            },
            as_root,
            uid_block: 0,
            in_process: true,
        }
    }

    fn run() -> RunSpec {
        RunSpec {
            run_id: 7,
            run_dir: "/data/runs/7".into(),
            scratch: "/data/runs/7/tmp".into(),
            init_file: "/data/sandbox/init.py".into(),
            gitconfig_file: "/data/sandbox/gitconfig".into(),
            callback_socket: "/data/sandbox/7/callback.sock".into(),
            egress_socket: "/data/sandbox/7/egress.sock".into(),
            callback_port: 8080,
            repositories: vec!["/home/u/repo".into()],
            hidden: vec![],
            argv: vec!["/opt/venv/bin/cwltool".into(), "x.cwl".into()],
            schema_cache: Some("/data/sandbox/schemas.pickle".into()),
            images: None,
        }
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn has_pair(args: &[String], flag: &str, a: &str, b: &str) -> bool {
        args.windows(3)
            .any(|w| w[0] == flag && w[1] == a && w[2] == b)
    }

    #[test]
    fn only_what_a_run_needs_is_bound() {
        let args = strings(&sandbox(true).args(&run()));
        for ns in [
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--die-with-parent",
        ] {
            assert!(args.contains(&ns.to_string()), "{ns}");
        }
        assert!(
            !args.contains(&"--unshare-user".to_string()),
            "root maps users itself"
        );
        assert!(has_pair(&args, "--bind", "/data/runs/7", "/data/runs/7"));
        assert!(has_pair(&args, "--ro-bind", "/home/u/repo", "/home/u/repo"));
        assert!(has_pair(&args, "--ro-bind", "/opt/venv", "/opt/venv"));
        // The only writable binds are the run's own directory; no /etc but the listed files.
        let writable: Vec<&String> = args
            .windows(2)
            .filter(|w| w[0] == "--bind")
            .map(|w| &w[1])
            .collect();
        assert_eq!(writable, vec!["/data/runs/7"]);
        let sources: Vec<&String> = args
            .windows(2)
            .filter(|w| w[0].starts_with("--bind") || w[0].starts_with("--ro-bind"))
            .map(|w| &w[1])
            .collect();
        for hidden in [
            "/",
            "/etc",
            "/etc/shadow",
            "/data",
            "/data/runs",
            "/root",
            "/home",
        ] {
            assert!(
                !sources.iter().any(|s| *s == hidden),
                "{hidden} in {sources:?}"
            );
        }
        // Mount points under missing directories are reachable by the run's user.
        let i = args.iter().position(|a| a == "/home/u").unwrap();
        assert_eq!(args[i - 1], "--dir");
        assert_eq!(args[i - 2], "0755");
        // The init program gets the user, the limits and the relays.
        let spec: serde_json::Value = serde_json::from_str(args.last().unwrap()).unwrap();
        assert_eq!(spec["uid"], 2_000_000_007u32);
        assert_eq!(spec["limits"]["RLIMIT_NPROC"], 64);
        assert_eq!(spec["limits"]["RLIMIT_DATA"], 512 * 1024 * 1024);
        assert_eq!(spec["relays"][0][0], 8080);
        assert_eq!(spec["relays"][1][0], EGRESS_PORT);
        assert_eq!(spec["argv"][0], "/opt/venv/bin/cwltool");
        // cwltool runs in the first process's interpreter, with the schemas bound read-only.
        assert_eq!(spec["cwltool"]["args"], serde_json::json!(["x.cwl"]));
        assert_eq!(spec["cwltool"]["schema_cache"], SCHEMA_CACHE_PATH);
        assert!(has_pair(
            &args,
            "--ro-bind",
            "/data/sandbox/schemas.pickle",
            SCHEMA_CACHE_PATH
        ));
        // No cache yet, or cwltool is not a script of that interpreter: nothing bound.
        let mut cold = run();
        cold.schema_cache = None;
        let args = strings(&sandbox(true).args(&cold));
        assert!(!args.iter().any(|a| a == SCHEMA_CACHE_PATH));
        let mut other = sandbox(true);
        other.in_process = false;
        let args = strings(&other.args(&run()));
        let spec: serde_json::Value = serde_json::from_str(args.last().unwrap()).unwrap();
        assert!(spec["cwltool"].is_null() && !args.iter().any(|a| a == SCHEMA_CACHE_PATH));
    }

    #[test]
    fn the_services_files_inside_a_repository_are_hidden() {
        // A repository that holds the service's data directory and database (dev.sh's
        // `file://$PWD`): both masked, the run's own directory bound again below the mask.
        let project = tempfile::tempdir().unwrap();
        let data = project.path().join("data");
        std::fs::create_dir_all(data.join("runs/7/tmp")).unwrap();
        let db = project.path().join("app.db");
        std::fs::write(&db, "secret").unwrap();
        let mut spec = run();
        spec.repositories = vec![project.path().to_path_buf()];
        spec.run_dir = data.join("runs/7");
        spec.scratch = data.join("runs/7/tmp");
        spec.hidden = vec![data.clone(), db.clone(), "/elsewhere/x.db".into()];
        let args = strings(&sandbox(true).args(&spec));
        let s = |p: &Path| p.display().to_string();
        let at = |flag: &str, a: &str| args.windows(2).rposition(|w| w[0] == flag && w[1] == a);
        let repo = at("--ro-bind", &s(project.path())).unwrap();
        let mask = at("--tmpfs", &s(&data)).unwrap();
        let again = at("--dir", &s(&data.join("runs"))).unwrap();
        let bind = at("--bind", &s(&spec.run_dir)).unwrap();
        assert!(repo < mask && mask < again && again < bind, "{args:?}");
        assert_eq!(
            args[mask - 2..mask],
            ["--perms", "0755"],
            "crossed by the run's user"
        );
        assert!(has_pair(&args, "--ro-bind", "/dev/null", &s(&db)));
        assert!(!args.iter().any(|a| a == "/elsewhere/x.db"));
    }

    #[test]
    fn a_non_root_service_uses_a_user_namespace() {
        let s = sandbox(false);
        let args = strings(&s.args(&run()));
        assert!(args.contains(&"--unshare-user".to_string()));
        assert!(!args.contains(&"CAP_SETUID".to_string()));
        let spec: serde_json::Value = serde_json::from_str(args.last().unwrap()).unwrap();
        assert!(spec["uid"].is_null());
        assert_eq!(s.run_uid(7), None);
    }

    #[test]
    fn runners_get_users_of_their_own() {
        let a = sandbox(true).for_data_dir(Path::new("/srv/a"));
        let b = sandbox(true).for_data_dir(Path::new("/srv/b"));
        assert_ne!(a.run_uid(1), b.run_uid(1));
        assert_ne!(a.run_uid(1), a.run_uid(2));
        let top = sandbox(true);
        let top = Sandbox {
            uid_block: UID_BLOCKS - 1,
            ..top
        };
        assert!(top.run_uid(i64::MAX).unwrap() < i32::MAX as u32);
    }

    #[test]
    fn the_egress_port_never_takes_the_callback_port() {
        assert_eq!(egress_port(8080), EGRESS_PORT);
        assert_ne!(egress_port(EGRESS_PORT), EGRESS_PORT);
    }

    #[test]
    fn parents_are_listed_once_shortest_first() {
        let p = parents(&[
            Path::new("/a/b/c"),
            Path::new("/a/d"),
            Path::new("/usr/x/y"),
        ]);
        assert_eq!(p, vec![PathBuf::from("/a"), PathBuf::from("/a/b")]);
    }
}
