//! Safe event defaults: without sender authentication, events are accepted from this machine
//! only, and `serve` does not listen beyond it; `EVENTS_TRUST_NETWORK=true` is the explicit
//! way out. A network peer is played by this machine's own non-loopback address (a connection
//! to it carries it as its source), against the real server and the real binary.

use super::{Served, command, free_port, run};
use crate::common::{Options, TestApp, fresh_database_url, non_loopback_or_skip};
use crate::events::support::{execute_payload, run_count, stored_event};
use serde_json::Value;
use std::net::SocketAddr;

/// The seed documentation's `pipeline.execute` script (`ce-user: event`), as reqwest sends it
/// to `base`.
async fn seed_execute(base: &str, id: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/api/events/"))
        .header("ce-id", id)
        .header("ce-specversion", "1.0")
        .header(
            "ce-type",
            "org.eoepca.application-quality.events.pipeline.execute",
        )
        .header("ce-user", "event")
        .header("ce-source", "curl")
        .header("ce-subject", "pipelines/1")
        .header("content-type", "application/json")
        .body(execute_payload().to_string());
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn unauthenticated_events_from_beyond_this_machine_are_refused_by_default() {
    let Some(ip) = non_loopback_or_skip() else {
        return;
    };
    // Listening everywhere, as an embedding might: the ingress itself still tells peers apart.
    let app = TestApp::spawn_with(Options {
        bind: Some(if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.into()),
        ..Default::default()
    })
    .await;
    app.seed().await;
    app.user("event", "event-password-1", false).await;
    let (_, staff_token) = app.user_with_token("admin", true).await;
    let port = app.addr.port();
    let remote = format!("http://{}", SocketAddr::new(ip, port));
    let local = app.base.clone();

    // From the network: 403 (never retried), nothing recorded, no run; whoever it names.
    for (id, user) in [("net-1", "event"), ("net-2", "admin")] {
        let (status, body) = seed_execute(&remote, id, &[("ce-user", user)]).await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("this machine only"),
            "{body}"
        );
        assert!(stored_event(&app, "curl", id).await.is_none());
    }
    assert_eq!(run_count(&app).await, 0);
    // Every ingress path and every type, health probes included.
    for path in ["/", "/default/primary"] {
        let r = reqwest::Client::new()
            .post(format!("{remote}{path}"))
            .header("ce-id", "probe")
            .header("ce-specversion", "1.0")
            .header("ce-type", "org.eoepca.application-quality.probes.health")
            .header("ce-source", "curl")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    // The REST API is not events: reachable as before (with its own authentication).
    let r = reqwest::Client::new()
        .get(format!("{remote}/api/events/"))
        .header("host", "localhost")
        .bearer_auth(&staff_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A proxy on this machine forwarding someone else's request counts as that someone.
    for (header, value) in [
        ("x-forwarded-for", "203.0.113.7"),
        ("forwarded", "for=203.0.113.7"),
        ("x-real-ip", "203.0.113.7"),
    ] {
        let (status, body) = seed_execute(&local, "fwd", &[(header, value)]).await;
        assert_eq!(status, 403, "{header}: {body}");
    }
    assert_eq!(run_count(&app).await, 0);

    // From this machine: the seed script works as documented.
    let (status, body) = seed_execute(&local, "local-1", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(run_count(&app).await, 1);
}

#[tokio::test]
async fn the_trusted_network_setting_accepts_them_and_says_so_at_every_start() {
    let Some(ip) = non_loopback_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(&dir).await;
    let env = [("DATABASE_URL", db.as_str())];
    for args in [&["migrate"][..], &["seed"]] {
        let out = run(command(dir.path(), &env).args(args), None);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let out = run(
        command(dir.path(), &env).args(["user", "add", "event", "--password-stdin"]),
        Some("event-password-1\n"),
    );
    assert!(out.status.success(), "{out:?}");

    let any = if ip.is_ipv4() { "0.0.0.0" } else { "::" };
    let port = free_port(any);
    let served = Served::start(
        command(
            dir.path(),
            &[
                ("DATABASE_URL", &db),
                ("BIND_ADDRESS", any),
                ("EVENTS_TRUST_NETWORK", "true"),
            ],
        ),
        port,
        SocketAddr::new(ip, port),
    );
    assert!(served.logged("EVENTS_TRUST_NETWORK=true with EVENTS_AUTH=off"));
    let (status, body) = seed_execute(
        &format!("http://{}", SocketAddr::new(ip, port)),
        "trusted-1",
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    assert!(body["run_id"].as_i64().is_some(), "{body}");
}

#[test]
fn serve_refuses_to_listen_beyond_this_machine_with_unauthenticated_events() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
    for any in ["0.0.0.0", "::"] {
        let out = run(
            command(dir.path(), &[("DATABASE_URL", &db), ("BIND_ADDRESS", any)])
                .env("PORT", "0")
                .arg("serve"),
            None,
        );
        assert_eq!(out.status.code(), Some(2), "{any}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.starts_with('{')).collect();
        assert_eq!(lines.len(), 1, "{any}: one line, got {stderr:?}");
        assert!(
            lines[0].starts_with(&format!("error: BIND_ADDRESS={any} listens on"))
                && lines[0].contains("EVENTS_AUTH=oidc")
                && lines[0].contains("EVENTS_TRUST_NETWORK=true"),
            "{}",
            lines[0]
        );
    }
    // The one-off commands of a container (migrate, seed, user add) run with the image's
    // BIND_ADDRESS=0.0.0.0: they listen on nothing, so nothing to refuse.
    let out = run(
        command(
            dir.path(),
            &[("DATABASE_URL", &db), ("BIND_ADDRESS", "0.0.0.0")],
        )
        .arg("migrate"),
        None,
    );
    assert!(out.status.success(), "{out:?}");
}

/// `scripts/dev.sh` as it starts the service (its variables, loopback), and the seed
/// documentation's curl script from `docs/events.md`, run by curl itself.
#[tokio::test]
async fn the_seed_script_works_from_this_machine_against_a_dev_sh_start() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dev = std::fs::read_to_string(root.join("scripts/dev.sh")).unwrap();
    assert!(
        dev.contains("export BIND_ADDRESS=${BIND_ADDRESS:-127.0.0.1}"),
        "dev.sh binds loopback unless told otherwise"
    );
    let docs = std::fs::read_to_string(root.join("docs/events.md")).unwrap();
    let script = docs
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("ce-user: event") && b.contains("$SERVICE_URL/api/events/"))
        .expect("the seed script in docs/events.md");

    let dir = tempfile::tempdir().unwrap();
    // dev.sh's default store is this SQLite file; with TEST_BACKEND=postgres, a database there
    // (dev.sh takes DATABASE_URL from the environment too).
    let db = match crate::common::backend().as_str() {
        "postgres" => fresh_database_url(&dir).await,
        _ => "sqlite://application-quality.db?mode=rwc".to_string(),
    };
    let env = [
        ("DATABASE_URL", db.as_str()),
        ("PUBLIC_URL", "http://localhost:8080"),
        ("LOG_FORMAT", "pretty"),
    ];
    for args in [&["migrate"][..], &["seed"]] {
        let out = run(command(dir.path(), &env).args(args), None);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let out = run(
        command(dir.path(), &env).args(["user", "add", "event", "--password-stdin"]),
        Some("event-password-1\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let port = free_port("127.0.0.1");
    let _served = Served::start(
        command(dir.path(), &env),
        port,
        SocketAddr::from(([127, 0, 0, 1], port)),
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("SERVICE_URL", format!("http://localhost:{port}"))
        .output()
        .expect("curl (scripts/test.sh installs it)");
    assert!(out.status.success(), "{out:?}");
    let reply: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(reply["status"], "accepted", "{reply}");
    assert_eq!(reply["processed_id"], "123");
}
