//! Digests and verdicts through the real endpoints: reports posted with the run's callback
//! token (JSON and multipart), the run ended by a Job event, the digest summed across tools and
//! instances, the verdict from the pipeline's rules; rules refused when saved; the override.

use super::support::{digest, finish_job, post_report_json, post_report_multipart, spawn};
use crate::{common::TestApp, fake_launcher::FakeLauncher};
use application_quality_api::db::entities::pipeline;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use std::sync::Arc;

/// Parameters of the demo pipelines.
pub fn params() -> Value {
    json!({"parameters": {"clone_subworkflow": {"clone": {
        "repo_url": "https://github.com/EOEPCA/application-quality", "repo_branch": "main"}}}})
}

/// The id of a seeded pipeline.
pub async fn seeded(app: &TestApp, name: &str) -> i64 {
    pipeline::Entity::find()
        .filter(pipeline::Column::Name.eq(name))
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap()
        .id
}

/// Starts a run through the REST API; returns its id.
pub async fn start(app: &TestApp, token: &str, pipeline: i64) -> i64 {
    let (status, run) = app
        .post(
            &format!("/api/pipelines/{pipeline}/runs/"),
            Some(token),
            &params(),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["status"], "running", "{run}");
    run["id"].as_i64().unwrap()
}

async fn run_json(app: &TestApp, token: &str, run: i64) -> Value {
    let (status, body) = app
        .get(&format!("/api/pipelines/_/runs/{run}/"), Some(token))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn counters(v: [i64; 6]) -> Value {
    json!({"info": v[0], "convention": v[1], "warning": v[2], "error": v[3], "security": v[4], "critical": v[5]})
}

async fn setup() -> (TestApp, Arc<FakeLauncher>, String, i64) {
    let (app, k) = spawn(Vec::new(), None).await;
    app.seed().await;
    let (_, token) = app.user_with_token("alice", false).await;
    let p = seeded(&app, "Python lint").await;
    (app, k, token, p)
}

#[tokio::test]
async fn digests_are_summed_across_tools_and_instances_when_the_run_ends() {
    let (app, k, token, p) = setup().await;
    let run = start(&app, &token, p).await;
    let before = run_json(&app, &token, run).await;
    assert_eq!(before["digest"], "");
    assert_eq!(before["digest_quality"], "undefined");
    assert_eq!(before["trigger_event"], Value::Null);
    let cb = k.token(run);
    let path = |name: &str, instance: &str| {
        format!("/api/pipelines/{p}/runs/{run}/jobreports/?name={name}&instance={instance}")
    };
    // ruff on two files (counts, as the reference's generator writes) ...
    let (s, a) = post_report_multipart(
        &app,
        &path("ruff", "a.py"),
        &cb,
        &[
            ("report", "[{\"code\": \"D100\"}]"),
            (
                "digest",
                &digest("ruff", json!({"info": 1, "convention": 2})),
            ),
        ],
    )
    .await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["output"], json!([{"code": "D100"}]));
    assert_eq!(a["digest"]["counts"]["convention"], 2);
    let (s, _) = post_report_multipart(
        &app,
        &path("ruff", "b.py"),
        &cb,
        &[
            ("report", "[]"),
            (
                "digest",
                &json!({"issues": {"warning": 3, "undefined": 9}}).to_string(),
            ),
        ],
    )
    .await;
    assert_eq!(s, 201);
    // ... a tool without a digest step (JSON body: digest {}), and an empty digest file.
    let (s, j) = post_report_json(&app, p, run, &cb, "nbcheck", &json!({"ok": true})).await;
    assert_eq!(s, 201);
    assert_eq!(j["digest"], json!({}));
    let (s, e) = post_report_multipart(
        &app,
        &path("trivy", ""),
        &cb,
        &[("report", "{}"), ("digest", "")],
    )
    .await;
    assert_eq!(s, 201, "{e}");
    assert_eq!(e["digest"], json!({}));
    // Reports read back with their digests.
    let (_, list) = app
        .get(
            &format!("/api/pipelines/{p}/runs/{run}/jobreports/"),
            Some(&token),
        )
        .await;
    assert_eq!(list.as_array().unwrap().len(), 4);
    assert_eq!(list[1]["digest"]["issues"]["warning"], 3);

    finish_job(&app, run, "Complete").await;
    let after = run_json(&app, &token, run).await;
    assert_eq!(after["status"], "succeeded");
    assert_eq!(after["job_reports_count"], 4);
    let d = &after["digest"];
    assert_eq!(d["issues"], counters([1, 2, 3, 0, 0, 0]), "{d}");
    assert_eq!(
        d["quality_rules"]["pass"],
        "error == 0 and critical == 0 and security == 0 and warning == 0"
    );
    assert_eq!(d["digest_quality"], "pass_with_comments");
    assert_eq!(d["properties"], json!({"name": "", "version": ""}));
    assert!(d["created_at"].is_string());
    assert_eq!(after["digest_quality"], "pass_with_comments");
    // A replayed end changes nothing.
    finish_job(&app, run, "Complete").await;
    assert_eq!(run_json(&app, &token, run).await["digest"], after["digest"]);

    // Any error fails; a run without findings passes.
    let bad = start(&app, &token, p).await;
    let (s, _) = post_report_multipart(
        &app,
        &format!("/api/pipelines/{p}/runs/{bad}/jobreports/?name=ruff"),
        &k.token(bad),
        &[
            ("report", "[]"),
            ("digest", &digest("ruff", json!({"error": 1, "info": 5}))),
        ],
    )
    .await;
    assert_eq!(s, 201);
    finish_job(&app, bad, "Complete").await;
    let b = run_json(&app, &token, bad).await;
    assert_eq!(b["digest_quality"], "fail");
    assert_eq!(b["digest"]["issues"], counters([5, 0, 0, 1, 0, 0]));
    let clean = start(&app, &token, p).await;
    finish_job(&app, clean, "Complete").await;
    assert_eq!(
        run_json(&app, &token, clean).await["digest_quality"],
        "pass"
    );
    // A failed execution is concluded too (its commit status fails, see the status tests).
    let failed = start(&app, &token, p).await;
    finish_job(&app, failed, "Failed").await;
    let f = run_json(&app, &token, failed).await;
    assert_eq!(f["status"], "failed");
    assert_eq!(f["digest"]["issues"], counters([0; 6]));
    // A cancelled run as well.
    let cancelled = start(&app, &token, p).await;
    let (s, c) = app
        .post(
            &format!("/api/pipelines/{p}/runs/{cancelled}/cancel/"),
            Some(&token),
            &json!({}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(c["status"], "killed");
    assert!(c["digest"]["digest_quality"].is_string(), "{c}");
}

#[tokio::test]
async fn malformed_uploads_are_400_and_store_nothing() {
    let (app, k, token, p) = setup().await;
    let run = start(&app, &token, p).await;
    let cb = k.token(run);
    let path = format!("/api/pipelines/{p}/runs/{run}/jobreports/?name=ruff");
    let good = digest("ruff", json!({}));
    for (parts, field) in [
        (vec![("report", "[]")], "digest"),
        (vec![("digest", good.as_str())], "report"),
        (vec![("report", "[1,"), ("digest", good.as_str())], "report"),
        (vec![("report", "[]"), ("digest", "{oops")], "digest"),
        (vec![("report", "[]"), ("digest", "[1, 2]")], "digest"),
        (vec![("report", ""), ("digest", good.as_str())], "report"),
    ] {
        let (s, body) = post_report_multipart(&app, &path, &cb, &parts).await;
        assert_eq!(s, 400, "{parts:?}: {body}");
        assert!(body[field].is_array(), "{parts:?}: {body}");
    }
    // Broken framing.
    for (ct, body) in [
        ("multipart/form-data", "x".to_string()),
        (
            "multipart/form-data; boundary=zz",
            "--zz\r\nContent-Disposition: form-data; name=\"report\"\r\n\r\n[]".to_string(),
        ),
        (
            "multipart/form-data; boundary=zz",
            "no boundary at all".to_string(),
        ),
    ] {
        let (s, b) = app
            .send(
                app.client
                    .post(app.url(&path))
                    .bearer_auth(&cb)
                    .header("content-type", ct)
                    .body(body),
            )
            .await;
        assert_eq!(s, 400, "{ct}: {b}");
        assert!(b["detail"].as_str().unwrap().contains("multipart"), "{b}");
    }
    let (_, list) = app
        .get(
            &format!("/api/pipelines/{p}/runs/{run}/jobreports/"),
            Some(&token),
        )
        .await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn quality_rules_are_checked_when_saved_and_evaluated_at_the_end() {
    let (app, k, token, _) = setup().await;
    // Seeded pipelines carry the reference's default rules.
    let (_, list) = app.get("/api/pipelines/", Some(&token)).await;
    for p in list.as_array().unwrap() {
        assert_eq!(
            p["quality_rules"],
            application_quality_api::quality::default_rules()
        );
    }
    let create = |rules: Value, name: &str| json!({"name": name, "tools": ["clone_subworkflow"], "quality_rules": rules});
    for (rules, problem) in [
        (json!({"pass": "errors == 0"}), "unknown name 'errors'"),
        (json!({"pass": "error == 0 and"}), "ends early"),
        (
            json!({"pass_with_comments": "import os"}),
            "unknown name 'import'",
        ),
        (json!({"pass": "error =~ 1"}), "unexpected character"),
        (json!({"pass": 0}), "must be a string"),
        (json!({"fail": "true"}), "Unknown rule 'fail'"),
        (json!("error == 0"), "Expected an object"),
    ] {
        let (s, body) = app
            .post(
                "/api/pipelines/",
                Some(&token),
                &create(rules.clone(), "bad"),
            )
            .await;
        assert_eq!(s, 400, "{rules}: {body}");
        let msg = body["quality_rules"][0].as_str().unwrap_or_default();
        assert!(msg.contains(problem), "{rules}: {body}");
    }
    // Saved rules decide the verdict, evaluated in the reference's order.
    let cases = [
        // pass_with_comments is tested first.
        (
            json!({"pass": "true", "pass_with_comments": "warning > 0"}),
            "pass_with_comments",
        ),
        (
            json!({"pass": "warning < 10", "pass_with_comments": "warning > 5"}),
            "pass",
        ),
        (json!({"pass": "warning == 0"}), "fail"),
        (json!({"pass_with_comments": "warning > 5"}), "unknown"),
        (json!({}), "unknown"),
        (Value::Null, "exception"),
        (json!({"pass": "warning / error > 1"}), "exception"),
    ];
    for (i, (rules, verdict)) in cases.iter().enumerate() {
        let (s, p) = app
            .post(
                "/api/pipelines/",
                Some(&token),
                &create(rules.clone(), &format!("rules {i}")),
            )
            .await;
        assert_eq!(s, 201, "{p}");
        assert_eq!(&p["quality_rules"], rules);
        let p = p["id"].as_i64().unwrap();
        let run = start(&app, &token, p).await;
        let (s, _) = post_report_multipart(
            &app,
            &format!("/api/pipelines/{p}/runs/{run}/jobreports/?name=ruff"),
            &k.token(run),
            &[
                ("report", "[]"),
                ("digest", &digest("ruff", json!({"warning": 2}))),
            ],
        )
        .await;
        assert_eq!(s, 201);
        finish_job(&app, run, "Complete").await;
        let r = run_json(&app, &token, run).await;
        assert_eq!(r["digest_quality"], *verdict, "{rules}: {}", r["digest"]);
        assert_eq!(r["digest"]["quality_rules"], *rules);
    }
    // Without rules a new pipeline gets {} (as the reference); PATCH checks rules too.
    let (_, p) = app
        .post(
            "/api/pipelines/",
            Some(&token),
            &json!({"name": "plain", "tools": ["clone_subworkflow"]}),
        )
        .await;
    assert_eq!(p["quality_rules"], json!({}));
    let id = p["id"].as_i64().unwrap();
    let (s, body) = app
        .send(
            app.client
                .patch(app.url(&format!("/api/pipelines/{id}/")))
                .bearer_auth(&token)
                .json(&json!({"quality_rules": {"pass": "(error == 0"}})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        body["quality_rules"][0]
            .as_str()
            .unwrap()
            .contains("missing ')'"),
        "{body}"
    );
    let (s, body) = app
        .send(
            app.client
                .patch(app.url(&format!("/api/pipelines/{id}/")))
                .bearer_auth(&token)
                .json(&json!({"quality_rules": {"pass": "error + critical <= 2 * info"}})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["quality_rules"]["pass"],
        "error + critical <= 2 * info"
    );
}

#[tokio::test]
async fn only_staff_override_a_verdict_and_the_computed_one_stays() {
    let (app, k, token, p) = setup().await;
    let (_, admin) = app.user_with_token("admin", true).await;
    let run = start(&app, &token, p).await;
    let (s, _) = post_report_multipart(
        &app,
        &format!("/api/pipelines/{p}/runs/{run}/jobreports/?name=ruff"),
        &k.token(run),
        &[
            ("report", "[]"),
            ("digest", &digest("ruff", json!({"security": 1}))),
        ],
    )
    .await;
    assert_eq!(s, 201);
    finish_job(&app, run, "Complete").await;
    let url = format!("/api/pipelines/{p}/runs/{run}/");
    let patch = |who: Option<&str>, body: Value| {
        let mut r = app.client.patch(app.url(&url)).json(&body);
        if let Some(t) = who {
            r = r.bearer_auth(t);
        }
        app.send(r)
    };
    let wish = json!({"digest": {"digest_quality": "pass"}});
    let (s, _) = patch(None, wish.clone()).await;
    assert_eq!(s, 401);
    let (s, body) = patch(Some(&token), wish.clone()).await;
    assert_eq!(s, 403, "the run's own starter is not staff");
    assert_eq!(
        body["detail"],
        "You must be an administrator to manually update digest quality."
    );
    for bad in [
        json!({"digest": {}}),
        json!({"digest": {"digest_quality": ""}}),
        json!({"digest": "pass"}),
        json!({"digest": {"digest_quality": "pass"}, "status": "succeeded"}),
        json!({"output": {}}),
    ] {
        let (s, body) = patch(Some(&admin), bad.clone()).await;
        assert_eq!(s, 400, "{bad}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .starts_with("Invalid pipeline run update request")
        );
    }
    let (s, _) = app
        .send(
            app.client
                .patch(app.url(&format!("/api/pipelines/{p}/runs/999999/")))
                .bearer_auth(&admin)
                .json(&wish),
        )
        .await;
    assert_eq!(s, 404);
    let (s, body) = patch(Some(&admin), wish.clone()).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["digest"]["digest_quality"], "fail",
        "the computed verdict stays"
    );
    assert_eq!(body["digest_quality"], "fail");
    let manual = &body["digest"]["manual"];
    assert_eq!(manual["digest_quality"], "pass");
    assert_eq!(manual["user"], "admin");
    let time = chrono::DateTime::parse_from_rfc3339(manual["time"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now() - time.to_utc()).num_seconds().abs() < 60);
    assert_eq!(body["status"], "succeeded", "nothing else changed");
    // A second override replaces the first.
    let (_, body) = patch(Some(&admin), json!({"digest": {"digest_quality": "fail"}})).await;
    assert_eq!(body["digest"]["manual"]["digest_quality"], "fail");
    assert_eq!(body["digest"]["issues"]["security"], 1);
}

/// The `entry` of the demo tool's script, or its inline shell `arguments[1]`.
fn demo_tool(file: &str) -> serde_yaml::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/catalogue/demo/tools")
        .join(file);
    let docs: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    docs[0].clone()
}

/// The demo catalogue's report step (python3, standard library: the digest and the multipart
/// upload in one process), run as a process on real reports, against the running service. The
/// process is awaited on a worker thread while the server runs on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_report_step_counts_and_uploads_findings() {
    let (app, k, token, p) = setup().await;
    let run = start(&app, &token, p).await;
    let dir = tempfile::tempdir().unwrap();
    let report_tool = demo_tool("report.cwl");
    let script = report_tool["requirements"]["InitialWorkDirRequirement"]["listing"][0]["entry"]
        .as_str()
        .unwrap();
    std::fs::write(dir.path().join("report.py"), script).unwrap();
    let codes = [
        "S101", "SIM108", "E501", "F401", "ERA001", "C901", "B006", "X100", "",
    ];
    let ruff: Vec<Value> = codes
        .iter()
        .map(|c| json!({"code": c, "message": "m"}))
        .collect();
    let nbcheck = json!({"tool": "nbcheck", "files": [{"path": "a.ipynb", "issues": [
        {"severity": "error", "message": "x"}, {"severity": "warning", "message": "y"},
        {"severity": "warning", "message": "z"}]}]});
    // The test suite's Python when set (any python3 has the standard library).
    let python = std::env::var("AQ_PYTHON").unwrap_or_else(|_| "python3".into());
    for (name, instances, reports) in [
        ("ruff", vec!["src/a b.py"], vec![Value::from(ruff)]),
        // Two reports of one tool in one step, as a scattered step sends them.
        (
            "nbcheck",
            vec!["x.ipynb", "y&z.ipynb"],
            vec![nbcheck.clone(), nbcheck],
        ),
        ("pylint", vec![], vec![json!("not a list")]),
    ] {
        let mut args = vec![
            "report.py".to_string(),
            "--name".into(),
            name.into(),
            "--server-url".into(),
            format!("{}/", app.base),
            "--pipeline-id".into(),
            p.to_string(),
            "--run-id".into(),
            run.to_string(),
        ];
        for (i, report) in reports.iter().enumerate() {
            let file = dir.path().join(format!("{name}-{i}.json"));
            std::fs::write(&file, report.to_string()).unwrap();
            args.extend(["--report".into(), file.display().to_string()]);
        }
        for instance in instances {
            args.extend(["--instance".into(), instance.to_string()]);
        }
        let out = std::process::Command::new(&python)
            .current_dir(dir.path())
            .env("AQ_CALLBACK_TOKEN", k.token(run))
            .args(&args)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Without the run's token the step fails and says why; with another run's, the service
    // refuses the report and the step fails with its answer.
    let other = start(&app, &token, p).await;
    let file = dir.path().join("ruff-0.json");
    let base = [
        "report.py".to_string(),
        "--name".into(),
        "ruff".into(),
        "--server-url".into(),
        app.base.clone(),
        "--pipeline-id".into(),
        p.to_string(),
        "--run-id".into(),
        run.to_string(),
        "--report".into(),
        file.display().to_string(),
    ];
    let out = std::process::Command::new(&python)
        .current_dir(dir.path())
        .env_remove("AQ_CALLBACK_TOKEN")
        .args(&base)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AQ_CALLBACK_TOKEN is not set"));
    let out = std::process::Command::new(&python)
        .current_dir(dir.path())
        .env("AQ_CALLBACK_TOKEN", k.token(other))
        .args(&base)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the job report was refused: HTTP 40"), "{err}");
    let (_, reports) = app
        .get(
            &format!("/api/pipelines/{p}/runs/{run}/jobreports/"),
            Some(&token),
        )
        .await;
    let by = |name: &str| {
        reports
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    let r = by("ruff");
    assert_eq!(r["instance"], "src/a b.py");
    assert_eq!(
        r["digest"]["tool"],
        json!({"name": "ruff", "instance": "src/a b.py", "version": ""})
    );
    assert_eq!(r["digest"]["status"], "ok");
    // Longest prefix: SIM is security (S), ERA info, C90 convention, B critical, unknown warning.
    assert_eq!(r["digest"]["issues"], counters([1, 1, 1, 2, 2, 1]));
    assert_eq!(r["output"].as_array().unwrap().len(), codes.len());
    let notebooks: Vec<&Value> = reports
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == "nbcheck")
        .collect();
    assert_eq!(notebooks.len(), 2);
    for (r, instance) in notebooks.iter().zip(["x.ipynb", "y&z.ipynb"]) {
        assert_eq!(r["instance"], instance);
        assert_eq!(r["digest"]["tool"]["instance"], instance);
        assert_eq!(r["digest"]["issues"], counters([0, 0, 2, 1, 0, 0]));
    }
    let broken = by("pylint");
    assert!(
        broken["digest"]["status"]
            .as_str()
            .unwrap()
            .starts_with("Failed to generate the digest")
    );
    assert_eq!(broken["digest"]["issues"], counters([0; 6]));
    finish_job(&app, run, "Complete").await;
    let done = run_json(&app, &token, run).await;
    assert_eq!(done["digest"]["issues"], counters([1, 1, 5, 4, 2, 1]));
    assert_eq!(done["digest_quality"], "fail");
}
