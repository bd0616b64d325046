//! The local runner, end to end with real parts: real cwltool (from the project's `.venv`, or
//! `AQ_CWLTOOL`), real git cloning a repository the test makes (`file://`), the demo tools on
//! the host (python3, ruff, curl), job reports posted through the authenticated callback
//! endpoint, and real processes to cancel and time out.
//!
//! Without cwltool these tests are skipped with a note, unless `AQ_REQUIRE_CWLTOOL=1` (CI),
//! where its absence fails them.

use crate::common::{Options, TestApp};
use crate::events::support::{binary, deliver, execute};
use application_quality_api::{
    db::entities::{command_line_tool, commit_status, pipeline_run},
    runs::RunStatus,
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
};
use serde_json::{Value, json};
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

/// How long a run may take here (2 cores shared with the rest of the suite).
const RUN_DEADLINE: Duration = Duration::from_secs(180);

/// cwltool for the tests, or `None` (skip) when it is not installed and not required.
pub fn cwltool() -> Option<PathBuf> {
    let path = std::env::var_os("AQ_CWLTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/cwltool"));
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("AQ_REQUIRE_CWLTOOL").as_deref() != Ok("1"),
        "cwltool is required (AQ_REQUIRE_CWLTOOL=1) but {} does not exist: run scripts/test.sh",
        path.display()
    );
    eprintln!(
        "note: skipping a local-runner test: no cwltool at {} (scripts/test.sh installs it)",
        path.display()
    );
    None
}

/// The test app with the local runner on host tools.
pub struct LocalApp {
    pub app: TestApp,
    pub token: String,
    pub notebook_pipeline: i64,
    pub lint_pipeline: i64,
    pub data_dir: tempfile::TempDir,
}

/// The repository URL policy of these tests: the repositories they make live in the temporary
/// directory (`file://`), the hanging forge is `http://`.
pub fn repo_policy() -> [(&'static str, String); 2] {
    [
        ("REPO_URL_SCHEMES", "https,http,file".into()),
        (
            "REPO_FILE_ROOTS",
            std::env::temp_dir().display().to_string(),
        ),
    ]
}

pub async fn spawn_local(cwltool: &Path, extra: &[(&str, &str)]) -> LocalApp {
    let data_dir = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, String)> = repo_policy()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.extend([
        ("EXECUTOR".into(), "local".into()),
        ("CWLTOOL".into(), cwltool.display().to_string()),
        ("LOCAL_CONTAINERS".into(), "off".into()),
        (
            "LOCAL_DATA_DIR".into(),
            data_dir.path().display().to_string(),
        ),
    ]);
    // A test's own setting replaces the default above.
    env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let app = TestApp::spawn_with(Options {
        env,
        executor_from_config: true,
        ..Default::default()
    })
    .await;
    assert_eq!(app.state.runs.launcher.name(), "local");
    app.seed().await;
    let (_, token) = app.user_with_token("alice", false).await;
    let (status, list) = app.get("/api/pipelines/", Some(&token)).await;
    assert_eq!(status, 200);
    let id_of = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["id"].as_i64())
            .unwrap()
    };
    LocalApp {
        notebook_pipeline: id_of("Notebook static analysis"),
        lint_pipeline: id_of("Python lint"),
        app,
        token,
        data_dir,
    }
}

impl LocalApp {
    /// Starts a run through REST; returns its id.
    pub async fn start(&self, pipeline: i64, parameters: Value) -> i64 {
        let (status, run) = self
            .app
            .post(
                &format!("/api/pipelines/{pipeline}/runs/"),
                Some(&self.token),
                &json!({"parameters": parameters}),
            )
            .await;
        assert_eq!(status, 201, "{run}");
        run["id"].as_i64().unwrap()
    }

    pub async fn run(&self, id: i64) -> Value {
        let (status, run) = self
            .app
            .get(&format!("/api/pipelines/_/runs/{id}/"), Some(&self.token))
            .await;
        assert_eq!(status, 200, "{run}");
        run
    }

