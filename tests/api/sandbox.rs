//! The local runner's sandbox, tried as an attacker would: an ordinary user with a hostile
//! repository, and a staff template whose step tries to leave the sandbox. Same sandbox as
//! `scripts/dev.sh` gives (the defaults: `LOCAL_SANDBOX=bwrap`), real cwltool, real runs
//! through the public API; what the user can read afterwards (the run, its reports, its log)
//! must hold nothing of the host.

use crate::local_runs::{LocalApp, clone_params, cwltool, demo_repository, git, spawn_local};
use application_quality_api::db::entities::command_line_tool;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::Value;
use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

/// Everything the run's user can read about run `id`: the run object, its reports and its log.
async fn readable(t: &LocalApp, id: i64) -> String {
    let run = t.run(id).await;
    let reports = t.reports(id).await;
    let log = t.log(id).await;
    format!("{run}\n{}\n{log}", Value::Array(reports))
}

fn secret() -> String {
    format!("aq-secret-{}", uuid::Uuid::new_v4().simple())
}

/// A file only root may read, holding `content` (what `/etc/shadow` is to the host).
fn root_only_file(dir: &Path, content: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("root-only");
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A repository whose Ruff configuration points at `target` (`extend`): Ruff reads it and
/// quotes it when it does not parse.
fn repository_extending(root: &Path, target: &str) -> String {
    let url = demo_repository(root);
    let repo = root.join("demo-repo");
    std::fs::write(repo.join("ruff.toml"), format!("extend = \"{target}\"\n")).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "hostile configuration"]);
    url
}

#[tokio::test]
async fn a_hostile_repository_reads_nothing_of_the_host_nor_of_other_runs() {
    let Some(cwltool) = cwltool() else { return };
    let t = spawn_local(&cwltool, &[]).await;
    let host_dir = tempfile::tempdir().unwrap();
    let host_secret = secret();
    let root_only = root_only_file(host_dir.path(), &host_secret);

    // Another run of the service, with a parameter file in its working directory.
    let repos = tempfile::tempdir().unwrap();
    let first_url = demo_repository(repos.path());
    let first = t.start(t.lint_pipeline, clone_params(&first_url)).await;
    let run = t.wait(first, None).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let other_run_file = t.data_dir.path().join(format!("runs/{first}/params.json"));
    assert!(other_run_file.is_file(), "kept for its retention");

    for target in [
        root_only.display().to_string(),
        "/etc/shadow".to_string(),
        "/proc/self/environ".to_string(),
        "/proc/1/environ".to_string(),
        other_run_file.display().to_string(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let url = repository_extending(dir.path(), &target);
        let id = t.start(t.lint_pipeline, clone_params(&url)).await;
        let run = t.wait(id, None).await;
        let seen = readable(&t, id).await;
        assert_eq!(
            run["status"], "failed",
            "{target}: Ruff cannot read it: {run}"
        );
        assert!(!seen.contains(&host_secret), "{target}: {seen}");
        assert!(!seen.contains("root:"), "{target}: /etc/shadow: {seen}");
        assert!(
            !seen.contains("aqrun_"),
            "{target}: a callback token: {seen}"
        );
        assert!(!seen.contains("DATABASE_URL"), "{target}: {seen}");
        assert!(
            !seen.contains(&first_url),
            "{target}: the other run's parameters: {seen}"
        );
    }
}

/// A staff template's clone step that tries every way out, printing what it got.
const ESCAPE: &str = r#"
import os, socket, subprocess, sys, time
args = dict(a.split("=", 1) for a in sys.argv[1:])
def say(*words):
    print("PROBE", *words, file=sys.stderr, flush=True)
say("uid", os.getuid())
for name in ("root_only", "data_file", "db_file", "shadow"):
    try:
        say("read", name, open(args[name]).read().strip())
    except OSError as e:
        say("denied", name, type(e).__name__)
say("service_proc", os.path.exists("/proc/%s/environ" % args["service_pid"]))
say("processes", len([p for p in os.listdir("/proc") if p.isdigit()]))
for path in ("/usr/aq-escape", args["outside"], "/etc/aq-escape"):
    try:
        open(path, "w").write("x")
        say("wrote", path)
    except OSError as e:
        say("denied", "write", type(e).__name__)
for name in ("postgres", "listener"):
    host, port = args[name].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        say("connected", name)
    except OSError as e:
        say("denied", name, type(e).__name__)
proxy = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_connect}", "--max-time", "10",
    "--noproxy", "", "-x", os.environ.get("https_proxy", ""), "https://" + args["postgres"] + "/"],
    capture_output=True, text=True)
