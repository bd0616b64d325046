//! Runs and job reports: the seed's CI workflow end to end, parameter validation, visibility,
//! the callback-token rule for job reports, reconcile on read and cancel.

use crate::{
    common::TestApp,
    rest_support::{call, catalogue, ci_parameters, spawn_with_fake},
};
use application_quality_api::runs::{RunStatus, launcher::JobObservation};
use serde_json::{Value, json};

/// The seed's GitHub workflow: token -> GET pipeline -> two runs, read `.id` / `.start_time`.
#[tokio::test]
async fn ci_workflow_end_to_end() {
    let app = TestApp::spawn().await;
    let cat = catalogue(&app).await;
    app.user("ci-bot", "ci-password-1", false).await;
    let api = app.url("/api");

    let r = app
        .client
        .post(format!("{api}/token/"))
        .header("content-type", "application/json")
        .body(r#"{"username":"ci-bot","password":"ci-password-1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.unwrap()["access"]
        .as_str()
        .unwrap()
        .to_string();

    let id = cat.public_pipeline;
    let (status, pipeline) = app
        .get(&format!("/api/pipelines/{id}/"), Some(&token))
        .await;
    assert_eq!(status, 200);
    assert_eq!(pipeline["name"], "CI pipeline");
    assert_eq!(pipeline["tools"], json!(["clone_subworkflow"]));

    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, run) = app
            .post(
                &format!("/api/pipelines/{id}/runs/"),
                Some(&token),
                &ci_parameters(),
            )
            .await;
        assert_eq!(status, 201, "{run}");
        assert!(run["id"].as_i64().is_some());
        assert!(run["start_time"].as_str().is_some_and(|s| s.ends_with('Z')));
        assert_eq!(run["pipeline"], id);
        assert_eq!(run["started_by"], "ci-bot");
        // The reference's `user`: present, always null.
        assert!(run.get("user").is_some_and(Value::is_null), "{run}");
        assert_eq!(run["job_reports_count"], 0);
        assert_eq!(run["status"], "pending", "recorded, not executed");
        let inputs = &run["inputs"];
        assert_eq!(
            inputs["clone_subworkflow.clone.repo_url"],
            "https://github.com/org/repo"
        );
        assert_eq!(inputs["clone_subworkflow.clone.repo_branch"], "main");
        assert_eq!(inputs["pipeline_id"], id.to_string());
        assert_eq!(inputs["run_id"], run["id"].to_string());
        let cwl = run["executed_cwl"].as_str().unwrap();
        assert!(cwl.contains("clone_subworkflow.clone.repo_url:"), "{cwl}");
        ids.push(run["id"].as_i64().unwrap());
    }
    assert_ne!(ids[0], ids[1]);
    assert_eq!(app.recorder.as_ref().unwrap().launched(), ids);

    let (status, list) = app.get("/api/pipelines/_/runs/", Some(&token)).await;
    assert_eq!(status, 200);
    let listed: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, ids);
}