    /// Polls until the run reaches `status` (or any terminal status when `None`).
    pub async fn wait(&self, id: i64, status: Option<&str>) -> Value {
        let deadline = Instant::now() + RUN_DEADLINE;
        loop {
            let run = self.run(id).await;
            let s = run["status"].as_str().unwrap_or_default();
            let reached = match status {
                Some(want) => s == want,
                None => RunStatus::parse(s).is_some_and(RunStatus::is_terminal),
            };
            if reached {
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} stuck: {run}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn reports(&self, id: i64) -> Vec<Value> {
        let (status, reports) = self
            .app
            .get(
                &format!("/api/pipelines/_/runs/{id}/jobreports/"),
                Some(&self.token),
            )
            .await;
        assert_eq!(status, 200, "{reports}");
        reports.as_array().unwrap().clone()
    }

    /// The run's log, as its owner reads it (asserting a 200).
    pub async fn log(&self, id: i64) -> String {
        let resp = self
            .app
            .client
            .get(self.app.url(&format!("/api/pipelines/_/runs/{id}/log/")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    }

    /// The process group of a running run (from its working directory).
    pub fn pgid(&self, id: i64) -> Option<i32> {
        let file = self.data_dir.path().join(format!("runs/{id}/pid"));
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }
}

/// The command names of the live (non-zombie) processes in group `pgid`.
pub fn group_commands(pgid: i32) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let s = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let (open, close) = (s.find('(')?, s.rfind(')')?);
            let mut fields = s[close + 1..].split_whitespace();
            let state = fields.next()?;
            let group = fields.nth(1)?.parse::<i32>().ok()?;
            (group == pgid && state != "Z").then(|| s[open + 1..close].to_string())
        })
        .collect()
}

/// Whether any live process is in group `pgid`.
pub fn group_running(pgid: i32) -> bool {
    !group_commands(pgid).is_empty()
}

/// Waits (bounded) until nothing of group `pgid` runs.
pub async fn wait_group_gone(pgid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while group_running(pgid) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.org"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// A notebook (nbformat 4, Python 3 kernel) with these cells.
pub fn notebook(cells: Value) -> String {
    json!({
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}
        },
        "cells": cells
    })
    .to_string()
}

fn code(count: Value, source: &str, outputs: Value) -> Value {
    json!({"cell_type": "code", "execution_count": count, "metadata": {},
           "outputs": outputs, "source": [source]})
}

/// A git repository with notebooks and Python files whose findings the tests know exactly.
pub fn demo_repository(root: &Path) -> String {
    let repo = root.join("demo-repo");
    std::fs::create_dir_all(repo.join("notebooks")).unwrap();
    let title = json!({"cell_type": "markdown", "metadata": {}, "source": ["# A title\n"]});
    std::fs::write(
        repo.join("notebooks/clean.ipynb"),
        notebook(json!([
            title,
            code(json!(1), "x = 1\n", json!([])),
            code(
                json!(2),
                "print(x)\n",
                json!([{"output_type": "stream", "name": "stdout", "text": ["1\n"]}])
            ),
        ])),
    )
    .unwrap();
    std::fs::write(
        repo.join("notebooks/messy.ipynb"),
        notebook(json!([
            title,
            code(json!(2), "y = 2\n", json!([])),
            code(json!(1), "z = 3\n", json!([])),
            code(Value::Null, "", json!([])),
            code(
                json!(3),
                "1 / 0\n",
                json!([{"output_type": "error", "ename": "ZeroDivisionError",
                "evalue": "division by zero", "traceback": []}])
            ),
        ])),
    )
    .unwrap();
    std::fs::write(
        repo.join("bad.py"),
        "import os\n\n\ndef check(value):\n    return value == None\n",
    )
    .unwrap();
    std::fs::write(repo.join("clean.py"), "def add(a, b):\n    return a + b\n").unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "demo"]);
    format!("file://{}", repo.display())
}

pub fn clone_params(url: &str) -> Value {
    json!({"clone_subworkflow": {"clone": {"repo_url": url}}})
}

