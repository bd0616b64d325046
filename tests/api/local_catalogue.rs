//! The demo catalogue's pipelines, each run for real on the local runner (real cwltool, every
//! run in its sandbox) on repositories these tests make, and each report compared with what
//! the pinned tool itself prints when run directly, from the same virtualenv, on the same
//! files; each job-report digest compared with the documented mapping (docs/verdicts.md)
//! applied to the tool's own output, and each run's digest with their sum.
//!
//! Runs are grouped (one repository holds the clean, faulty and slow cases of a pipeline) and
//! started together, so the whole module costs a few runs' time.

use crate::local_runs::{LocalApp, cwltool, git, notebook, spawn_local};
use serde_json::{Value, json};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

const COUNTERS: [&str; 6] = [
    "info",
    "convention",
    "warning",
    "error",
    "security",
    "critical",
];

/// The category of a Ruff (or Flake8) rule code: the longest matching prefix of the
/// reference's table, else warning.
fn ruff_category(code: &str) -> &'static str {
    const TABLE: [(&str, &str); 14] = [
        ("ERA", "info"),
        ("T20", "info"),
        ("FIX", "info"),
        ("C90", "convention"),
        ("C4", "convention"),
        ("UP", "convention"),
        ("S", "security"),
        ("F", "error"),
        ("E", "error"),
        ("W", "warning"),
        ("N", "convention"),
        ("D", "convention"),
        ("I", "convention"),
        ("B", "critical"),
    ];
    TABLE
        .iter()
        .filter(|(p, _)| code.starts_with(p))
        .max_by_key(|(p, _)| p.len())
        .map_or("warning", |(_, c)| c)
}

/// Six counters, all zero.
fn zero() -> BTreeMap<String, i64> {
    COUNTERS.iter().map(|c| (c.to_string(), 0)).collect()
}

/// The six counters of a digest (`issues`).
fn counters(digest: &Value) -> BTreeMap<String, i64> {
    COUNTERS
        .iter()
        .map(|c| (c.to_string(), digest["issues"][c].as_i64().unwrap_or(-1)))
        .collect()
}

/// A program of the virtualenv cwltool comes from (where the pinned tools are installed).
fn venv_tool(cwltool: &Path, name: &str) -> PathBuf {
    let path = cwltool.parent().unwrap().join(name);
    assert!(
        path.is_file(),
        "{} is missing: scripts/test.sh installs scripts/runner-requirements.txt",
        path.display()
    );
    path
}

