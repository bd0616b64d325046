//! Helpers of the verdict tests: a server whose runs the [`FakeLauncher`] "launches" (every
//! launch creates "the Job" of the run), Job-status CloudEvents as an ApiServerSource delivers
//! them (they go through `runs::apply_observation`, the executors' own path), job-report
//! callbacks in JSON and multipart form, and a local HTTP server standing in for GitHub's and GitLab's commit
//! status APIs, with failure modes.

use crate::{
    common::{Options, TestApp},
    fake_launcher::{FakeLauncher, RUNS_NAMESPACE},
};
use application_quality_api::k8s::objects;
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    routing::any,
};
use serde_json::{Value, json};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::oneshot;

/// A server whose runs are launched by a [`FakeLauncher`], on the given database (or a fresh
/// one).
pub async fn spawn(
    env: Vec<(String, String)>,
    database_url: Option<String>,
) -> (TestApp, Arc<FakeLauncher>) {
    let launcher = Arc::new(FakeLauncher::default());
    let app = TestApp::spawn_with(Options {
        launcher: Some(launcher.clone()),
        env,
        database_url,
        ..Default::default()
    })
    .await;
    (app, launcher)
}

/// Ends a run the way the cluster does: a Job event (`Complete` or `Failed`) from the
/// ApiServerSource, through `/api/events/`.
pub async fn finish_job(app: &TestApp, run_id: i64, condition: &str) {
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": objects::object_name(run_id),
            "namespace": RUNS_NAMESPACE,
            "labels": {objects::MANAGED_BY_LABEL: objects::MANAGED_BY, objects::RUN_ID_LABEL: run_id.to_string()},
        },
        "spec": {"template": {"spec": {"containers": []}}},
        "status": {"conditions": [{"type": condition, "status": "True", "reason": "Test", "message": "from the test"}]},
    });
    let (status, body) = app
        .send(
            app.client
                .post(app.url("/api/events/"))
                .header("content-type", "application/json")
                .header("ce-specversion", "1.0")
                .header("ce-id", uuid::Uuid::new_v4().to_string())
                .header("ce-source", "https://10.96.0.1:443")
                .header("ce-type", "dev.knative.apiserver.resource.update")
                .body(job.to_string()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
}

/// A job report as the old `save` step posts it (JSON body, no digest).
pub async fn post_report_json(
    app: &TestApp,
    pipeline: i64,
    run: i64,
    token: &str,
    name: &str,
    report: &Value,
) -> (u16, Value) {
    app.send(
        app.client
            .post(app.url(&format!(
                "/api/pipelines/{pipeline}/runs/{run}/jobreports/?name={name}"
            )))
            .bearer_auth(token)
            .json(report),
    )
    .await
}

/// A multipart body with the given (name, content) parts, as `curl -F name=@file` builds it.
pub fn multipart(parts: &[(&str, &str)]) -> (String, String) {
    let boundary = "------------------------d74496d66958873e";
    let mut body = String::new();
    for (name, content) in parts {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.json\"\r\nContent-Type: application/octet-stream\r\n\r\n{content}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A job report with its digest, as the reference's upload step posts it (multipart).
pub async fn post_report_multipart(
    app: &TestApp,
    path: &str,
    token: &str,
    parts: &[(&str, &str)],
) -> (u16, Value) {
    let (ct, body) = multipart(parts);
    app.send(
        app.client
            .post(app.url(path))
            .bearer_auth(token)
            .header("content-type", ct)
            .body(body),
    )
    .await
}

/// A digest as the digest step writes it.
pub fn digest(tool: &str, counts: Value) -> String {
    json!({"tool": {"name": tool, "instance": "", "version": ""}, "counts": counts,
           "created_at": "2026-12-01T10:00:00.000000", "status": "ok"})
    .to_string()
}

/// One request the forge stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

/// How the forge stand-in answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// 201 with a status document.
    Ok,
    /// 500 (recorded as received, not as accepted).
    Error500,
    /// Waits, then 201.
    Slow(Duration),
}

#[derive(Default)]
struct ForgeState {
    mode: Mutex<Option<Mode>>,
    accepted: Mutex<Vec<Received>>,
    refused: Mutex<usize>,
}

/// A local HTTP server standing in for GitHub's and GitLab's commit status APIs. It records
/// each request it accepts; it can answer 500, answer slowly, or be stopped and started again
/// on the same port (the forge down).
pub struct ForgeStandIn {
    pub port: u16,
    state: Arc<ForgeState>,
    stop: Option<oneshot::Sender<()>>,
}

async fn answer(
    State(state): State<Arc<ForgeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let mode = state.mode.lock().unwrap().unwrap_or(Mode::Ok);
    match mode {
        Mode::Error500 => {
            *state.refused.lock().unwrap() += 1;
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"message": "Server Error"}).to_string(),
            );
        }
        Mode::Slow(d) => tokio::time::sleep(d).await,
        Mode::Ok => {}
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.accepted.lock().unwrap().push(Received {
        method,
        path: uri.path().to_string(),
        headers,
        body: body.clone(),
    });
    (
        StatusCode::CREATED,
        json!({"id": 1, "state": body["state"]}).to_string(),
    )
}

impl ForgeStandIn {
    /// Starts on a free port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut me = Self {
            port: listener.local_addr().unwrap().port(),
            state: Arc::default(),
            stop: None,
        };
        me.serve(listener);
        me
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (tx, rx) = oneshot::channel::<()>();
        let app = Router::new()
            .fallback(any(answer))
            .with_state(self.state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        self.stop = Some(tx);
    }

    /// The base URL to configure.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops listening (connections are refused).
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        // Wait until the port refuses connections.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_ok()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "stand-in did not stop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.serve(listener);
    }

    /// Changes how it answers.
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = Some(mode);
    }

    /// The requests it accepted, in arrival order.
    pub fn accepted(&self) -> Vec<Received> {
        self.state.accepted.lock().unwrap().clone()
    }

    /// How many requests it answered with 500.
    pub fn refused(&self) -> usize {
        *self.state.refused.lock().unwrap()
    }

    /// Waits until it accepted `n` requests (or fails after `secs`), poking the service with
    /// requests so retries become due.
    pub async fn wait_for(&self, app: &TestApp, n: usize, secs: u64) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.accepted();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the stand-in got {} statuses, expected {n}: {got:#?}",
                got.len()
            );
            // Any request lets the service retry what is due.
            let _ = app.get("/api/", None).await;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}