say("proxy", proxy.stdout or "none")
children, n = [], 0
try:
    while n < 5000:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
        n += 1
except OSError as e:
    say("fork_limit", n, type(e).__name__)
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
os.mkdir("repo")
say("done")
"#;

/// The clone tool, replaced the way staff can (a tool definition is code): runs [`ESCAPE`].
async fn install_escape_tool(t: &LocalApp, probes: &[(&str, String)]) {
    let clone = command_line_tool::Entity::find()
        .filter(command_line_tool::Column::Slug.eq("clone"))
        .one(&t.app.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut args = String::new();
    for (k, v) in probes {
        args.push_str(&format!(
            "  - {}\n",
            serde_json::to_string(&format!("{k}={v}")).unwrap()
        ));
    }
    let script = ESCAPE
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect::<String>();
    let definition = format!(
        "- class: CommandLineTool\n  id: clone_tool\n  requirements:\n    NetworkAccess:\n      networkAccess: true\n  inputs:\n    repo_url: string\n    repo_branch:\n      type: string\n      default: \"\"\n  outputs:\n    repo_directory:\n      type: Directory\n      outputBinding:\n        glob: repo\n  baseCommand: [python3, -c]\n  arguments:\n  - |-\n{script}{args}"
    );
    let mut active: command_line_tool::ActiveModel = clone.into();
    active.definition = Set(definition);
    active.update(&t.app.state.db).await.unwrap();
}

#[tokio::test]
async fn a_staff_templates_step_is_contained() {
    let Some(cwltool) = cwltool() else { return };
    let jwt_secret = secret();
    let t = spawn_local(&cwltool, &[("JWT_SECRET", jwt_secret.as_str())]).await;
    let host_dir = tempfile::tempdir().unwrap();
    let host_secret = secret();
    let root_only = root_only_file(host_dir.path(), &host_secret);
    let data_file = t.data_dir.path().join("service-secret");
    std::fs::write(&data_file, &host_secret).unwrap();
    let outside = host_dir.path().join("written-from-a-run");

    // A loopback service of this machine that must never see a connection from a run.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener_addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    // The SQLite file of the service (on PostgreSQL, the data file stands in for it).
    let db_file = t
        .app
        .state
        .config
        .database
        .database_url
        .strip_prefix("sqlite://")
        .and_then(|rest| rest.split('?').next())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| data_file.clone());
    install_escape_tool(
        &t,
        &[
            ("root_only", root_only.display().to_string()),
            ("data_file", data_file.display().to_string()),
            ("db_file", db_file.display().to_string()),
            ("shadow", "/etc/shadow".into()),
            ("service_pid", std::process::id().to_string()),
            ("outside", outside.display().to_string()),
            ("postgres", "127.0.0.1:5432".into()),
            ("listener", listener_addr.to_string()),
        ],
    )
    .await;

    let repos = tempfile::tempdir().unwrap();
    let id = t
        .start(
            t.lint_pipeline,
            clone_params(&demo_repository(repos.path())),
        )
        .await;
    let run = t.wait(id, None).await;
    let seen = readable(&t, id).await;
    assert_eq!(
        run["status"], "succeeded",
        "the run still completes: {seen}"
    );
    let probes: Vec<&str> = seen
        .lines()
        .filter_map(|l| l.split_once("PROBE ").map(|(_, p)| p))
        .collect();
    let probe = |prefix: &str| -> Vec<&str> {
        probes
            .iter()
            .copied()
            .filter(|p| p.starts_with(prefix))
            .collect()
    };
    assert_eq!(probe("done").len(), 1, "{seen}");
    // Not root, whatever the service runs as.
    let uid: u32 = probe("uid ")[0][4..].parse().unwrap();
    assert_ne!(uid, 0);
    // Nothing of the host, the service or its database is readable.
    assert!(probe("read").is_empty(), "{probes:?}");
    assert_eq!(probe("denied").len(), 4 + 3 + 2, "{probes:?}");
    assert!(!seen.contains(&host_secret) && !seen.contains(&jwt_secret));
    assert_eq!(probe("service_proc"), vec!["service_proc False"]);
    let processes: usize = probe("processes ")[0][10..].parse().unwrap();
    assert!(processes < 20, "its own processes only: {processes}");
    // Nothing written outside its directory.
    assert!(probe("wrote").is_empty(), "{probes:?}");
    assert!(!outside.exists());
    // No loopback service of the machine, directly or through the egress proxy.
    assert!(probe("connected").is_empty(), "{probes:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    assert_eq!(probe("proxy"), vec!["proxy 403"], "{probes:?}");
    // Forks end at the process limit (default 256), harmlessly.
    let forks = probe("fork_limit");
    assert_eq!(forks.len(), 1, "{probes:?}");
    let n: usize = forks[0].split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((100..256).contains(&n), "{forks:?}");
    // And the run went on to lint what it "cloned" and report through its callback.
    assert_eq!(t.reports(id).await.len(), 1);
}

/// `scripts/dev.sh`'s own case: the repository is the directory the service works in, which
/// holds its data directory (other runs, the sandbox's sockets). The run succeeds, and the
/// data directory inside the repository is empty for it.
#[tokio::test]
async fn the_services_directory_inside_a_repository_is_hidden_from_its_runs() {
    let Some(cwltool) = cwltool() else { return };
    let root = tempfile::tempdir().unwrap();
    let url = demo_repository(root.path());
    let data_dir = root.path().join("demo-repo/app-data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let host_secret = secret();
    let data_file = data_dir.join("service-secret");
    std::fs::write(&data_file, &host_secret).unwrap();
    let data = data_dir.display().to_string();
    let t = spawn_local(&cwltool, &[("LOCAL_DATA_DIR", data.as_str())]).await;

    let id = t.start(t.lint_pipeline, clone_params(&url)).await;
    let run = t.wait(id, None).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(t.reports(id).await.len(), 1);

    let nowhere = "/nonexistent".to_string();
    install_escape_tool(
        &t,
        &[
            ("root_only", nowhere.clone()),
            ("data_file", data_file.display().to_string()),
            ("db_file", nowhere.clone()),
            ("shadow", nowhere.clone()),
            ("service_pid", std::process::id().to_string()),
            ("outside", data_dir.join("written").display().to_string()),
            ("postgres", "127.0.0.1:5432".into()),
            ("listener", "127.0.0.1:9".into()),
        ],
    )
    .await;
    let id = t.start(t.lint_pipeline, clone_params(&url)).await;
    let run = t.wait(id, None).await;
    let seen = readable(&t, id).await;
    assert_eq!(run["status"], "succeeded", "{seen}");
    assert!(seen.contains("PROBE denied data_file"), "{seen}");
    assert!(!seen.contains(&host_secret));
    assert!(!data_dir.join("written").exists());
}

/// cwltool's schemas: the first run parses them, the runner then caches them (owner-written,
/// read-only to runs) and the following runs read them, with the same findings; a damaged
/// cache only means parsing them again.
#[tokio::test]
async fn cwltools_schemas_are_cached_for_later_runs_and_a_damaged_cache_is_ignored() {
    use std::os::unix::fs::MetadataExt;
    let Some(cwltool) = cwltool() else { return };
    let t = spawn_local(&cwltool, &[]).await;
    let repos = tempfile::tempdir().unwrap();
    let url = demo_repository(repos.path());
    let run_once = |expected: &'static str| {
        let t = &t;
        let url = url.clone();
        async move {
            let id = t.start(t.lint_pipeline, clone_params(&url)).await;
            let run = t.wait(id, None).await;
            assert_eq!(run["status"], "succeeded", "{run}");
            assert_eq!(run["usage_report"]["cwltool_schemas"], expected, "{run}");
            // Each finding's rule and place (file paths name the run's own directory).
            let mut findings: Vec<String> = t
                .reports(id)
                .await
                .iter()
                .filter_map(|r| r["output"].as_array().cloned())
                .flatten()
                .map(|f| format!("{} {} {}", f["code"], f["location"], f["end_location"]))
                .collect();
            findings.sort();
            assert!(!findings.is_empty(), "the demo repository has findings");
            findings
        }
    };
    let parsed = run_once("parsed").await;

    let cache = schema_cache_file(t.data_dir.path()).await;
    // The sandbox's shared files are written once: replacing one while another run's
    // bubblewrap binds it failed that run ("Can't bind mount ... (deleted)").
    let init = t.data_dir.path().join("sandbox/init.py");
    let inode = std::fs::metadata(&init).unwrap().ino();
    let meta = std::fs::metadata(&cache).unwrap();
    assert_eq!(
        meta.mode() & 0o777,
        0o644,
        "written by the service, read-only to runs"
    );
    // SAFETY: geteuid has no preconditions.
    assert_eq!(meta.uid(), unsafe { libc::geteuid() });

    assert_eq!(
        run_once("cached").await,
        parsed,
        "same findings from cached schemas"
    );

    assert_eq!(
        std::fs::metadata(&init).unwrap().ino(),
        inode,
        "init.py never replaced"
    );
    assert_eq!(
        std::fs::metadata(&cache).unwrap().ino(),
        meta.ino(),
        "nor the cache"
    );

    std::fs::write(&cache, b"not a pickle").unwrap();
    assert_eq!(run_once("parsed").await, parsed);
}

/// The runner's schema cache in `data_dir`, once there is one (its name depends on the
/// installation).
async fn schema_cache_file(data_dir: &Path) -> std::path::PathBuf {
    let dir = data_dir.join("sandbox");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let found = std::fs::read_dir(&dir).ok().and_then(|entries| {
            entries.flatten().map(|e| e.path()).find(|p| {
                p.extension().is_some_and(|x| x == "pickle")
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("schemas-"))
            })
        });
        if let Some(path) = found {
            return path;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no schema cache written"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// An image's files as `scripts/local-images.sh` leaves them in the store: a static busybox
/// as its programs, a marker file, the mount points cwltool uses, and its configuration.
fn busybox_image(store: &Path, reference: &str) -> Option<()> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())?;
    let root =
        store.join(url::form_urlencoded::byte_serialize(reference.as_bytes()).collect::<String>());
    for dir in [
        "bin",
        "etc",
        "proc",
        "dev",
        "tmp",
        "var/spool/cwl",
        "var/lib/cwl",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "id", "ls", "echo", "test", "pwd", "wc"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        root.join("etc/aq-image"),
        format!("the image {reference}\n"),
    )
    .unwrap();
    let config = serde_json::json!({"Env": ["PATH=/bin", "IMAGE_ONLY=from-the-image"]});
    std::fs::write(format!("{}.json", root.display()), config.to_string()).unwrap();
    Some(())
}

