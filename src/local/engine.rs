//! What the local runner runs with: the cwltool executable and the container engine, found
//! without starting anything (start-up stays in milliseconds), and the cwltool command line
//! built from them (a pure function, unit-tested below).

use super::sandbox::{self, Sandbox};
use crate::config::{Config, ContainerMode};
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

/// Where tools run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Containers {
    /// In their images, through the docker daemon.
    Docker,
    /// In their images, through podman.
    Podman,
    /// In their images' files from the runner's image store, nested in the run's sandbox.
    Images,
    /// On this machine (`cwltool --no-container`): the tools' programs must be installed.
    Host,
}

impl Containers {
    /// Name for logs and usage reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Containers::Docker => "docker",
            Containers::Podman => "podman",
            Containers::Images => "images",
            Containers::Host => "host",
        }
    }
}

/// cwltool and the container engine the local runner uses.
#[derive(Debug, Clone)]
pub struct Engine {
    /// Absolute path of cwltool.
    pub cwltool: PathBuf,
    pub containers: Containers,
    /// The sandbox every run executes in; `None` only when the operator turned it off.
    pub sandbox: Option<Sandbox>,
    /// What git gets from the repository policy (timeouts, allowed protocols), for every step.
    pub git_env: Vec<(String, String)>,
    /// The image store of [`Containers::Images`] (absolute).
    pub images_dir: Option<PathBuf>,
}

/// Resolves `name` like a shell does: a path is taken as it is, a bare name is looked up in
/// `PATH`. Only executable regular files count.
pub fn find_executable(name: &str) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        let p = if p.is_absolute() {
            p
        } else {
            std::env::current_dir().ok()?.join(p)
        };
        return is_exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_exec(p))
}

/// Whether a docker daemon is there to talk to: `DOCKER_HOST` set, or its default socket
/// present. A client without a daemon (common on CI machines) does not count.
fn docker_daemon_present() -> bool {
    std::env::var_os("DOCKER_HOST").is_some_and(|h| !h.is_empty())
        || Path::new("/var/run/docker.sock").exists()
}

/// Finds cwltool and picks the container engine. `Err` says what is missing, in one line.
pub fn detect(config: &Config) -> Result<Engine, String> {
    let cwltool = find_executable(&config.local.cwltool).ok_or_else(|| {
        format!(
            "cwltool not found (CWLTOOL={:?}; install it with `pip install cwltool`)",
            config.local.cwltool
        )
    })?;
    let sandbox = Sandbox::detect(config, &cwltool)?;
    if sandbox.is_some()
        && matches!(
            config.local.local_containers,
            ContainerMode::Docker | ContainerMode::Podman
        )
    {
        // A container engine's socket is root on the host: it never enters a sandbox.
        return Err(format!(
            "LOCAL_CONTAINERS={} needs LOCAL_SANDBOX=off (the sandbox runs tools on the host's programs, without a container engine)",
            if config.local.local_containers == ContainerMode::Docker {
                "docker"
            } else {
                "podman"
            }
        ));
    }
    let images_dir = (config.local.local_containers == ContainerMode::Images)
        .then(|| images_dir(config))
        .transpose()?;
    if images_dir.is_some() && sandbox.is_none() {
        return Err(
            "LOCAL_CONTAINERS=images runs each tool nested in the run's sandbox: it needs LOCAL_SANDBOX=bwrap"
                .into(),
        );
    }
    let docker = || find_executable("docker").is_some() && docker_daemon_present();
    let podman = || find_executable("podman").is_some();
    let containers = match config.local.local_containers {
        ContainerMode::Off => Containers::Host,
        ContainerMode::Images => Containers::Images,
        _ if sandbox.is_some() => Containers::Host,
        ContainerMode::Docker if docker() => Containers::Docker,
        ContainerMode::Docker => {
            return Err(
                "LOCAL_CONTAINERS=docker but no docker client with a reachable daemon".into(),
            );
        }
        ContainerMode::Podman if podman() => Containers::Podman,
        ContainerMode::Podman => {
            return Err("LOCAL_CONTAINERS=podman but podman is not installed".into());
        }
        ContainerMode::Auto if docker() => Containers::Docker,
        ContainerMode::Auto if podman() => Containers::Podman,
        ContainerMode::Auto => Containers::Host,
    };
    Ok(Engine {
        cwltool,
        containers,
        sandbox,
        git_env: crate::pipelines::repos::git_env(config),
        images_dir,
    })
}

