//! Helpers of the event tests: a seeded server whose runs the [`FakeLauncher`] "launches" (it
//! counts launches and can play an unreachable API server), the demo catalogue, and CloudEvent request builders (binary mode exactly
//! as curl sends it, structured mode as the SDKs do).

use crate::{
    common::{Options, TestApp},
    fake_launcher::FakeLauncher,
};
use application_quality_api::db::entities::{pipeline, pipeline_run, received_event};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use std::sync::Arc;

/// A seeded server with the [`FakeLauncher`], the user `event` (the name the seed script uses),
/// and the id of the demo "Notebook static analysis" pipeline (`clone_subworkflow` first).
pub struct EventApp {
    pub app: TestApp,
    pub launcher: Arc<FakeLauncher>,
    pub pipeline_id: i64,
}

/// Starts [`EventApp`] with extra environment.
pub async fn spawn_with_env(env: Vec<(String, String)>) -> EventApp {
    let launcher = Arc::new(FakeLauncher::default());
    let app = TestApp::spawn_with(Options {
        launcher: Some(launcher.clone()),
        env,
        ..Default::default()
    })
    .await;
    app.seed().await;
    app.user("event", "event-password-1", false).await;
    let p = pipeline::Entity::find()
        .filter(pipeline::Column::Name.eq("Notebook static analysis"))
        .one(&app.state.db)
        .await
        .unwrap()
        .expect("the demo catalogue has the notebook pipeline");
    EventApp {
        app,
        launcher,
        pipeline_id: p.id,
    }
}

/// Starts [`EventApp`].
pub async fn spawn() -> EventApp {
    spawn_with_env(Vec::new()).await
}

/// The seed script's execution payload.
pub fn execute_payload() -> Value {
    json!({"parameters": {"clone_subworkflow": {"clone": {
        "repo_url": "https://github.com/SpaceApplications/eoepca-aqbb-test-files",
        "repo_branch": "main"
    }}}})
}

/// A binary-mode event: `ce-*` headers plus a JSON body, as `curl -H ... -d` sends it.
pub fn binary(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> reqwest::RequestBuilder {
    let mut req = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body.to_owned())
}

/// A pipeline.execute event in binary mode, as the seed script sends it.
pub fn execute(
    app: &TestApp,
    path: &str,
    id: &str,
    user: &str,
    pipeline_id: i64,
    data: &Value,
) -> reqwest::RequestBuilder {
    execute_with(app, path, id, user, pipeline_id, &[], data)
}

/// [`execute`] with some headers replaced (or added).
pub fn execute_with(
    app: &TestApp,
    path: &str,
    id: &str,
    user: &str,
    pipeline_id: i64,
    overrides: &[(&str, &str)],
    data: &Value,
) -> reqwest::RequestBuilder {
    let subject = format!("pipelines/{pipeline_id}");
    let mut headers: Vec<(&str, &str)> = vec![
        ("ce-id", id),
        ("ce-specversion", "1.0"),
        (
            "ce-type",
            "org.eoepca.application-quality.events.pipeline.execute",
        ),
        ("ce-user", user),
        ("ce-source", "curl"),
        ("ce-subject", &subject),
    ];
    for (k, v) in overrides {
        headers.retain(|(name, _)| name != k);
        headers.push((k, v));
    }
    binary(app, path, &headers, &data.to_string())
}

/// A structured-mode event (`application/cloudevents+json`).
pub fn structured(app: &TestApp, path: &str, event: &Value) -> reqwest::RequestBuilder {
    app.client
        .post(app.url(path))
        .header("content-type", "application/cloudevents+json")
        .body(event.to_string())
}

/// What a reply carried: status, `ce-*` headers and data.
#[derive(Debug)]
pub struct Replied {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Replied {
    /// A reply header as text ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }
}

/// Sends and collects the reply.
pub async fn deliver(req: reqwest::RequestBuilder) -> Replied {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    Replied {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// Runs in the database.
pub async fn run_count(app: &TestApp) -> u64 {
    pipeline_run::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap()
}

/// The stored event with this key.
pub async fn stored_event(app: &TestApp, source: &str, id: &str) -> Option<received_event::Model> {
    received_event::Entity::find()
        .filter(received_event::Column::Source.eq(source))
        .filter(received_event::Column::EventId.eq(id))
        .one(&app.state.db)
        .await
        .unwrap()
}
