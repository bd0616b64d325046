//! Brute-force protection of `POST /api/token/`: failed logins are limited per username and
//! per client address (429 with `Retry-After`), checked before the password, successes are not
//! counted, and `X-Forwarded-For` is believed only when `TRUSTED_PROXY_HEADERS` says so.

use crate::common::{Options, TestApp};
use serde_json::{Value, json};

async fn spawn(env: &[(&str, &str)]) -> TestApp {
    TestApp::spawn_with(Options {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    })
    .await
}

/// Status, `Retry-After` and body of one login attempt.
async fn login(
    app: &TestApp,
    username: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> (u16, Option<u64>, Value) {
    let mut req = app
        .client
        .post(app.url("/api/token/"))
        .json(&json!({"username": username, "password": password}));
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let retry_after = r.headers().get("retry-after").map(|v| {
        v.to_str()
            .unwrap()
            .parse::<u64>()
            .expect("Retry-After in seconds")
    });
    (status, retry_after, r.json().await.unwrap())
}

fn assert_limited((status, retry_after, body): &(u16, Option<u64>, Value), window: u64) {
    assert_eq!(*status, 429, "{body}");
    let secs = retry_after.expect("Retry-After");
    assert!((1..=window).contains(&secs), "Retry-After {secs}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Too many failed login attempts")),
        "{body}"
    );
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
}

#[tokio::test]
async fn sixth_failure_for_a_username_is_refused_even_with_the_right_password() {
    // The defaults: 5 failures per username, 20 per address, in 300 s.
    let app = TestApp::spawn().await;
    app.user("alice", "alice-right-pw", false).await;
    app.user("bob", "bob-right-pw", false).await;
    for i in 0..5 {
        let (status, retry_after, _) = login(&app, "alice", &format!("wrong-{i}"), None).await;
        assert_eq!((status, retry_after), (401, None), "failure {i}");
    }
    assert_limited(&login(&app, "alice", "alice-right-pw", None).await, 300);
    assert_limited(&login(&app, "alice", "wrong-again", None).await, 300);
    // Another username from the same address is not locked out.
    let (status, _, body) = login(&app, "bob", "bob-right-pw", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access"].is_string());
    // Unknown usernames are counted like known ones (no enumeration through the limiter).
    for _ in 0..5 {
        assert_eq!(login(&app, "nobody", "x", None).await.0, 401);
    }
    assert_limited(&login(&app, "nobody", "x", None).await, 300);
    // Malformed requests are 400 and count for nothing.
    for _ in 0..10 {
        let (status, _, _) = login(&app, "bob", "", None).await;
        assert_eq!(status, 400);
    }
    assert_eq!(login(&app, "bob", "bob-right-pw", None).await.0, 200);
}

#[tokio::test]
async fn address_limit_spans_usernames() {
    let app = spawn(&[
        ("LOGIN_MAX_FAILURES_PER_USER", "3"),
        ("LOGIN_MAX_FAILURES_PER_ADDRESS", "5"),
        ("LOGIN_FAILURE_WINDOW_SECS", "60"),
    ])
    .await;
    app.user("carol", "carol-right-pw", false).await;
    for _ in 0..3 {
        assert_eq!(login(&app, "u1", "guess", None).await.0, 401);
    }
    assert_limited(&login(&app, "u1", "guess", None).await, 60);
    // 3 failures from this address so far: other usernames still work...
    assert_eq!(login(&app, "carol", "carol-right-pw", None).await.0, 200);
    assert_eq!(login(&app, "u2", "guess", None).await.0, 401);
    assert_eq!(login(&app, "u3", "guess", None).await.0, 401);
    // ...until the address has 5: then every username is refused, right password or not.
    assert_limited(&login(&app, "carol", "carol-right-pw", None).await, 60);
    assert_limited(&login(&app, "u4", "guess", None).await, 60);
}

#[tokio::test]
async fn successes_do_not_count_and_clear_the_username() {
    let app = spawn(&[
        ("LOGIN_MAX_FAILURES_PER_USER", "2"),
        ("LOGIN_MAX_FAILURES_PER_ADDRESS", "3"),
    ])
    .await;
    app.user("dave", "dave-right-pw", false).await;
    for _ in 0..8 {
        assert_eq!(login(&app, "dave", "dave-right-pw", None).await.0, 200);
    }
    // One failure, a success, one failure: the success forgot the first failure, so the
    // username (limit 2) is not locked.
    assert_eq!(login(&app, "dave", "wrong", None).await.0, 401);
    assert_eq!(login(&app, "dave", "dave-right-pw", None).await.0, 200);
    assert_eq!(login(&app, "dave", "wrong", None).await.0, 401);
    assert_eq!(login(&app, "dave", "dave-right-pw", None).await.0, 200);
    // The address keeps its two failures: one more from anyone locks it.
    assert_eq!(login(&app, "erin", "wrong", None).await.0, 401);
    assert_limited(&login(&app, "dave", "dave-right-pw", None).await, 300);
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_proxy_is_trusted() {
    let limits = [
        ("LOGIN_MAX_FAILURES_PER_USER", "100"),
        ("LOGIN_MAX_FAILURES_PER_ADDRESS", "2"),
    ];
    // Untrusted (default): a client cannot dodge the address limit by inventing addresses.
    let app = spawn(&limits).await;
    assert_eq!(login(&app, "a", "x", Some("198.51.100.1")).await.0, 401);
    assert_eq!(login(&app, "b", "x", Some("198.51.100.2")).await.0, 401);
    assert_limited(&login(&app, "c", "x", Some("198.51.100.3")).await, 300);

    // Trusted: the first hop is the client, each with its own count.
    let mut env = limits.to_vec();
    env.push(("TRUSTED_PROXY_HEADERS", "true"));
    let app = spawn(&env).await;
    let first = "198.51.100.1, 10.0.0.7";
    assert_eq!(login(&app, "a", "x", Some(first)).await.0, 401);
    assert_eq!(login(&app, "b", "x", Some(first)).await.0, 401);
    assert_limited(&login(&app, "c", "x", Some(first)).await, 300);
    assert_eq!(login(&app, "c", "x", Some("198.51.100.2")).await.0, 401);
    // IPv6 clients are counted per /64.
    assert_eq!(login(&app, "d", "x", Some("2001:db8:1:2::1")).await.0, 401);
    assert_eq!(
        login(&app, "e", "x", Some("2001:db8:1:2::ffff")).await.0,
        401
    );
    assert_limited(&login(&app, "f", "x", Some("2001:db8:1:2::9")).await, 300);
    assert_eq!(login(&app, "f", "x", Some("2001:db8:1:3::9")).await.0, 401);
}