/// `LOCAL_IMAGES_DIR`, absolute; it must exist (an empty store is a mistake worth a line at
/// start-up, not a failure at every run).
fn images_dir(config: &Config) -> Result<PathBuf, String> {
    let dir = match &config.local.local_images_dir {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(&config.local.local_data_dir).join("images"),
    };
    let dir = std::path::absolute(&dir).map_err(|e| format!("LOCAL_IMAGES_DIR: {e}"))?;
    if !dir.is_dir() {
        return Err(format!(
            "LOCAL_CONTAINERS=images but the image store {} does not exist: fill it with scripts/local-images.sh",
            dir.display()
        ));
    }
    Ok(dir)
}

/// The directory of `image` in the store: its reference with a tag (`latest` when it has
/// none), percent-encoded into one file name, as `scripts/local-images.sh` names it (both
/// encodings agree on every character an image reference may hold: letters, digits, `._-/:@`).
pub fn image_dir(store: &Path, image: &str) -> PathBuf {
    let last = image.rsplit('/').next().unwrap_or(image);
    let mut name = image.to_string();
    if !image.contains('@') && !last.contains(':') {
        name.push_str(":latest");
    }
    let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
    store.join(encoded)
}

/// Every image a CWL document's processes name (`dockerPull` of a `DockerRequirement`, in
/// hints or requirements), sorted, without repeats.
pub fn docker_images(cwl: &str) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for p in graph_processes(cwl) {
        for key in ["hints", "requirements"] {
            if let Some(image) = docker_requirement(&p, key)
                .and_then(|r| r.get("dockerPull"))
                .and_then(|v| v.as_str())
            {
                out.insert(image.to_string());
            }
        }
    }
    out.into_iter().collect()
}

/// The processes of a CWL document (its `$graph`, or the document itself); none when it is
/// not YAML.
fn graph_processes(cwl: &str) -> Vec<serde_yaml::Value> {
    match serde_yaml::from_str::<serde_yaml::Value>(cwl) {
        Ok(serde_yaml::Value::Mapping(mut doc)) => match doc.remove("$graph") {
            Some(serde_yaml::Value::Sequence(items)) => items,
            _ => vec![serde_yaml::Value::Mapping(doc)],
        },
        _ => Vec::new(),
    }
}

/// A process's `DockerRequirement` under `key` (`hints` or `requirements`), in either of the
/// two forms CWL allows (a map by class, or a list of objects with `class`).
fn docker_requirement<'a>(
    process: &'a serde_yaml::Value,
    key: &str,
) -> Option<&'a serde_yaml::Value> {
    match process.get(key)? {
        serde_yaml::Value::Mapping(m) => m.get("DockerRequirement"),
        serde_yaml::Value::Sequence(items) => items
            .iter()
            .find(|r| r.get("class").and_then(|c| c.as_str()) == Some("DockerRequirement")),
        _ => None,
    }
}

/// The per-run working directory's layout.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    /// `<data dir>/runs/<run id>`.
    pub fn new(data_dir: &Path, run_id: i64) -> Self {
        Self {
            root: data_dir.join("runs").join(run_id.to_string()),
        }
    }
    /// The rendered CWL.
    pub fn cwl(&self) -> PathBuf {
        self.root.join("pipeline.cwl")
    }
    /// The job order (parameters), JSON.
    pub fn params(&self) -> PathBuf {
        self.root.join("params.json")
    }
    /// cwltool's stdout: the output object.
    pub fn output(&self) -> PathBuf {
        self.root.join("output.json")
    }
    /// cwltool's stderr and its tools': the run's log.
    pub fn log(&self) -> PathBuf {
        self.root.join("run.log")
    }
    /// The process group id of the run's cwltool, while it runs.
    pub fn pid(&self) -> PathBuf {
        self.root.join("pid")
    }
    /// Final outputs.
    pub fn out(&self) -> PathBuf {
        self.root.join("out")
    }
    /// Intermediate and temporary directories.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
}

/// The callback token reaches the tools through this variable, never as a CWL input (so it is
/// neither in the stored parameters nor in the CWL), exactly as in the Kubernetes pods.
pub const TOKEN_VAR: &str = "AQ_CALLBACK_TOKEN";

