//! Helpers of the REST tests: a small catalogue written straight to the database (independent
//! of the demo seed), and a server whose runs the [`FakeLauncher`] "launches" (it keeps each
//! run's callback token so tests can play the pipeline pod calling back).

use crate::{
    common::{Options, TestApp},
    fake_launcher::FakeLauncher,
};
use application_quality_api::{
    db::entities::{
        command_line_tool, pipeline, pipeline_tool, subworkflow, subworkflow_tag, subworkflow_tool,
        tag,
    },
    http::pipelines::DEFAULT_TEMPLATE,
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use serde_json::{Value, json};
use std::sync::Arc;

/// Ids of what [`catalogue`] created.
pub struct Catalogue {
    /// Public pipeline (owner null) made of `clone_subworkflow`.
    pub public_pipeline: i64,
    /// Tag attached to `lint_subworkflow`.
    pub tag_id: i64,
}

/// The CI workflow's parameters.
pub fn ci_parameters() -> Value {
    json!({"parameters": {"clone_subworkflow": {"clone": {
        "repo_url": "https://github.com/org/repo",
        "repo_branch": "main"
    }}}})
}

async fn add_subworkflow(app: &TestApp, slug: &str, tool: &str, params: Value, available: bool) {
    let db = &app.state.db;
    command_line_tool::ActiveModel {
        slug: Set(tool.into()),
        name: Set(tool.into()),
        definition: Set(format!(
            "- class: CommandLineTool\n  id: {tool}_tool\n  inputs: {{}}\n  outputs: {{}}\n  baseCommand: 'true'\n"
        )),
        version: Set(Some("0.1".into())),
    }
    .insert(db)
    .await
    .unwrap();
    subworkflow::ActiveModel {
        slug: Set(slug.into()),
        name: Set(format!("{tool} tool")),
        description: Set(Some(format!("Runs {tool}."))),
        pipeline_step: Set(format!(
            "{slug}_step:\n  in: {{}}\n  run: '#{slug}'\n  out: []\n"
        )),
        definition: Set(format!(
            "- class: Workflow\n  id: {slug}\n  inputs: {{}}\n  outputs: []\n  steps: []\n{{% for tool in tools %}}{{{{ tool.definition }}}}\n{{% endfor %}}"
        )),
        user_params: Set(params),
        version: Set("0.1".into()),
        status: Set("Stable".into()),
        available: Set(available),
    }
    .insert(db)
    .await
    .unwrap();
    subworkflow_tool::ActiveModel {
        subworkflow_id: Set(slug.into()),
        commandlinetool_id: Set(tool.into()),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
}

/// Inserts `clone_subworkflow` (tool `clone`, string inputs `repo_url`/`repo_branch`),
/// `lint_subworkflow` (tool `lint`, boolean `verbose`, tagged), an unavailable
/// `hidden_subworkflow`, and a public pipeline "CI pipeline" made of `clone_subworkflow`.
pub async fn catalogue(app: &TestApp) -> Catalogue {
    let db = &app.state.db;
    let string = |doc: &str| json!({"type": "string", "default": "", "label": doc, "doc": doc});
    add_subworkflow(
        app,
        "clone_subworkflow",
        "clone",
        json!({"clone": {"repo_url": string("Repo URL"), "repo_branch": string("Repo branch")}}),
        true,
    )
    .await;
    add_subworkflow(
        app,
        "lint_subworkflow",
        "lint",
        json!({"lint": {"verbose": {"type": "boolean", "default": false}}}),
        true,
    )
    .await;
    add_subworkflow(app, "hidden_subworkflow", "hidden", json!({}), false).await;
    let t = tag::ActiveModel {
        name: Set("asset: python".into()),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    subworkflow_tag::ActiveModel {
        subworkflow_id: Set("lint_subworkflow".into()),
        tag_id: Set(t.id),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    let now = chrono::Utc::now();
    let p = pipeline::ActiveModel {
        name: Set("CI pipeline".into()),
        description: Set(Some("Clones a repository.".into())),
        template: Set(DEFAULT_TEMPLATE.into()),
        version: Set(Some("0.1".into())),
        owner_id: Set(None),
        created_at: Set(Some(now)),
        edited_at: Set(Some(now)),
        default_inputs: Set(Some(json!({}))),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    pipeline_tool::ActiveModel {
        pipeline_id: Set(p.id),
        subworkflow_id: Set("clone_subworkflow".into()),
        position: Set(0),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    Catalogue {
        public_pipeline: p.id,
        tag_id: t.id,
    }
}

/// A server whose runs are "launched" by a [`FakeLauncher`].
pub async fn spawn_with_fake() -> (TestApp, Arc<FakeLauncher>) {
    let launcher = Arc::new(FakeLauncher::default());
    let app = TestApp::spawn_with(Options {
        launcher: Some(launcher.clone()),
        ..Default::default()
    })
    .await;
    (app, launcher)
}

/// Sends `method path` with an optional bearer token and JSON body; returns (status, body).
pub async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = app.client.request(method.parse().unwrap(), app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    app.send(req).await
}
