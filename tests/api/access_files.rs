//! Owner-only files after a start the way `scripts/dev.sh` does it (the real binary: `migrate`,
//! `seed`, `user add`, `serve` with the default SQLite file in the working directory), under
//! the most permissive umask, plus an event export: every file `0600`, every directory `0700`.

use super::{BIN, Served, free_port, http_status, run};
use std::{
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

/// The binary under `umask 000`, in `dir`, with dev.sh's variables.
fn dev_command(dir: &Path) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.env_clear()
        .current_dir(dir)
        .args(["-c", "umask 000 && exec \"$@\"", "sh", BIN])
        .env("DATABASE_URL", "sqlite://application-quality.db?mode=rwc")
        .env("PUBLIC_URL", "http://localhost:8080")
        .env("LOG_FORMAT", "pretty")
        .env("RUST_LOG", "warn")
        .env("KUBERNETES", "off")
        .env("EXECUTOR", "off")
        .env("BIND_ADDRESS", "127.0.0.1");
    cmd
}

/// Every file and directory under `root` with its permission bits.
fn modes(root: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        let mode = meta.permissions().mode() & 0o777;
        out.push((entry.path(), meta.is_dir(), mode));
        if meta.is_dir() {
            out.extend(modes(&entry.path()));
        }
    }
    out
}

fn assert_owner_only(root: &Path) {
    let found = modes(root);
    assert!(!found.is_empty());
    for (path, dir, mode) in found {
        let want = if dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}", path.display());
    }
}

#[tokio::test]
async fn files_are_owner_only_after_a_dev_sh_style_start_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    // The test's own check of the wrapper: a file it makes is world-writable.
    let probe = run(
        Command::new("/bin/sh")
            .current_dir(dir.path())
            .args(["-c", "umask 000 && touch probe"]),
        None,
    );
    assert!(probe.status.success());
    let probe = dir.path().join("probe");
    assert_eq!(
        std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777,
        0o666
    );
    std::fs::remove_file(probe).unwrap();

    for args in [&["migrate"][..], &["seed"]] {
        let out = run(dev_command(dir.path()).args(args), None);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let out = run(
        dev_command(dir.path()).args(["user", "add", "admin", "--staff", "--password-stdin"]),
        Some("admin-password-1\n"),
    );
    assert!(out.status.success(), "{out:?}");

    let port = free_port("127.0.0.1");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let served = Served::start(dev_command(dir.path()), port, addr);
    // Writes while serving: a login (the generated key is in use), a run, an event.
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/api/token/"))
        .json(&serde_json::json!({"username": "admin", "password": "admin-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(format!("{base}/api/events/"))
        .header("ce-id", "files-1")
        .header("ce-specversion", "1.0")
        .header("ce-type", "org.eoepca.application-quality.events.pipeline.execute")
        .header("ce-user", "admin")
        .header("ce-source", "curl")
        .header("ce-subject", "pipelines/1")
        .header("content-type", "application/json")
        .body(r#"{"parameters": {"clone_subworkflow": {"clone": {"repo_url": "https://example.org/r.git"}}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(http_status(addr, "/health/readiness"), Some(200));
    // While serving, SQLite's write-ahead log and shared memory exist: the database's mode.
    for name in [
        "application-quality.db",
        "application-quality.db-wal",
        "application-quality.db-shm",
    ] {
        assert!(dir.path().join(name).exists(), "{name}");
    }
    assert_owner_only(dir.path());
    drop(served);

    let out = run(
        dev_command(dir.path()).args(["events", "export", "--output", "events.jsonl"]),
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        std::fs::read_to_string(dir.path().join("events.jsonl"))
            .unwrap()
            .contains("files-1")
    );
    assert_owner_only(dir.path());
}