/// cwltool's arguments for one run.
pub fn cwltool_args(engine: &Engine, dir: &RunDir) -> Vec<OsString> {
    let mut tmp = dir.tmp().into_os_string();
    tmp.push("/");
    let mut args: Vec<OsString> = vec![
        "--disable-color".into(),
        // jshint over every expression at load only prints warnings (about a tenth of a
        // second, a Node.js start); the expressions still run, and fail the run when wrong.
        "--disable-js-validation".into(),
        "--outdir".into(),
        dir.out().into(),
        "--tmpdir-prefix".into(),
        tmp.clone(),
        "--tmp-outdir-prefix".into(),
        tmp,
        "--preserve-environment".into(),
        TOKEN_VAR.into(),
    ];
    let mut preserved: Vec<&str> = engine.git_env.iter().map(|(k, _)| k.as_str()).collect();
    if engine.sandbox.is_some() {
        preserved.extend(sandbox::PRESERVED);
    }
    for var in preserved {
        args.push("--preserve-environment".into());
        args.push(var.into());
    }
    match engine.containers {
        Containers::Host => args.push("--no-container".into()),
        Containers::Podman => args.push("--podman".into()),
        Containers::Images => {
            args.push("--user-space-docker-cmd".into());
            args.push(sandbox::CONTAINER_PATH.into());
            // Into the steps' images, as a step pod has them on Kubernetes.
            for var in ["AQ_CALLBACK_URL", "AQ_PIPELINE_ID", "AQ_RUN_ID"] {
                args.push("--preserve-environment".into());
                args.push(var.into());
            }
        }
        Containers::Docker => {}
    }
    let mut cwl = dir.cwl().into_os_string();
    cwl.push("#main");
    args.push(cwl);
    args.push(dir.params().into());
    args
}

/// The child's environment: nothing of the service's own (its database URL and keys stay
/// out of reach of the tools), only what programs and container engines need, plus the token.
/// cwltool's directory goes first in `PATH`, so tools installed beside it (a virtualenv's
/// `ruff`) are found.
pub fn child_env(engine: &Engine, token: &str, callback_port: u16) -> Vec<(OsString, OsString)> {
    if let Some(sandbox) = &engine.sandbox {
        // Nothing of the host's environment: the sandbox's own paths and ways out.
        let mut env = sandbox.env(callback_port);
        let mut path = engine
            .cwltool
            .parent()
            .map(|d| d.as_os_str().to_owned())
            .unwrap_or_default();
        path.push(":/usr/local/bin:/usr/bin:/bin");
        env.push(("PATH".into(), path));
        env.push(("LANG".into(), "C.UTF-8".into()));
        env.extend(engine.git_env.iter().map(|(k, v)| (k.into(), v.into())));
        if let Some(store) = &engine.images_dir {
            // Read by the container command ([`sandbox::CONTAINER`]), not by the tools.
            env.push((sandbox::IMAGES_VAR.into(), store.into()));
        }
        env.push((TOKEN_VAR.into(), token.into()));
        return env;
    }
    const PASSED: &[&str] = &[
        "HOME",
        "LANG",
        "LC_ALL",
        "TZ",
        "USER",
        "LOGNAME",
        "DOCKER_HOST",
        "DOCKER_CONFIG",
        "DOCKER_CERT_PATH",
        "DOCKER_TLS_VERIFY",
        "CONTAINER_HOST",
        "XDG_RUNTIME_DIR",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ];
    let mut env: Vec<(OsString, OsString)> = PASSED
        .iter()
        .filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v)))
        .collect();
    let mut dirs: Vec<PathBuf> = engine
        .cwltool
        .parent()
        .map(Path::to_path_buf)
        .into_iter()
        .collect();
    let system = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    dirs.extend(std::env::split_paths(&system));
    if let Ok(path) = std::env::join_paths(dirs) {
        env.push(("PATH".into(), path));
    }
    env.extend(engine.git_env.iter().map(|(k, v)| (k.into(), v.into())));
    env.push((TOKEN_VAR.into(), token.into()));
    env
}