/// `LOCAL_CONTAINERS=images`: a step that requires its image runs in that image's files, in
/// the run's sandbox, one level further in: it sees the image's programs and files, not the
/// host's, its own input at the path cwltool chose, the image's environment with cwltool's,
/// and it runs as the run's user. A run naming an image the store does not have is refused
/// before anything runs, naming the image.
#[tokio::test]
async fn tools_run_in_their_images_from_the_store_nested_in_the_sandbox() {
    let Some(cwltool) = cwltool() else { return };
    if application_quality_api::local::engine::find_executable("bwrap").is_none() {
        assert!(
            std::env::var("AQ_REQUIRE_CWLTOOL").is_err(),
            "bubblewrap is required here"
        );
        return;
    }
    let store = tempfile::tempdir().unwrap();
    if busybox_image(store.path(), "aq-test/busybox:1").is_none() {
        assert!(
            std::env::var("AQ_REQUIRE_CWLTOOL").is_err(),
            "a static busybox (Debian's busybox-static) is required here"
        );
        return;
    }
    // The store is read by the runs' users.
    run_chmod(store.path());
    let store_path = store.path().display().to_string();
    let t = spawn_local(
        &cwltool,
        &[
            ("LOCAL_CONTAINERS", "images"),
            ("LOCAL_IMAGES_DIR", store_path.as_str()),
        ],
    )
    .await;
    let (_, staff) = t.app.user_with_token("imager", true).await;
    let template = r#"cwlVersion: v1.2
$graph:
- class: Workflow
  id: main
  inputs:
    message:
      type: string
      default: "hello from the host"
  outputs:
    seen:
      type: File
      outputSource: look/seen
  steps:
    look:
      run: '#look_tool'
      in:
        message: message
      out: [seen]
- class: CommandLineTool
  id: look_tool
  requirements:
    DockerRequirement:
      dockerPull: aq-test/busybox:1
  inputs:
    message: string
  outputs:
    seen:
      type: stdout
  stdout: seen.txt
  baseCommand: sh
  arguments:
  - -c
  - |
    cat /etc/aq-image
    echo "message: $1"
    echo "uid: `id -u`"
    echo "pwd: `pwd`"
    echo "image env: $IMAGE_ONLY"
    echo "run: $AQ_RUN_ID"
    if test -e /usr/bin/python3; then echo "host programs visible"; fi
    if test -e /etc/os-release; then echo "host /etc visible"; fi
    ls /
  - look
  - $(inputs.message)
"#;
    let (status, pipeline) = t
        .app
        .post(
            "/api/pipelines/",
            Some(&staff),
            &serde_json::json!({"name": "In an image", "template": template, "owner": null, "version": "1"}),
        )
        .await;
    assert_eq!(status, 201, "{pipeline}");
    let pipeline = pipeline["id"].as_i64().unwrap();
    let id = t.start(pipeline, serde_json::json!({})).await;
    let run = t.wait(id, None).await;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", t.log(id).await);
    let location = run["output"]["seen"]["location"].as_str().unwrap();
    let seen = std::fs::read_to_string(location.trim_start_matches("file://")).unwrap();
    assert!(seen.contains("the image aq-test/busybox:1"), "{seen}");
    assert!(seen.contains("message: hello from the host"), "{seen}");
    // The step's working directory: where cwltool mounted it (a path of its choosing).
    let pwd = seen.lines().find_map(|l| l.strip_prefix("pwd: /")).unwrap();
    assert!(!pwd.is_empty() && !pwd.contains('/'), "{seen}");
    assert!(seen.contains("image env: from-the-image"), "{seen}");
    // As in a step pod: the run's own ids, for images that post their reports themselves.
    assert!(seen.contains(&format!("run: {id}\n")), "{seen}");
    assert!(!seen.contains("host programs visible"), "{seen}");
    assert!(!seen.contains("host /etc visible"), "{seen}");
    // Not the service's user: the run's own (root runs them as users of their own).
    let uid: u32 = seen
        .lines()
        .find_map(|l| l.strip_prefix("uid: "))
        .unwrap()
        .parse()
        .unwrap();
    if unsafe { libc::geteuid() } == 0 {
        assert_ne!(uid, 0, "{seen}");
    }
    // An image the store does not have: refused before anything runs, naming it.
    let missing = template.replace("aq-test/busybox:1", "aq-test/elsewhere:2");
    let (status, other) = t
        .app
        .post(
            "/api/pipelines/",
            Some(&staff),
            &serde_json::json!({"name": "Elsewhere", "template": missing, "owner": null, "version": "1"}),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    let id = t
        .start(other["id"].as_i64().unwrap(), serde_json::json!({}))
        .await;
    let run = t.wait(id, None).await;
    assert_eq!(run["status"], "failed");
    let message = run["status_message"].as_str().unwrap();
    assert!(
        message.contains("aq-test/elsewhere:2") && message.contains("image store"),
        "{message}"
    );
}

/// World-readable, as `scripts/local-images.sh` leaves the store.
fn run_chmod(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in walk(dir) {
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = if meta.is_dir() {
            0o755
        } else {
            0o755 & (meta.permissions().mode() | 0o644)
        };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        for entry in std::fs::read_dir(dir).unwrap() {
            out.extend(walk(&entry.unwrap().path()));
        }
    }
    out
}
