//! Foundation: health probes, error shapes, body limit, hosts.

use crate::common::{Options, TestApp};

#[tokio::test]
async fn health_probes_answer_200() {
    let app = TestApp::spawn().await;
    for path in ["/health/readiness", "/health/liveness"] {
        let (status, body) = app.get(path, None).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body["status"], "ok");
    }
}

#[tokio::test]
async fn unknown_route_is_json_404_and_bad_host_is_400() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/api/nope/", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["detail"], "Not found.");
    let (status, body) = app
        .send(
            app.client
                .get(app.url("/api/"))
                .header("host", "evil.example"),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("evil.example"));
    // health probes are exempt from the host check (kubelet uses the pod IP)
    let (status, _) = app
        .send(
            app.client
                .get(app.url("/health/readiness"))
                .header("host", "10.1.2.3"),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn body_limit_gives_json_413() {
    let app = TestApp::spawn_with(Options {
        env: vec![("MAX_BODY_BYTES".into(), "2048".into())],
        ..Default::default()
    })
    .await;
    let big = "x".repeat(4096);
    let (status, body) = app
        .send(
            app.client
                .post(app.url("/api/token/"))
                .header("content-type", "application/json")
                .body(big),
        )
        .await;
    assert_eq!(status, 413);
    assert!(body["detail"].as_str().unwrap().contains("too large"));
}