/// Processes of a rendered CWL document that *require* a container image
/// (`DockerRequirement` under `requirements`, map or list form): they cannot run on the host.
/// Returns their ids (or classes when they have none).
pub fn container_only_processes(cwl: &str) -> Vec<String> {
    graph_processes(cwl)
        .iter()
        .filter(|p| docker_requirement(p, "requirements").is_some())
        .map(|p| {
            p.get("id")
                .or_else(|| p.get("class"))
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .trim_start_matches('#')
                .to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(containers: Containers) -> Engine {
        Engine {
            cwltool: PathBuf::from("/opt/venv/bin/cwltool"),
            containers,
            sandbox: None,
            git_env: vec![("GIT_HTTP_LOW_SPEED_TIME".into(), "30".into())],
            images_dir: None,
        }
    }

    #[test]
    fn command_line_per_engine() {
        let dir = RunDir::new(Path::new("/data"), 7);
        let args = cwltool_args(&engine(Containers::Host), &dir);
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into()).collect();
        assert!(args.contains(&"--no-container".to_string()));
        assert_eq!(args[args.len() - 2], "/data/runs/7/pipeline.cwl#main");
        assert_eq!(args[args.len() - 1], "/data/runs/7/params.json");
        let i = args
            .iter()
            .position(|a| a == "--preserve-environment")
            .unwrap();
        assert_eq!(args[i + 1], TOKEN_VAR);
        let podman = cwltool_args(&engine(Containers::Podman), &dir);
        assert!(podman.iter().any(|a| a == "--podman"));
        let docker = cwltool_args(&engine(Containers::Docker), &dir);
        assert!(
            !docker
                .iter()
                .any(|a| a == "--no-container" || a == "--podman")
        );
    }

    #[test]
    fn child_env_has_the_token_and_no_service_secrets() {
        let env = child_env(&engine(Containers::Host), "aqrun_x", 8080);
        assert!(env.iter().any(|(k, v)| k == TOKEN_VAR && v == "aqrun_x"));
        assert!(
            env.iter()
                .any(|(k, v)| k == "GIT_HTTP_LOW_SPEED_TIME" && v == "30")
        );
        let path = &env.iter().find(|(k, _)| k == "PATH").unwrap().1;
        assert!(path.to_string_lossy().starts_with("/opt/venv/bin:"));
        for (k, _) in &env {
            let k = k.to_string_lossy();
            assert!(!k.contains("DATABASE") && !k.contains("JWT") && !k.contains("SECRET"));
        }
    }

    #[test]
    fn container_only_tools_are_found() {
        let cwl = r#"
cwlVersion: v1.2
$graph:
- class: Workflow
  id: main
  requirements: {SubworkflowFeatureRequirement: {}}
- class: CommandLineTool
  id: hinted
  hints: {DockerRequirement: {dockerPull: alpine}}
- class: CommandLineTool
  id: '#needs_image'
  requirements: {DockerRequirement: {dockerPull: alpine}}
- class: CommandLineTool
  id: listed
  requirements: [{class: DockerRequirement, dockerPull: x}]
"#;
        assert_eq!(container_only_processes(cwl), vec!["needs_image", "listed"]);
        assert!(container_only_processes("not: [valid").is_empty());
    }

    #[test]
    fn executables_are_resolved() {
        assert!(find_executable("sh").is_some());
        assert!(find_executable("/bin/sh").is_some());
        assert!(find_executable("no-such-program-here").is_none());
        assert!(find_executable("/etc/passwd").is_none());
    }

    #[test]
    fn images_are_named_in_the_store_as_the_export_script_names_them() {
        let store = Path::new("/s");
        // The tag `latest` when there is none; one file name, whatever the reference.
        assert_eq!(image_dir(store, "alpine"), store.join("alpine%3Alatest"));
        assert_eq!(
            image_dir(store, "ghcr.io/astral-sh/ruff:alpine"),
            store.join("ghcr.io%2Fastral-sh%2Fruff%3Aalpine")
        );
        assert_eq!(
            image_dir(store, "localhost:5000/a/b"),
            store.join("localhost%3A5000%2Fa%2Fb%3Alatest")
        );
        assert_eq!(
            image_dir(store, "../../etc").parent(),
            Some(store),
            "never outside the store"
        );
    }

    #[test]
    fn every_named_image_is_listed_once_hints_and_requirements_alike() {
        let cwl = r#"
$graph:
- class: CommandLineTool
  id: a
  hints: {DockerRequirement: {dockerPull: alpine/git}}
- class: CommandLineTool
  id: b
  requirements: [{class: DockerRequirement, dockerPull: cytopia/bandit}, {class: InlineJavascriptRequirement}]
- class: CommandLineTool
  id: c
  requirements: {DockerRequirement: {dockerPull: alpine/git}}
- class: Workflow
  id: main
"#;
        assert_eq!(docker_images(cwl), ["alpine/git", "cytopia/bandit"]);
        assert!(docker_images("not: [yaml").is_empty());
    }

    #[test]
    fn images_mode_hands_cwltool_the_container_command_and_the_runs_ids() {
        let args: Vec<String> = cwltool_args(
            &engine(Containers::Images),
            &RunDir::new(Path::new("/d"), 7),
        )
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
        let i = args
            .iter()
            .position(|a| a == "--user-space-docker-cmd")
            .unwrap();
        assert_eq!(args[i + 1], sandbox::CONTAINER_PATH);
        for var in ["AQ_CALLBACK_URL", "AQ_PIPELINE_ID", "AQ_RUN_ID"] {
            assert!(
                args.windows(2)
                    .any(|w| w == ["--preserve-environment", var]),
                "{var}"
            );
        }
        assert!(!args.iter().any(|a| a == "--no-container"));
    }
}
