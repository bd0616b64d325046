//! The Python CloudEvents SDK as an independent client: when `AQ_PYTHON` names a Python with
//! `cloudevents`, `requests` and `pytest`, this starts the server, prepares a user, a staff
//! token and a trigger, runs `tests/python/test_cloudevents_sdk.py` against it and checks the
//! database afterwards. Without `AQ_PYTHON` the test is skipped with a note, unless `CI` or
//! `AQ_REQUIRE_PYTHON=1` is set, where it fails.

use super::support::{run_count, spawn};
use application_quality_api::db::entities::{pipeline_run, received_event};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;

fn python() -> Option<String> {
    match std::env::var("AQ_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            let required = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
                || std::env::var("AQ_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "AQ_PYTHON is not set but CI/AQ_REQUIRE_PYTHON requires the Python SDK test: \
                 python3 -m venv .venv && .venv/bin/pip install cloudevents requests pytest, \
                 then AQ_PYTHON=.venv/bin/python"
            );
            eprintln!(
                "note: skipping the Python CloudEvents SDK test (set AQ_PYTHON to a python with cloudevents, requests and pytest)"
            );
            None
        }
    }
}

#[tokio::test]
async fn python_sdk_client_against_the_server() {
    let Some(python) = python() else {
        return;
    };
    let t = spawn().await;
    let app = &t.app;
    let (_, staff) = app.user_with_token("py-staff", true).await;
    let (_, owner) = app.user_with_token("py-owner", false).await;
    let (status, body) = app
        .send(app.client.post(app.url("/api/triggers/")).bearer_auth(&owner).json(&json!({
            "slug": "py-push",
            "trigger_type": "github_webhook_push",
            "pipeline": t.pipeline_id,
            "cql2_filter": {"op": "=", "args": [{"property": "repository.full_name"}, "py/repo"]},
            "params_mapping": {"clone_subworkflow.clone.repo_url": "repository.clone_url"}
        })))
        .await;
    assert_eq!(status, 201, "{body}");

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/test_cloudevents_sdk.py"
    );
    let mut cmd = std::process::Command::new(&python);
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider", script])
        .env("AQ_URL", &app.base)
        .env("AQ_USER", "event")
        .env("AQ_PIPELINE_ID", t.pipeline_id.to_string())
        .env("AQ_STAFF_TOKEN", &staff)
        .env("AQ_RUN_PREFIX", "pyt");
    // pytest blocks: run it off the runtime so the server keeps answering.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("AQ_PYTHON runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pytest failed:\n{stdout}\n{stderr}");
    eprintln!("{stdout}");

    // binary + structured execute, binary + structured push: four runs, launched once each
    assert_eq!(run_count(app).await, 4);
    assert_eq!(t.launcher.total(), 4);
    let by_trigger = pipeline_run::Entity::find()
        .filter(pipeline_run::Column::TriggeredBy.eq("py-push"))
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(by_trigger, 2);
    let rejected = received_event::Entity::find()
        .filter(received_event::Column::Outcome.eq("rejected"))
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(
        rejected, 4,
        "unknown user and invalid parameters, in both modes"
    );
}