/// Runs a pinned tool directly in `dir`; returns its standard output (any exit status: the
/// tools signal findings by it).
fn run_direct(cwltool: &Path, dir: &Path, tool: &str, args: &[&str]) -> (Option<i32>, String) {
    let bin = venv_tool(cwltool, tool);
    let mut cmd = Command::new(&bin);
    cmd.args(args).current_dir(dir);
    // The virtualenv first, as on the local runner (papermill's kernel is its python).
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env(
        "PATH",
        format!("{}:{path}", cwltool.parent().unwrap().display()),
    );
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn commit(repo: &Path) -> String {
    git(repo, &["init", "-q"]);
    git(repo, &["add", "."]);
    git(repo, &["commit", "-qm", "test"]);
    format!("file://{}", repo.display())
}

fn write(repo: &Path, rel: &str, text: &str) {
    let path = repo.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A module every Python tool of the catalogue finds nothing in.
const CLEAN_PY: &str = "\"\"\"Arithmetic helpers.\"\"\"\n\n\ndef add(first, second):\n    \"\"\"Return the sum of two numbers.\"\"\"\n    return first + second\n";

/// A module with findings for each tool: an unused import, a comparison to None, a shell call
/// (Bandit), eval, a missing docstring and bad spacing.
const FAULTY_PY: &str = "import os\nimport subprocess\n\n\ndef check(value):\n    return value == None\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n\nresult=eval(\"1 + 1\")\n";

/// The job reports of a run by (name, instance).
async fn reports_by_key(t: &LocalApp, id: i64) -> BTreeMap<(String, String), Value> {
    t.reports(id)
        .await
        .into_iter()
        .map(|r| {
            (
                (
                    r["name"].as_str().unwrap().to_string(),
                    r["instance"].as_str().unwrap_or_default().to_string(),
                ),
                r,
            )
        })
        .collect()
}

/// Checks the run's digest is the sum of its reports' digests.
fn assert_run_digest_is_the_sum(run: &Value, reports: &BTreeMap<(String, String), Value>) {
    let mut sum = zero();
    for r in reports.values() {
        for (k, v) in counters(&r["digest"]) {
            *sum.get_mut(&k).unwrap() += v;
        }
    }
    assert_eq!(counters(&run["digest"]), sum, "{run}");
}

fn pipeline_id(list: &Value, name: &str) -> i64 {
    list.as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["id"].as_i64())
        .unwrap_or_else(|| panic!("demo pipeline {name:?}"))
}

async fn pipelines(t: &LocalApp) -> Value {
    let (status, list) = t.app.get("/api/pipelines/", Some(&t.token)).await;
    assert_eq!(status, 200);
    list
}

/// Findings of a report as (file name, code, line), for comparing with a direct run.
fn key(file: &str, code: &str, line: i64) -> (String, String, i64) {
    let name = Path::new(file)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    (name, code.to_string(), line)
}

fn ruff_findings(report: &Value) -> BTreeSet<(String, String, i64)> {
    report
        .as_array()
        .expect("Ruff's JSON diagnostics")
        .iter()
        .map(|d| {
            key(
                d["filename"].as_str().unwrap(),
                d["code"].as_str().unwrap_or_default(),
                d["location"]["row"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn ruff_counts(report: &Value) -> BTreeMap<String, i64> {
    let mut c = zero();
    for d in report.as_array().unwrap() {
        if let Some(code) = d["code"].as_str().filter(|c| !c.is_empty()) {
            *c.get_mut(ruff_category(code)).unwrap() += 1;
        }
    }
    c
}

fn flake8_findings(report: &Value) -> BTreeSet<(String, String, i64)> {
    report
        .as_object()
        .expect("flake8-json's object of files")
        .values()
        .flat_map(|v| v.as_array().unwrap().clone())
        .map(|d| {
            key(
                d["filename"].as_str().unwrap(),
                d["code"].as_str().unwrap(),
                d["line_number"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn flake8_counts(report: &Value) -> BTreeMap<String, i64> {
    let mut c = zero();
    for v in report.as_object().unwrap().values() {
        for d in v.as_array().unwrap() {
            *c.get_mut(ruff_category(d["code"].as_str().unwrap()))
                .unwrap() += 1;
        }
    }
    c
}

fn pylint_findings(report: &Value) -> BTreeSet<(String, String, i64)> {
    report
        .as_array()
        .expect("Pylint's JSON messages")
        .iter()
        .map(|m| {
            key(
                m["path"].as_str().unwrap(),
                m["message-id"].as_str().unwrap(),
                m["line"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn pylint_counts(report: &Value) -> BTreeMap<String, i64> {
    let mut c = zero();
    for m in report.as_array().unwrap() {
        let category = match m["type"].as_str().unwrap() {
            "fatal" => "critical",
            "error" => "error",
            "warning" => "warning",
            "convention" => "convention",
            "refactor" => "info",
            _ => continue,
        };
        *c.get_mut(category).unwrap() += 1;
    }
    c
}

fn bandit_findings(report: &Value) -> BTreeSet<(String, String, i64)> {
    report["results"]
        .as_array()
        .expect("Bandit's results")
        .iter()
        .map(|r| {
            key(
                r["filename"].as_str().unwrap(),
                r["test_id"].as_str().unwrap(),
                r["line_number"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn bandit_counts(report: &Value) -> BTreeMap<String, i64> {
    let totals = &report["metrics"]["_totals"];
    let mut c = zero();
    c.insert(
        "info".to_string(),
        totals["SEVERITY.LOW"].as_i64().unwrap_or(0),
    );
    c.insert(
        "warning".into(),
        totals["SEVERITY.MEDIUM"].as_i64().unwrap_or(0),
    );
    c.insert(
        "error".to_string(),
        totals["SEVERITY.HIGH"].as_i64().unwrap_or(0),
    );
    c
}

/// What each Python tool prints when run directly on `files` of `dir`, with the options the
/// catalogue's tools use (Pylint: E0401 disabled, the default).
fn python_tools_direct(
    cwltool: &Path,
    dir: &Path,
    files: &[&str],
) -> BTreeMap<&'static str, Value> {
    let parse = |(_, out): (Option<i32>, String)| -> Value {
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let mut out = BTreeMap::new();
    let args = |head: &[&'static str]| -> Vec<String> {
        head.iter()
            .map(|s| s.to_string())
            .chain(files.iter().map(|s| s.to_string()))
            .collect()
    };
    let run = |tool: &str, a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        run_direct(cwltool, dir, tool, &refs)
    };
    out.insert(
        "bandit",
        parse(run(
            "bandit",
            args(&["--format", "json", "--quiet", "--exit-zero"]),
        )),
    );
    out.insert(
        "flake8",
        parse(run("flake8", args(&["--format", "json", "--exit-zero"]))),
    );
    out.insert(
        "pylint",
        parse(run(
            "pylint",
            args(&[
                "--output-format",
                "json",
                "--exit-zero",
                "--persistent",
                "n",
                "--disable=E0401",
            ]),
        )),
    );
    out.insert(
        "ruff",
        parse(run(
            "ruff",
            args(&[
                "check",
                "--exit-zero",
                "--no-cache",
                "--output-format",
                "json",
                "--select",
                "E4,E7,E9,F",
            ]),
        )),
    );
    out
}

type Findings = fn(&Value) -> BTreeSet<(String, String, i64)>;
type Counts = fn(&Value) -> BTreeMap<String, i64>;

fn python_checks(tool: &str) -> (Findings, Counts) {
    match tool {
        "bandit" => (bandit_findings, bandit_counts),
        "flake8" => (flake8_findings, flake8_counts),
        "pylint" => (pylint_findings, pylint_counts),
        "ruff" => (ruff_findings, ruff_counts),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_pipeline_reports_what_bandit_flake8_pylint_and_ruff_print() {
    let Some(cwltool) = cwltool() else { return };
    let t = spawn_local(&cwltool, &[]).await;
    let list = pipelines(&t).await;
    let python = pipeline_id(&list, "Python pipeline");
    let root = tempfile::tempdir().unwrap();

    let faulty = root.path().join("faulty");
    write(&faulty, "app/clean.py", CLEAN_PY);
    write(&faulty, "app/faulty.py", FAULTY_PY);
    write(&faulty, "README.md", "not Python\n");
    let faulty_url = commit(&faulty);
    let clean = root.path().join("clean");
    write(&clean, "clean.py", CLEAN_PY);
    let clean_url = commit(&clean);
    // Clean code, but Ruff cannot read the repository's configuration: the run fails, its
    // other tools' reports (if any came first) find nothing.
    let broken = root.path().join("broken");
    write(&broken, "clean.py", CLEAN_PY);
    write(&broken, "ruff.toml", "this is = not [ TOML\n");
    let broken_url = commit(&broken);

    let params = |url: &str| json!({"clone_subworkflow": {"clone": {"repo_url": url}}});
    let faulty_run = t.start(python, params(&faulty_url)).await;
    let clean_run = t.start(python, params(&clean_url)).await;
    let broken_run = t.start(python, params(&broken_url)).await;

    // The tools themselves, meanwhile, on the same files (as the filter step lists them).
    let direct = python_tools_direct(&cwltool, &faulty, &["./app/clean.py", "./app/faulty.py"]);

    let run = t.wait(faulty_run, None).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let reports = reports_by_key(&t, faulty_run).await;
    let names: Vec<&str> = reports.keys().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["bandit", "flake8", "pylint", "ruff"], "{reports:?}");
    for (tool, own) in &direct {
        let report = &reports[&(tool.to_string(), String::new())];
        let (findings, counts) = python_checks(tool);
        let expected = findings(own);
        assert!(!expected.is_empty(), "{tool} finds something: {own}");
        assert_eq!(findings(&report["output"]), expected, "{tool}");
        assert_eq!(counters(&report["digest"]), counts(own), "{tool}: {report}");
        assert_eq!(report["digest"]["status"], "ok", "{tool}");
        assert_eq!(report["digest"]["tool"]["name"], *tool);
    }
    // The faulty module's own findings, as these tools name them.
    let all: BTreeSet<String> = direct
        .iter()
        .flat_map(|(tool, own)| (python_checks(tool).0)(own))
        .map(|(_, code, _)| code)
        .collect();
    for code in ["B602", "B307", "F401", "E711", "E225", "C0116", "W0611"] {
        assert!(all.contains(code), "{code} in {all:?}");
    }
    assert_run_digest_is_the_sum(&run, &reports);
    assert_eq!(run["digest_quality"], "fail");

    // Clean code: four empty reports, zero counters, a pass.
    let run = t.wait(clean_run, None).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let reports = reports_by_key(&t, clean_run).await;
    assert_eq!(reports.len(), 4, "{reports:?}");
    let direct = python_tools_direct(&cwltool, &clean, &["./clean.py"]);
    for (tool, own) in &direct {
        let report = &reports[&(tool.to_string(), String::new())];
        let (findings, _) = python_checks(tool);
        assert!(findings(own).is_empty(), "{tool}: {own}");
        assert!(findings(&report["output"]).is_empty(), "{tool}: {report}");
        assert_eq!(counters(&report["digest"]), zero(), "{tool}");
    }
    assert_eq!(counters(&run["digest"]), zero());
    assert_eq!(run["digest_quality"], "pass", "{run}");

    // A run that failed never passes, even when every report it has is clean (cwltool
    // interleaves the subworkflows, so how many of the other tools reported before Ruff
    // failed varies: none to three).
    let run = t.wait(broken_run, None).await;
    assert_eq!(run["status"], "failed", "{run}");
    let reports = reports_by_key(&t, broken_run).await;
    assert!(
        !reports.contains_key(&("ruff".to_string(), String::new())),
        "{reports:?}"
    );
    for r in reports.values() {
        assert_eq!(counters(&r["digest"]), zero(), "{r}");
    }
    assert_eq!(counters(&run["digest"]), zero());
    assert_eq!(run["digest_quality"], "unknown", "{run}");
}

fn title() -> Value {
    json!({"cell_type": "markdown", "metadata": {}, "source": ["# A title\n"]})
}

fn code(source: &str) -> Value {
    json!({"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [],
           "source": [source]})
}

/// Notebooks that pass, fail in a cell, run out of time, and have style problems (which run,
/// printing more than a report may hold).
fn notebook_repository(repo: &Path) -> String {
    write(
        repo,
        "notebooks/ok.ipynb",
        &notebook(json!([title(), code("x = 1\n"), code("print(x + 1)\n")])),
    );
    write(
        repo,
        "notebooks/fail.ipynb",
        &notebook(json!([
            title(),
            code("x = 1\n"),
            code("y = x / 0\n"),
            code("print(y)\n")
        ])),
    );
    write(
        repo,
        "notebooks/slow.ipynb",
        &notebook(json!([
            title(),
            code("import time\n"),
            code("time.sleep(600)\n"),
            code("print('never')\n")
        ])),
    );
    write(
        repo,
        "notebooks/style.ipynb",
        &notebook(json!([
            code("import os\nimport sys\n"),
            code("value = None\nif value == None:\n    print(value)\n"),
            // 2 MB of output: more than a request body may hold, so the report leaves it out.
            code("print('x' * 2_000_000)\n")
        ])),
    );
    commit(repo)
}

/// The seconds each notebook may take in these runs: far more than a kernel needs to start
/// here, far less than the slow notebook's sleep.
const NOTEBOOK_LIMIT: i64 = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notebook_pipelines_execute_each_notebook_and_lint_it_as_papermill_and_ruff_do() {
    let Some(cwltool) = cwltool() else { return };
    let t = spawn_local(&cwltool, &[]).await;
    let list = pipelines(&t).await;
    let all_in_one = pipeline_id(&list, "Notebook pipeline");
    let execution = pipeline_id(&list, "Notebook execution");
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("notebooks-repo");
    let url = notebook_repository(&repo);

    let full = t
        .start(
            all_in_one,
            json!({"clone_subworkflow": {"clone": {"repo_url": url}},
                   "papermill_subworkflow": {"papermill": {"time_limit": NOTEBOOK_LIMIT}}}),
        )
        .await;
    let only_ok = t
        .start(
            execution,
            json!({"clone_subworkflow": {"clone": {"repo_url": url, "repo_branch": ""}},
                   "papermill_subworkflow": {"filter": {"regex": ".*/ok\\.ipynb"}}}),
        )
        .await;

    // Papermill and Ruff themselves, meanwhile, on the same notebooks.
    let out = tempfile::tempdir().unwrap();
    let papermill = |name: &str, extra: &[&str]| {
        let output = out.path().join(format!("{name}.out.ipynb"));
        let mut args = vec![
            format!("notebooks/{name}.ipynb"),
            output.display().to_string(),
            "--kernel".into(),
            "python3".into(),
            "--no-progress-bar".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let bin = venv_tool(&cwltool, "papermill");
        let path = std::env::var("PATH").unwrap_or_default();
        let res = Command::new(bin)
            .args(&refs)
            .current_dir(&repo)
            .env(
                "PATH",
                format!("{}:{path}", cwltool.parent().unwrap().display()),
            )
            .output()
            .unwrap();
        let nb: Value = std::fs::read_to_string(&output)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Value::Null);
        (
            res.status.success(),
            String::from_utf8_lossy(&res.stderr).into_owned(),
            nb,
        )
    };
    let (ok_passed, _, _) = papermill("ok", &[]);
    let (style_passed, _, _) = papermill("style", &[]);
    let (fail_passed, fail_err, fail_nb) = papermill("fail", &[]);
    let (slow_passed, slow_err, _) = papermill("slow", &["--execution-timeout", "2"]);
    assert!(ok_passed && style_passed);
    assert!(
        !fail_passed && fail_err.contains("ZeroDivisionError"),
        "{fail_err}"
    );
    assert!(!slow_passed && slow_err.contains("timed out"), "{slow_err}");
    // Papermill's own record of the failing cell: its execution count and error.
    let failed_cell = fail_nb["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metadata"]["papermill"]["exception"] == true)
        .expect("papermill marks the failing cell")
        .clone();
    let (_, ruff_out) = run_direct(
        &cwltool,
        &repo,
        "ruff",
        &[
            "check",
            "--exit-zero",
            "--no-cache",
            "--output-format",
            "json",
            "--select",
            "E4,E7,E9,F",
            "./notebooks/fail.ipynb",
            "./notebooks/ok.ipynb",
            "./notebooks/slow.ipynb",
            "./notebooks/style.ipynb",
        ],
    );
    let ruff_own: Value = serde_json::from_str(&ruff_out).unwrap();

    let run = t.wait(full, None).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    // The notebooks ran inside the run's sandbox (the default): kernel and Papermill over the
    // loopback of its own network namespace, Jupyter's directories in its scratch space.
    assert_eq!(run["usage_report"]["sandbox"], "bwrap", "{run}");
    let reports = reports_by_key(&t, full).await;
    let keys: Vec<(&str, &str)> = reports
        .keys()
        .map(|(n, i)| (n.as_str(), i.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("nbcheck", ""),
            ("papermill", "./notebooks/fail.ipynb"),
            ("papermill", "./notebooks/ok.ipynb"),
            ("papermill", "./notebooks/slow.ipynb"),
            ("papermill", "./notebooks/style.ipynb"),
            ("ruff", ""),
        ]
    );

    // Ruff on the notebooks' code cells: what Ruff prints, counted by the table.
    let ruff = &reports[&("ruff".to_string(), String::new())];
    let expected = ruff_findings(&ruff_own);
    let codes: Vec<&str> = expected.iter().map(|(_, c, _)| c.as_str()).collect();
    assert_eq!(codes, ["E711", "F401", "F401"], "{ruff_own}");
    assert_eq!(ruff_findings(&ruff["output"]), expected);
    assert_eq!(counters(&ruff["digest"]), ruff_counts(&ruff_own));
    assert_eq!(counters(&ruff["digest"])["error"], 3, "{ruff}");

    // The best-practice checker: the style notebook has no title.
    let nbcheck = &reports[&("nbcheck".to_string(), String::new())];
    let style = nbcheck["output"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "./notebooks/style.ipynb")
        .unwrap();
    assert_eq!(
        style["issues"][0]["message"],
        "the first cell should be a Markdown title ('# ...')"
    );
    let summary = &nbcheck["output"]["summary"];
    let mut c = zero();
    c.insert("error".to_string(), summary["errors"].as_i64().unwrap());
    c.insert("warning".to_string(), summary["warnings"].as_i64().unwrap());
    assert_eq!(counters(&nbcheck["digest"]), c);

    // Papermill, one report per notebook: the executed notebook and its summary.
    let executed = |name: &str| {
        let r = &reports[&("papermill".to_string(), format!("./notebooks/{name}.ipynb"))];
        (
            r["output"]["metadata"]["execution_summary"].clone(),
            r.clone(),
        )
    };
    for name in ["ok", "style"] {
        let (summary, report) = executed(name);
        assert_eq!(summary["status"], "succeeded", "{name}: {summary}");
        assert_eq!(counters(&report["digest"]), zero(), "{name}");
        // The outputs are the notebook's own, as Papermill records them.
        assert!(report["output"]["metadata"]["papermill"].is_object());
    }
    let (style, report) = executed("style");
    assert_eq!(style["outputs_trimmed"], "all but errors", "{style}");
    assert!(report["output"].to_string().len() < 768 * 1024);
    let (ok, _) = executed("ok");
    assert_eq!(ok["time_limit_seconds"], NOTEBOOK_LIMIT);
    let (failed, report) = executed("fail");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["failure"]["cell"], 2, "{failed}");
    assert_eq!(failed["failure"]["source"], "y = x / 0\n");
    assert_eq!(failed["failure"]["ename"], "ZeroDivisionError");
    assert_eq!(failed["failure"]["evalue"], "division by zero");
    assert_eq!(
        failed["failure"]["execution_count"], failed_cell["execution_count"],
        "as Papermill run directly counts it"
    );
    let direct_error = failed_cell["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["output_type"] == "error")
        .unwrap();
    assert_eq!(failed["failure"]["ename"], direct_error["ename"]);
    assert_eq!(failed["failure"]["evalue"], direct_error["evalue"]);
    let mut one_error = zero();
    one_error.insert("error".to_string(), 1);
    assert_eq!(counters(&report["digest"]), one_error);
    let (slow, report) = executed("slow");
    assert_eq!(slow["status"], "timed_out", "{slow}");
    assert_eq!(slow["failure"]["cell"], 2, "{slow}");
    assert_eq!(slow["failure"]["source"], "time.sleep(600)\n");
    assert_eq!(slow["failure"]["ename"], "TimeoutError");
    let took = slow["duration_seconds"].as_f64().unwrap();
    assert!(
        took >= (NOTEBOOK_LIMIT - 1) as f64 && took < (NOTEBOOK_LIMIT + 30) as f64,
        "stopped at its limit: {slow}"
    );
    assert_eq!(counters(&report["digest"]), one_error);
    assert_run_digest_is_the_sum(&run, &reports);
    assert_eq!(run["digest_quality"], "fail");

    // The execution pipeline alone, on the notebook that runs: a pass.
    let run = t.wait(only_ok, None).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let reports = reports_by_key(&t, only_ok).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    let summary = &reports.values().next().unwrap()["output"]["metadata"]["execution_summary"];
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["time_limit_seconds"], 600, "the default limit");
    assert_eq!(run["digest_quality"], "pass", "{run}");
}

/// An EO Application Package every rule of eoap-validator's default profile passes.
const GOOD_PACKAGE: &str = r#"cwlVersion: v1.2
$namespaces:
  s: https://schema.org/
s:softwareVersion: 1.0.0
$graph:
- class: Workflow
  id: echo-app
  label: Echo
  doc: Echoes a message.
  inputs:
    message:
      type: string
      label: Message
      doc: The message to echo.
  outputs:
    result:
      type: File
      label: Result
      doc: The echoed text.
      outputSource: step/out
  steps:
    step:
      label: Echo step
      doc: Runs echo.
      run: '#echo'
      in:
        message: message
      out: [out]
- class: CommandLineTool
  id: echo
  requirements:
    DockerRequirement:
      dockerPull: docker.io/library/alpine:3.21
    ResourceRequirement:
      coresMin: 1
      coresMax: 1
      ramMin: 256
      ramMax: 256
  baseCommand: echo
  stdout: out.txt
  inputs:
    message:
      type: string
      label: Message
      doc: The message.
      inputBinding: {position: 1}
  outputs:
    out:
      type: stdout
      label: Output
      doc: The text.
"#;

/// Valid CWL that breaks the package rules (no labels, docs, image, resources; the id `main`).
const BAD_PACKAGE: &str = r#"cwlVersion: v1.2
$graph:
- class: Workflow
  id: main
  inputs:
    message: string
  outputs:
    result:
      type: File
      outputSource: step/out
  steps:
    step:
      run: '#echo'
      in:
        message: message
      out: [out]
- class: CommandLineTool
  id: echo
  baseCommand: echo
  stdout: out.txt
  inputs:
    message:
      type: string
      inputBinding: {position: 1}
  outputs:
    out: stdout
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn package_validation_reports_what_eoap_validator_finds() {
    let Some(cwltool) = cwltool() else { return };
    let t = spawn_local(&cwltool, &[]).await;
    let list = pipelines(&t).await;
    let validation = pipeline_id(&list, "Application Package validation");
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("packages");
    write(&repo, "good.cwl", GOOD_PACKAGE);
    write(&repo, "cwl/bad.cwl", BAD_PACKAGE);
    write(
        &repo,
        "cwl/broken.cwl",
        "cwlVersion: v1.2\nclass: Workflow\ninputs: [\n",
    );
    let url = commit(&repo);

    let all = t
        .start(
            validation,
            json!({"clone_subworkflow": {"clone": {"repo_url": url}}}),
        )
        .await;
    let good_only = t
        .start(
            validation,
            json!({"clone_subworkflow": {"clone": {"repo_url": url}},
                   "ap_validator_subworkflow": {"filter": {"regex": "\\./good\\.cwl"}}}),
        )
        .await;

    // eoap-validator itself on each file: the findings that did not pass, by severity.
    let mut direct = BTreeMap::new();
    for file in ["./cwl/bad.cwl", "./cwl/broken.cwl", "./good.cwl"] {
        let (_, out) = run_direct(
            &cwltool,
            &repo,
            "eoap-validator",
            &[file, "--format", "json"],
        );
        let own: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let open: Vec<&Value> = own["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| {
                ["failed", "needs-review", "blocked"].contains(&f["status"].as_str().unwrap())
            })
            .collect();
        let rules = |severity: &str| -> BTreeSet<String> {
            open.iter()
                .filter(|f| f["severity"] == severity)
                .map(|f| f["rule_id"].as_str().unwrap().to_string())
                .collect()
        };
        let count =
            |severity: &str| open.iter().filter(|f| f["severity"] == severity).count() as i64;
        // The reference's mapping of its validator's issues: error error, hint (a
        // recommendation) convention; notes are left out at the default detail, "hints".
        let mut c = zero();
        c.insert("error".to_string(), count("error"));
        c.insert("convention".to_string(), count("warning"));
        direct.insert(file, (rules("error"), rules("warning"), c));
    }

    let run = t.wait(all, None).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let reports = reports_by_key(&t, all).await;
    assert_eq!(reports.len(), 3, "{reports:?}");
    for (file, (errors, hints, counts)) in &direct {
        let report = &reports[&("ap_validator".to_string(), file.to_string())];
        let issues = report["output"]["issues"].as_array().unwrap();
        let of_type = |ty: &str| -> BTreeSet<String> {
            issues
                .iter()
                .filter(|i| i["type"] == ty)
                .map(|i| i["req"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(&of_type("error"), errors, "{file}");
        assert_eq!(&of_type("hint"), hints, "{file}");
        assert_eq!(&counters(&report["digest"]), counts, "{file}: {report}");
    }
    let bad = &direct["./cwl/bad.cwl"];
    assert!(
        bad.0.contains("SERVICE.PROCESS.ID") && bad.0.contains("EOAP.REQ9.LABEL"),
        "{bad:?}"
    );
    assert!(!bad.1.is_empty(), "recommendations too: {bad:?}");
    assert!(direct["./cwl/broken.cwl"].0.contains("CWL.YAML"));
    let good = &reports[&("ap_validator".to_string(), "./good.cwl".to_string())];
    assert_eq!(good["output"]["valid"], true, "{good}");
    assert_eq!(counters(&good["digest"]), zero());
    assert_eq!(
        reports[&("ap_validator".to_string(), "./cwl/bad.cwl".to_string())]["output"]["valid"],
        false
    );
    assert_run_digest_is_the_sum(&run, &reports);
    assert_eq!(run["digest_quality"], "fail");

    let run = t.wait(good_only, None).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(t.reports(good_only).await.len(), 1);
    assert_eq!(run["digest_quality"], "pass", "{run}");
}
