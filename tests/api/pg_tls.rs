//! PostgreSQL over TLS with full verification: `sslmode=verify-full` with the server's CA works
//! (also through the schema check that a cold start defers past listening, which readiness
//! waits for), and refuses a server whose certificate does not name the host or is not signed
//! by a trusted CA. Always needs PostgreSQL with TLS on (`TEST_DATABASE_URL`; Debian's package
//! enables it with a self-signed "snakeoil" certificate for `localhost`, which is then its own
//! CA), whatever `TEST_BACKEND` is.

use crate::common::{DEFAULT_PG, fresh_postgres_database};
use application_quality_api::{
    build_state_with, check_schema, config::Config, db, runs::launcher::RecordingLauncher, serve,
};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use std::sync::Arc;

/// The server's certificate (from `SHOW ssl_cert_file`), copied into `dir` as a CA file.
async fn server_certificate(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let admin_url = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG.into());
    let admin = Database::connect(&admin_url).await.unwrap();
    let show = |what: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    format!("SHOW {what}"),
                ))
                .await
                .unwrap()
                .unwrap()
                .try_get_by_index::<String>(0)
                .unwrap()
        }
    };
    assert_eq!(
        show("ssl").await,
        "on",
        "the test PostgreSQL must have TLS on (Debian's default)"
    );
    let cert_file = show("ssl_cert_file").await;
    let pem = std::fs::read(&cert_file).unwrap_or_else(|e| {
        panic!("the server certificate {cert_file} must be readable by the tests: {e}")
    });
    let path = dir.path().join("server-ca.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

/// A migrated database, reached at `host` with TLS parameters `tls`.
async fn tls_url(host: &str, tls: &str) -> (String, String) {
    let plain = fresh_postgres_database().await;
    let config = Config::from_iter([("DATABASE_URL".to_string(), plain.clone())]).unwrap();
    db::migrate(&db::connect(&config).await.unwrap())
        .await
        .unwrap();
    let mut url = url::Url::parse(&plain).unwrap();
    url.set_host(Some(host)).unwrap();
    url.set_query(Some(tls));
    (plain, url.to_string())
}

fn config(url: &str) -> Config {
    Config::from_iter([
        ("DATABASE_URL".to_string(), url.to_string()),
        ("DATABASE_AUTO_MIGRATE".to_string(), "false".to_string()),
        ("KUBERNETES".to_string(), "off".to_string()),
        (
            "JWT_SECRET".to_string(),
            "a-test-secret-of-at-least-32-bytes-long".to_string(),
        ),
    ])
    .unwrap()
}

fn launcher() -> Arc<RecordingLauncher> {
    Arc::new(RecordingLauncher::new("Not executed: test recorder."))
}

#[tokio::test]
async fn verify_full_works_and_readiness_waits_for_the_deferred_schema_check() {
    let dir = tempfile::tempdir().unwrap();
    let ca = server_certificate(&dir).await;
    let (_, url) = tls_url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    )
    .await;
    // Nothing is read before listening: building the state opens no connection.
    let state = build_state_with(config(&url), launcher()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(state.clone(), listener, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let readiness = format!("http://{addr}/health/readiness");
    assert_eq!(client.get(&readiness).send().await.unwrap().status(), 503);
    check_schema(&state)
        .await
        .expect("schema check over verify-full TLS");
    assert_eq!(client.get(&readiness).send().await.unwrap().status(), 200);
    // Requests use the same verified connections, and they are encrypted.
    let r = client
        .get(format!("http://{addr}/api/tags/"))
        .header("host", "localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ssl = state
        .db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<bool>(0)
        .unwrap();
    assert!(ssl, "the connection is TLS");
    let _ = stop.send(());
}

#[tokio::test]
async fn verification_failures_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = server_certificate(&dir).await;
    let root = format!("sslrootcert={}", ca.display());
    // The certificate names `localhost`, not 127.0.0.1: verify-full refuses, verify-ca (which
    // checks the CA only) accepts.
    for (host, tls, ok) in [
        ("127.0.0.1", format!("sslmode=verify-full&{root}"), false),
        ("127.0.0.1", format!("sslmode=verify-ca&{root}"), true),
        // Without the server's CA, the public roots do not vouch for it.
        ("localhost", "sslmode=verify-full".to_string(), false),
    ] {
        let (_, url) = tls_url(host, &tls).await;
        let state = build_state_with(config(&url), launcher()).await.unwrap();
        let result = check_schema(&state).await;
        assert_eq!(result.is_ok(), ok, "{host} {tls}: {result:?}");
        if let Err(e) = result {
            let text = format!("{e:#}");
            assert!(
                text.to_lowercase().contains("certificate") || text.contains("Tls"),
                "{host} {tls}: the error names the cause: {text}"
            );
            assert!(
                !state.ready.load(std::sync::atomic::Ordering::Acquire),
                "never ready"
            );
        }
    }
}