#[tokio::test]
async fn run_parameters_are_validated() {
    let app = TestApp::spawn().await;
    let cat = catalogue(&app).await;
    let (_, token) = app.user_with_token("kim", false).await;
    let path = format!("/api/pipelines/{}/runs/", cat.public_pipeline);
    let cases = [
        (json!({"nope": {}}), "parameters.nope"),
        (
            json!({"clone_subworkflow": {"nope": {}}}),
            "parameters.clone_subworkflow.nope",
        ),
        (
            json!({"clone_subworkflow": {"clone": {"nope": "x"}}}),
            "parameters.clone_subworkflow.clone.nope",
        ),
        (
            json!({"clone_subworkflow": {"clone": {"repo_url": 5}}}),
            "parameters.clone_subworkflow.clone.repo_url",
        ),
        (json!("not an object"), "parameters"),
    ];
    for (parameters, field) in cases {
        let (status, body) = app
            .post(&path, Some(&token), &json!({"parameters": parameters}))
            .await;
        assert_eq!(status, 400, "{parameters}");
        assert!(body[field].is_array(), "{field} in {body}");
    }
    let (status, _) = app.post(&path, Some(&token), &json!([1, 2])).await;
    assert_eq!(status, 400);
    // No parameters at all: every input keeps its default.
    let (status, run) = app.post(&path, Some(&token), &json!({})).await;
    assert_eq!(status, 201, "{run}");
    let (status, body) = app
        .post("/api/pipelines/_/runs/", Some(&token), &ci_parameters())
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.get("/api/pipelines/abc/runs/", Some(&token)).await;
    assert_eq!((status, body), (404, json!({"detail": "Not found."})));
    let (status, _) = app
        .post("/api/pipelines/abc/runs/", Some(&token), &ci_parameters())
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn private_pipelines_of_others_are_404() {
    let app = TestApp::spawn().await;
    catalogue(&app).await;
    let (_, alice) = app.user_with_token("alice", false).await;
    let (_, bob) = app.user_with_token("bob", false).await;
    let (_, private) = app
        .post(
            "/api/pipelines/",
            Some(&alice),
            &json!({"name": "Private", "tools": ["clone_subworkflow"]}),
        )
        .await;
    let id = &private["id"];
    let (status, _) = app.get(&format!("/api/pipelines/{id}/"), Some(&bob)).await;
    assert_eq!(status, 404);
    let (status, body) = app
        .post(
            &format!("/api/pipelines/{id}/runs/"),
            Some(&bob),
            &ci_parameters(),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, run) = app
        .post(
            &format!("/api/pipelines/{id}/runs/"),
            Some(&alice),
            &ci_parameters(),
        )
        .await;
    assert_eq!(status, 201);
    // Bob sees none of Alice's runs, neither listed nor by id.
    let (_, list) = app.get("/api/pipelines/-/runs/", Some(&bob)).await;
    assert_eq!(list, json!([]));
    let (status, _) = app
        .get(&format!("/api/pipelines/_/runs/{}/", run["id"]), Some(&bob))
        .await;
    assert_eq!(status, 404);
    // Runs are never edited through the API (PATCH: staff's verdict override only, 403 here).
    for method in ["PUT", "DELETE"] {
        let (status, _) = call(
            &app,
            method,
            &format!("/api/pipelines/{id}/runs/{}/", run["id"]),
            Some(&alice),
            Some(&json!({"status": "succeeded"})),
        )
        .await;
        assert_eq!(status, 405, "{method}");
    }
}

#[tokio::test]
async fn job_reports_need_the_runs_callback_token() {
    let (app, launcher) = spawn_with_fake().await;
    let cat = catalogue(&app).await;
    let (_, owner) = app.user_with_token("olga", false).await;
    let (_, other) = app.user_with_token("pete", false).await;
    let (_, staff) = app.user_with_token("root", true).await;
    let p = cat.public_pipeline;
    let runs_path = format!("/api/pipelines/{p}/runs/");
    let (_, run) = app.post(&runs_path, Some(&owner), &ci_parameters()).await;
    let (_, second) = app.post(&runs_path, Some(&owner), &ci_parameters()).await;
    assert_eq!(run["status"], "running");
    let run_id = run["id"].as_i64().unwrap();
    let reports = format!("/api/pipelines/{p}/runs/{run_id}/jobreports/");
    let report = json!({"issues": [{"line": 3, "msg": "E501"}], "ok": false});

    let (app_ref, sent, url) = (&app, report.clone(), app.url(&reports));
    let post = move |token: Option<String>, query: &'static str| {
        let mut req = app_ref.client.post(format!("{url}{query}")).json(&sent);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        app_ref.send(req)
    };
    let (status, _) = post(None, "?name=ruff").await;
    assert_eq!(status, 401, "no token");
    let (status, _) = post(Some(owner.clone()), "?name=ruff").await;
    assert_eq!(status, 401, "a user's JWT is not a callback token");
    let second_token = launcher.token(second["id"].as_i64().unwrap());
    let (status, _) = post(Some(second_token), "?name=ruff").await;
    assert_eq!(status, 403, "another run's token");
    let token = launcher.token(run_id);
    let (status, body) = post(Some(token.clone()), "").await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"name": ["Tool 'name' is required as a query parameter."]})
    );
    let (status, created) = post(Some(token.clone()), "?name=ruff&instance=nb/a.ipynb").await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "ruff");
    assert_eq!(created["instance"], "nb/a.ipynb");
    assert_eq!(created["output"], report, "stored verbatim");
    assert_eq!(created["run"], run_id);
    let (status, body) = post(Some(token.clone()), "?name=ruff&instance=nb/a.ipynb").await;
    assert_eq!(status, 400);
    assert_eq!(
        body["detail"],
        "A job report for 'ruff/nb/a.ipynb' already exists for this run."
    );
    let (status, _) = post(Some(token.clone()), "?name=ruff").await;
    assert_eq!(status, 201, "another instance");
    // As `curl -L -d @report.json` sends it: form content type, JSON body.
    let (status, body) = app
        .send(
            app.client
                .post(format!("{}?name=bandit", app.url(&reports)))
                .bearer_auth(&token)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(r#"{"results": []}"#),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["output"], json!({"results": []}));
    // The right token on the wrong pipeline path.
    let (status, _) = app
        .send(
            app.client
                .post(app.url(&format!(
                    "/api/pipelines/{}/runs/{run_id}/jobreports/?name=x",
                    p + 1000
                )))
                .bearer_auth(&token)
                .json(&report),
        )
        .await;
    assert_eq!(status, 404);

    // Reading: the run's starter and staff; others 404.
    let (status, list) = app
        .get(
            &format!("{reports}?name=ruff&instance=nb/a.ipynb"),
            Some(&owner),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], created["id"]);
    let (_, all) = app.get(&reports, Some(&staff)).await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    let one = format!("{reports}{}/", created["id"]);
    assert_eq!(app.get(&one, Some(&owner)).await.1, created);
    assert_eq!(app.get(&one, Some(&other)).await.0, 404);
    assert_eq!(app.get(&reports, Some(&other)).await.0, 404);
    let (_, run_now) = app
        .get(&format!("/api/pipelines/{p}/runs/{run_id}/"), Some(&owner))
        .await;
    assert_eq!(run_now["job_reports_count"], 3);
    let (_, listed) = app.get(&runs_path, Some(&owner)).await;
    let counts: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["job_reports_count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, vec![3, 0]);
}

#[tokio::test]
async fn reading_a_run_reconciles_it_and_cancel_kills_it() {
    let (app, launcher) = spawn_with_fake().await;
    let cat = catalogue(&app).await;
    let (_, owner) = app.user_with_token("quinn", false).await;
    let (_, other) = app.user_with_token("rita", false).await;
    let runs_path = format!("/api/pipelines/{}/runs/", cat.public_pipeline);
    let (_, first) = app.post(&runs_path, Some(&owner), &ci_parameters()).await;
    let (_, second) = app.post(&runs_path, Some(&owner), &ci_parameters()).await;

    launcher.set_observation(Some(JobObservation {
        status: RunStatus::Succeeded,
        message: None,
        completion_time: Some(chrono::Utc::now()),
    }));
    let (status, run) = app
        .get(&format!("{runs_path}{}/", first["id"]), Some(&owner))
        .await;
    assert_eq!(status, 200);
    assert_eq!(run["status"], "succeeded");
    assert!(run["completion_time"].is_string());

    launcher.set_observation(None);
    let cancel = format!("{runs_path}{}/cancel/", second["id"]);
    assert_eq!(call(&app, "POST", &cancel, Some(&other), None).await.0, 404);
    let (status, run) = call(&app, "POST", &cancel, Some(&owner), None).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "killed");
    assert!(run["completion_time"].is_string());
}