pub fn lint_params(url: &str) -> Value {
    json!({"clone_subworkflow": {"clone": {"repo_url": url}},
           "python_lint_subworkflow": {"ruff": {"select": "F401,E711"}}})
}

/// A repository whose clone never ends: its `packed-refs` is a named pipe nobody writes, so
/// git blocks reading it, keeping the run busy for as long as a test needs (a forge that
/// hangs, without any network: runs reach none but their callback and public hosts).
pub fn hanging_repository(root: &Path) -> String {
    let url = demo_repository(root);
    let repo = root.join("demo-repo");
    let fifo = std::ffi::CString::new(repo.join(".git/packed-refs").display().to_string()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    url
}

/// The command names of the live processes of run `id` (those working in its directory,
/// inside its sandbox or not).
pub fn run_commands(data_dir: &Path, id: i64) -> Vec<String> {
    let dir = data_dir.join(format!("runs/{id}"));
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name().to_str()?.parse::<u32>().ok()?;
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            let s = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let (open, close) = (s.find('(')?, s.rfind(')')?);
            let state = s[close + 1..].split_whitespace().next()?;
            (cwd.starts_with(&dir) && state != "Z").then(|| s[open + 1..close].to_string())
        })
        .collect()
}

/// Waits (bounded) until nothing of run `id` runs.
pub async fn wait_run_gone(data_dir: &Path, id: i64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !run_commands(data_dir, id).is_empty() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

#[tokio::test]
async fn notebook_and_lint_pipelines_run_and_report_exactly_their_findings() {
    let Some(cwltool) = cwltool() else { return };
    let t = spawn_local(&cwltool, &[]).await;
    let repo_dir = tempfile::tempdir().unwrap();
    let url = demo_repository(repo_dir.path());

    let notebook_run = t.start(t.notebook_pipeline, clone_params(&url)).await;
    let lint_run = t.start(t.lint_pipeline, lint_params(&url)).await;

    let run = t.wait(notebook_run, None).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(run["completion_time"].is_string());
    assert_eq!(run["usage_report"]["executor"], "local");
    assert_eq!(run["usage_report"]["exit_code"], 0);
    assert!(run["usage_report"]["cpu_user_seconds"].as_f64().unwrap() > 0.0);
    assert!(run["output"].is_object(), "cwltool's output object: {run}");
    let reports = t.reports(notebook_run).await;
    assert_eq!(reports.len(), 2, "nbcheck and Ruff: {reports:?}");
    let report = &reports
        .iter()
        .find(|r| r["name"] == "nbcheck")
        .expect("the notebook checker's report")["output"];
    assert_eq!(report["tool"], "nbcheck");
    // Ruff on the notebooks' code cells: nothing among its default rules.
    let ruff = reports.iter().find(|r| r["name"] == "ruff").unwrap();
    assert_eq!(ruff["output"], json!([]), "{ruff}");
    assert_eq!(
        report["files"],
        json!([
            {"path": "./notebooks/clean.ipynb", "issues": []},
            {"path": "./notebooks/messy.ipynb", "issues": [
                {"severity": "warning", "cell": 2, "message": "cells were executed out of order"},
                {"severity": "warning", "cell": 3, "message": "empty code cell"},
                {"severity": "error", "cell": 4, "message": "stored error output: ZeroDivisionError"}
            ]}
        ])
    );
    assert_eq!(
        report["summary"],
        json!({"files": 2, "errors": 1, "warnings": 2})
    );

    let run = t.wait(lint_run, None).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["digest"]["issues"]["error"], 2, "F401 and E711: {run}");
    assert_eq!(run["digest_quality"], "fail");
    let reports = t.reports(lint_run).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    let findings: BTreeSet<(String, String, i64)> = reports[0]["output"]
        .as_array()
        .expect("ruff's JSON diagnostics")
        .iter()
        .map(|d| {
            let file = d["filename"].as_str().unwrap();
            let name = Path::new(file)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (
                name,
                d["code"].as_str().unwrap().to_owned(),
                d["location"]["row"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        findings,
        BTreeSet::from([
            ("bad.py".to_string(), "F401".to_string(), 1),
            ("bad.py".to_string(), "E711".to_string(), 5),
        ])
    );

    // The log: the run's owner reads it, another user does not see the run at all.
    let log = t
        .app
        .client
        .get(t.app.url(&format!("/api/pipelines/_/runs/{lint_run}/log/")))
        .bearer_auth(&t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(log.status(), 200);
    assert!(
        log.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = log.text().await.unwrap();
    assert!(text.contains("Final process status is success"), "{text}");
    assert!(
        !text.contains("aqrun_"),
        "the callback token never reaches the log"
    );
    let (_, other) = t.app.user_with_token("mallory", false).await;
    let (status, _) = t
        .app
        .get(
            &format!("/api/pipelines/_/runs/{lint_run}/log/"),
            Some(&other),
        )
        .await;
    assert_eq!(status, 404);
    let (_, staff) = t.app.user_with_token("root", true).await;
    let (status, _) = t
        .app
        .get(
            &format!("/api/pipelines/_/runs/{lint_run}/log"),
            Some(&staff),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_repository_that_does_not_exist_fails_with_gits_reason() {
    let Some(cwltool) = cwltool() else { return };
    let t = spawn_local(&cwltool, &[]).await;
    let missing = tempfile::tempdir().unwrap();
    let url = format!("file://{}/no-such-repo", missing.path().display());
    let id = t.start(t.lint_pipeline, clone_params(&url)).await;
    let run = t.wait(id, None).await;
    assert_eq!(run["status"], "failed", "{run}");
    let message = run["status_message"].as_str().unwrap();
    assert!(
        message.starts_with("cwltool exited with status"),
        "{message}"
    );
    assert!(
        message.contains("fatal:") && message.contains("no-such-repo"),
        "git's reason is in the message: {message}"
    );
    assert!(t.reports(id).await.is_empty());
    assert_eq!(run["usage_report"]["executor"], "local");
    // No tool ran: nothing says the code passes.
    assert_eq!(run["digest_quality"], "unknown", "{run}");
    assert_eq!(run["digest"]["digest_quality"], "unknown", "{run}");
}

#[tokio::test]
async fn cancel_kills_the_whole_process_group_and_the_run_ends_killed() {
    let Some(cwltool) = cwltool() else { return };
    let t = spawn_local(&cwltool, &[]).await;
    let repo = tempfile::tempdir().unwrap();
    let url = hanging_repository(repo.path());
    let id = t.start(t.lint_pipeline, clone_params(&url)).await;
    t.wait(id, Some("running")).await;
    // The clone step is under way once git (blocked on the repository) runs for the run.
    let deadline = Instant::now() + RUN_DEADLINE;
    let pgid = loop {
        if let Some(pgid) = t.pgid(id)
            && run_commands(t.data_dir.path(), id)
                .iter()
                .any(|c| c.starts_with("git"))
        {
            break pgid;
        }
        assert!(Instant::now() < deadline, "git never started for run {id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, run) = t
        .app
        .post(
            &format!("/api/pipelines/_/runs/{id}/cancel/"),
            Some(&t.token),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "killed");
    assert!(
        wait_group_gone(pgid).await && wait_run_gone(t.data_dir.path(), id).await,
        "processes of run {id} are left behind"
    );
    // Stays killed: the ending process does not overwrite the cancel.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.run(id).await["status"], "killed");
}

#[tokio::test]
async fn the_time_limit_stops_a_run() {
    let Some(cwltool) = cwltool() else { return };
    let t = spawn_local(&cwltool, &[("AQBB_ACTIVE_DEADLINE_SECS", "3")]).await;
    let repo = tempfile::tempdir().unwrap();
    let url = hanging_repository(repo.path());
    let id = t.start(t.lint_pipeline, clone_params(&url)).await;
    let run = t.wait(id, None).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["status_message"]
            .as_str()
            .unwrap()
            .contains("time limit of 3 s"),
        "{run}"
    );
}

#[tokio::test]
async fn excess_runs_wait_in_order_and_never_exceed_the_limit() {
    let Some(cwltool) = cwltool() else { return };
    let limit = 1;
    let t = spawn_local(&cwltool, &[("LOCAL_CONCURRENCY", "1")]).await;
    let repo_dir = tempfile::tempdir().unwrap();
    let url = demo_repository(repo_dir.path());
    // Started one after the other (each POST returns at once): FIFO is about this order.
    let mut ids = Vec::new();
    for _ in 0..limit + 2 {
        ids.push(t.start(t.lint_pipeline, lint_params(&url)).await);
    }
    let mut spans = Vec::new();
    for id in &ids {
        let run = t.wait(*id, None).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(t.reports(*id).await.len(), 1);
        let usage = &run["usage_report"];
        let at =
            |k: &str| chrono::DateTime::parse_from_rfc3339(usage[k].as_str().unwrap()).unwrap();
        spans.push((at("start_time"), at("end_time")));
    }
    // At no process start were `limit` others already executing.
    for (i, (start, _)) in spans.iter().enumerate() {
        let overlapping = spans
            .iter()
            .enumerate()
            .filter(|(j, (s, e))| *j != i && s <= start && start < e)
            .count();
        assert!(overlapping < limit, "more than {limit} at once: {spans:?}");
    }
    // FIFO: executed in the order they were started.
    let mut by_start: Vec<_> = ids.iter().zip(&spans).collect();
    by_start.sort_by_key(|(_, (s, _))| *s);
    let order: Vec<i64> = by_start.iter().map(|(id, _)| **id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(order, sorted);
}

#[tokio::test]
async fn events_run_on_the_local_runner_too() {
    let Some(cwltool) = cwltool() else { return };
    // Commit statuses on, towards a forge that is down: they stay in the outbox, in order.
    let t = spawn_local(
        &cwltool,
        &[
            ("GITHUB_STATUS_ENABLED", "true"),
            ("GITHUB_API_URL", "http://127.0.0.1:9"),
            ("GITHUB_API_TOKEN", "ghp-test-token"),
        ],
    )
    .await;
    let repo_dir = tempfile::tempdir().unwrap();
    let url = demo_repository(repo_dir.path());

    // pipeline.execute, as the seed's curl script sends it
    let reply = deliver(execute(
        &t.app,
        "/api/events/",
        "local-exec-1",
        "alice",
        t.lint_pipeline,
        &json!({"parameters": lint_params(&url)}),
    ))
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let exec_run = reply.header("ce-subject").parse::<i64>().unwrap();

    // a GitHub push through a trigger mapping the clone URL from the payload
    let (status, body) = t
        .app
        .post(
            "/api/triggers/",
            Some(&t.token),
            &json!({
                "slug": "local-push",
                "trigger_type": "github_webhook_push",
                "pipeline": t.notebook_pipeline,
                "cql2_filter": {"op": "=", "args": [{"property": "ref"}, "refs/heads/main"]},
                "params_mapping": {"clone_subworkflow.clone.repo_url": "repository.clone_url"}
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let push = json!({"ref": "refs/heads/main", "after": "0123456789abcdef0123456789abcdef01234567",
        "pusher": {"name": "alice"},
        "repository": {"name": "demo", "owner": {"login": "test"}, "full_name": "test/demo",
            "clone_url": url}});
    let reply = deliver(binary(
        &t.app,
        "/api/events/",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "local-push-1"),
            ("ce-source", "https://github.com/test/demo"),
            ("ce-type", "org.eoepca.webhook.github.push"),
        ],
        &push.to_string(),
    ))
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let push_run = reply.body["run_ids"][0].as_i64().unwrap();

    for (id, names) in [
        (exec_run, ["ruff"].as_slice()),
        (push_run, &["nbcheck", "ruff"]),
    ] {
        let run = t.wait(id, None).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        let mut reports: Vec<String> = t
            .reports(id)
            .await
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        reports.sort();
        assert_eq!(reports, names);
    }
    // The push's run: `pending` when launched (queued on the local runner), then its verdict
    // once it ended, never an early "ended" status for the queued run.
    let states: Vec<String> = commit_status::Entity::find()
        .filter(commit_status::Column::RunId.eq(push_run))
        .order_by_asc(commit_status::Column::Id)
        .all(&t.app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.state)
        .collect();
    assert_eq!(
        states,
        ["pending", "failure"],
        "the messy notebook fails its rules"
    );
}

#[tokio::test]
async fn tools_that_need_images_fail_clearly_without_a_container_engine() {
    let Some(cwltool) = cwltool() else { return };
    let t = spawn_local(&cwltool, &[]).await;
    // An imported tool that requires its image (as the reference's catalogue does).
    let clone = command_line_tool::Entity::find()
        .filter(command_line_tool::Column::Slug.eq("clone"))
        .one(&t.app.state.db)
        .await
        .unwrap()
        .unwrap();
    let docker = "    DockerRequirement:\n      dockerPull: alpine/git:v2.47.2\n";
    let definition = clone
        .definition
        .replace(&format!("  hints:\n{docker}"), "  hints:\n")
        .replace("  requirements:\n", &format!("  requirements:\n{docker}"));
    assert_ne!(definition, clone.definition);
    let mut active: command_line_tool::ActiveModel = clone.into();
    active.definition = Set(definition);
    active.update(&t.app.state.db).await.unwrap();
    let nowhere = format!("file://{}/nowhere", std::env::temp_dir().display());
    let id = t.start(t.lint_pipeline, clone_params(&nowhere)).await;
    let run = t.wait(id, None).await;
    assert_eq!(run["status"], "failed");
    let message = run["status_message"].as_str().unwrap();
    assert!(
        message.starts_with("The local runner cannot execute this run")
            && message.contains("clone_tool")
            && message.contains("container"),
        "{message}"
    );
    let stored = pipeline_run::Entity::find_by_id(id)
        .one(&t.app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.launched_at.is_some());
}

/// The service binary as a process, for what only a real process shows (crash, SIGTERM).
struct Service {
    child: std::process::Child,
    base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_application-quality-api");

fn service_command(db_url: &str, data_dir: &Path, cwltool: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", db_url)
        .env("DATABASE_AUTO_MIGRATE", "true")
        .env("EXECUTOR", "local")
        .env("CWLTOOL", cwltool)
        .env("LOCAL_CONTAINERS", "off")
        .env("LOCAL_DATA_DIR", data_dir)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .envs(repo_policy())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

async fn start_service(db_url: &str, data_dir: &Path, cwltool: &Path) -> Service {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = service_command(db_url, data_dir, cwltool)
        .env("PORT", port.to_string())
        .env("BIND_ADDRESS", "127.0.0.1")
        .arg("serve")
        .spawn()
        .unwrap();
    let service = Service {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = client
            .get(format!("{}/health/readiness", service.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return service;
        }
        assert!(Instant::now() < deadline, "the service did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn call(method: reqwest::Method, url: String, token: &str, body: Option<Value>) -> Value {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{resp:?}");
    resp.json().await.unwrap()
}

/// Waits until git, run by the run's clone step, runs for `run`; returns the run's group.
async fn wait_for_git(data_dir: &Path, run: i64) -> i32 {
    let deadline = Instant::now() + RUN_DEADLINE;
    loop {
        let pgid = std::fs::read_to_string(data_dir.join(format!("runs/{run}/pid")))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pgid) = pgid
            && run_commands(data_dir, run)
                .iter()
                .any(|c| c.starts_with("git"))
        {
            return pgid;
        }
        assert!(Instant::now() < deadline, "git never started for run {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn runs_in_flight_when_the_service_dies_or_stops_end_failed_and_leave_nothing_behind() {
    let Some(cwltool) = cwltool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db_url = crate::common::fresh_database_url(&dir).await;
    let data_dir = dir.path().join("data");
    let seeded = service_command(&db_url, &data_dir, &cwltool)
        .arg("seed")
        .status()
        .unwrap();
    assert!(seeded.success());
    let mut add = service_command(&db_url, &data_dir, &cwltool)
        .args(["user", "add", "alice", "--password-stdin"])
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery\n")
        .unwrap();
    assert!(add.wait().unwrap().success());
    let hang_repo = tempfile::tempdir().unwrap();
    let hang = hanging_repository(hang_repo.path());

    let service = start_service(&db_url, &data_dir, &cwltool).await;
    let tokens = reqwest::Client::new()
        .post(format!("{}/api/token/", service.base))
        .json(&json!({"username": "alice", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let token = tokens["access"].as_str().unwrap().to_owned();
    let pipelines = call(
        reqwest::Method::GET,
        format!("{}/api/pipelines/", service.base),
        &token,
        None,
    )
    .await;
    let lint = pipelines
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Python lint")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let start = |base: String| {
        let token = token.clone();
        let hang = hang.clone();
        async move {
            call(
                reqwest::Method::POST,
                format!("{base}/api/pipelines/{lint}/runs/"),
                &token,
                Some(json!({"parameters": clone_params(&hang)})),
            )
            .await["id"]
                .as_i64()
                .unwrap()
        }
    };

    // 1. The service is killed (a crash, an OOM kill): its sandbox, and every process of the
    // run in it, die with it.
    let crashed = start(service.base.clone()).await;
    let pgid = wait_for_git(&data_dir, crashed).await;
    drop(service);
    assert!(
        wait_run_gone(&data_dir, crashed).await,
        "nothing of the run outlives the service"
    );
    let service = start_service(&db_url, &data_dir, &cwltool).await;
    let deadline = Instant::now() + RUN_DEADLINE;
    let run = loop {
        let run = call(
            reqwest::Method::GET,
            format!("{}/api/pipelines/_/runs/{crashed}/", service.base),
            &token,
            None,
        )
        .await;
        if run["status"] != "running" {
            break run;
        }
        assert!(Instant::now() < deadline, "{run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["status_message"]
            .as_str()
            .unwrap()
            .starts_with("Interrupted"),
        "{run}"
    );
    assert!(
        wait_group_gone(pgid).await,
        "leftovers of the crashed run are killed"
    );

    // 2. SIGTERM (a rollout, scale-down): the run is stopped and recorded before the exit.
    let stopped = start(service.base.clone()).await;
    let pgid = wait_for_git(&data_dir, stopped).await;
    let mut service = service;
    // SAFETY: plain syscall on our own child.
    unsafe {
        libc::kill(service.child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while service.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the service did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(wait_group_gone(pgid).await && wait_run_gone(&data_dir, stopped).await);
    let service = start_service(&db_url, &data_dir, &cwltool).await;
    let run = call(
        reqwest::Method::GET,
        format!("{}/api/pipelines/_/runs/{stopped}/", service.base),
        &token,
        None,
    )
    .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["status_message"]
            .as_str()
            .unwrap()
            .starts_with("Interrupted"),
        "{run}"
    );
    assert_eq!(
        run["usage_report"]["executor"], "local",
        "recorded by the stopping service itself"
    );
}

#[tokio::test]
async fn working_directories_are_removed_after_their_retention() {
    let Some(cwltool) = cwltool() else { return };
    let t = spawn_local(&cwltool, &[("AQBB_SUCCEEDED_RETENTION_SECS", "0")]).await;
    let repo_dir = tempfile::tempdir().unwrap();
    let url = demo_repository(repo_dir.path());
    // Only the clean file: a real run whose verdict is `pass`.
    let mut params = lint_params(&url);
    params["python_lint_subworkflow"]["filter"] = json!({"regex": ".*/clean\\.py"});
    let id = t.start(t.lint_pipeline, params).await;
    let run = t.wait(id, None).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["digest_quality"], "pass", "{run}");
    let dir = t.data_dir.path().join(format!("runs/{id}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while dir.exists() {
        assert!(Instant::now() < deadline, "{} is kept", dir.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = t
        .app
        .get(&format!("/api/pipelines/_/runs/{id}/log/"), Some(&t.token))
        .await;
    assert_eq!(status, 404);
    assert!(
        body["detail"].as_str().unwrap().contains("retention"),
        "{body}"
    );
}

/// One-line start-up refusals, and the Knative guard: a scaled-down pod would kill its runs.
#[tokio::test]
async fn executor_choice_is_explicit_and_the_local_runner_is_refused_inside_knative() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("k.db").display());
    let refused = |extra: &[(&str, &str)]| {
        let mut cmd = service_command(&db_url, &dir.path().join("data"), Path::new("/bin/sh"));
        cmd.stderr(std::process::Stdio::piped())
            .arg("serve")
            .env("PORT", "0");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let msg = refused(&[("K_SERVICE", "application-quality")]);
    assert!(
        msg.contains("K_SERVICE") && msg.contains("LOCAL_RUNNER_FORCE") && !msg.contains('\n'),
        "{msg}"
    );
    let msg = refused(&[("CWLTOOL", "/no/such/cwltool")]);
    assert!(
        msg.contains("cwltool not found") && !msg.contains('\n'),
        "{msg}"
    );
    let msg = refused(&[("EXECUTOR", "sometimes")]);
    assert!(
        msg.contains("sometimes") && msg.contains("`local`") && !msg.contains('\n'),
        "{msg}"
    );

    // Forced, or left to `auto`, the service starts.
    for extra in [
        [("LOCAL_RUNNER_FORCE", "true"), ("EXECUTOR", "local")],
        // (no cluster either way: the tests' KUBECONFIG must not be picked up)
        [("KUBERNETES", "off"), ("EXECUTOR", "auto")],
    ] {
        let config = application_quality_api::config::Config::from_iter(
            [
                ("DATABASE_URL", db_url.as_str()),
                ("K_SERVICE", "application-quality"),
                ("CWLTOOL", "/bin/sh"),
            ]
            .into_iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap();
        let launcher = application_quality_api::select_launcher(&config)
            .await
            .unwrap();
        let expected = if config.local.local_runner_force {
            "local"
        } else {
            "recording"
        };
        assert_eq!(launcher.name(), expected, "{extra:?}");
    }
}

#[tokio::test]
async fn a_queued_run_waits_with_a_message_and_can_be_cancelled_before_it_starts() {
    let Some(cwltool) = cwltool() else { return };
    let t = spawn_local(&cwltool, &[("LOCAL_CONCURRENCY", "1")]).await;
    let repo = tempfile::tempdir().unwrap();
    let url = hanging_repository(repo.path());
    let busy = t.start(t.lint_pipeline, clone_params(&url)).await;
    t.wait(busy, Some("running")).await;
    let queued = t.start(t.lint_pipeline, clone_params(&url)).await;
    let run = t.run(queued).await;
    assert_eq!(run["status"], "starting");
    assert_eq!(
        run["status_message"],
        "Queued for the local runner: 0 run(s) ahead in the queue (users take turns), 1 running, 1 at a time."
    );
    let (status, _) = t
        .app
        .get(
            &format!("/api/pipelines/_/runs/{queued}/log/"),
            Some(&t.token),
        )
        .await;
    assert_eq!(status, 404, "no log before it starts");

    let started = Instant::now();
    let (status, run) = t
        .app
        .post(
            &format!("/api/pipelines/_/runs/{queued}/cancel/"),
            Some(&t.token),
            &json!({}),
        )
        .await;
    assert_eq!((status, run["status"].as_str()), (200, Some("killed")));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cancelling a queued run does not wait"
    );
    let (status, run) = t
        .app
        .post(
            &format!("/api/pipelines/_/runs/{busy}/cancel/"),
            Some(&t.token),
            &json!({}),
        )
        .await;
    assert_eq!((status, run["status"].as_str()), (200, Some("killed")));
    // The slot it would have had passes on without ever starting it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.run(queued).await["status"], "killed");
    assert!(t.pgid(queued).is_none(), "the cancelled run never started");
}
