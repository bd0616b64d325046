//! application-quality-api: a scale-to-zero Knative function that replaces the backend API of
//! the EOEPCA Application Quality building block. See docs/ARCHITECTURE.md for the module map.
//!
//! [`run`] starts the server on a given listener (tests use port 0); [`build_state`] opens the
//! database and picks the launcher; [`serve`] runs the router until a shutdown signal.

pub mod auth;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod files;
pub mod http;
pub mod json;
pub mod k8s;
pub mod local;
pub mod maintenance;
pub mod metrics;
pub mod pipelines;
pub mod quality;
pub mod read_cache;
pub mod replay;
pub mod runs;
pub mod state;
pub mod statuses;
pub mod telemetry;

use anyhow::Context;
use axum::{ServiceExt, extract::Request};
use config::{Config, ExecutorMode, KubernetesMode};
use runs::launcher::{Launcher, RecordingLauncher};
use state::AppState;
use std::{future::Future, sync::Arc};
use tokio::net::TcpListener;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

/// Opens the database (migrating it when configured to), loads the JWT key and chooses the
/// executor from `EXECUTOR` / `KUBERNETES`.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let launcher = select_launcher(&config).await?;
    build_state_with(config, launcher).await
}

/// Like [`build_state`] with an explicit launcher (tests inject one).
pub async fn build_state_with(
    config: Config,
    launcher: Arc<dyn Launcher>,
) -> anyhow::Result<AppState> {
    // Without migrations to apply and with the JWT key from the environment, nothing needs the
    // database before the server listens: the pool connects lazily and the schema check runs
    // beside the first requests ([`check_schema`], readiness waits for it). This takes the
    // first connection (a TLS handshake on PostgreSQL) off the cold start's critical path.
    let deferred = !config.database.auto_migrate() && config.auth.jwt_secret.is_some();
    let db = db::connect_with(&config, deferred).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot open DATABASE_URL ({}): {e}",
            redact_url(&config.database.database_url)
        )
    })?;
    if config.database.auto_migrate() {
        db::migrate(&db).await.context("migrating the database")?;
    } else if !deferred {
        check_schema_now(&db).await?;
    }
    let key = db::jwt_key(&config, &db)
        .await
        .context("loading the JWT key")?;
    let jwt = auth::jwt::JwtKeys::new(
        &key,
        &config.auth.jwt_issuer,
        config.auth.jwt_access_lifetime_secs,
        config.auth.jwt_refresh_lifetime_secs,
    );
    let login_limiter = auth::login_limit::LoginLimiter::new(
        config.auth.login_max_failures_per_user,
        config.auth.login_max_failures_per_address,
        config.auth.login_failure_window,
    );
    let identities = auth::identity::Identities::from_config(&config)?;
    let config = Arc::new(config);
    let runs = runs::RunService::new(runs::RunServiceInner {
        db: db.clone(),
        config: config.clone(),
        launcher,
        run_token_key: auth::run_token::derivation_key(&key),
        notifier: statuses::Notifier::new(db.clone(), config.clone()),
        metrics: Arc::new(metrics::Metrics::new()),
    });
    Ok(AppState::new(state::AppStateInner {
        db,
        login_limiter: Arc::new(login_limiter),
        event_senders: auth::oidc::SenderVerifier::from_config(&config)?.map(Arc::new),
        pipeline_list: read_cache::ReadCache::new(config.server.pipeline_list_cache),
        users: auth::user_cache::UserCache::new(config.auth.auth_user_cache),
        revocations: auth::revocation::Revocations::new(config.auth.auth_user_cache),
        config,
        jwt: Arc::new(jwt),
        sessions: auth::session::SessionKeys::new(&key),
        identities,
        runs,
        maintenance: Arc::new(maintenance::Maintenance::default()),
        ready: Arc::new(std::sync::atomic::AtomicBool::new(!deferred)),
    }))
}

async fn check_schema_now(db: &sea_orm::DatabaseConnection) -> anyhow::Result<()> {
    let pending = db::pending_migrations(db)
        .await
        .context("checking the database schema")?;
    if pending > 0 {
        anyhow::bail!(
            "the database has {pending} pending migration(s): run `application-quality-api migrate` (or set DATABASE_AUTO_MIGRATE=true)"
        );
    }
    Ok(())
}

/// The schema check that [`build_state`] deferred (if any): on success the instance becomes
/// ready (`/health/readiness` answers 200); on failure the caller stops the server.
pub async fn check_schema(state: &AppState) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering;
    if state.ready.load(Ordering::Acquire) {
        return Ok(());
    }
    check_schema_now(&state.db).await?;
    state.ready.store(true, Ordering::Release);
    Ok(())
}

/// Picks the executor from `EXECUTOR` (or `KUBERNETES`); [`run`] logs the choice and its
/// reason ([`Launcher::describe`]) once the server listens.
pub async fn select_launcher(config: &Config) -> anyhow::Result<Arc<dyn Launcher>> {
    let mode = config.executor_mode();
    if mode == ExecutorMode::Off {
        return Ok(Arc::new(RecordingLauncher::new(
            "Not executed: runs are recorded only (EXECUTOR=off, or KUBERNETES=off without EXECUTOR).",
        )));
    }
    if matches!(mode, ExecutorMode::Auto | ExecutorMode::Kubernetes)
        && config.kubernetes.mode != KubernetesMode::Off
    {
        let required =
            mode == ExecutorMode::Kubernetes || config.kubernetes.mode == KubernetesMode::On;
        if let Some(launcher) = k8s::launcher_from_config(config, required).await? {
            return Ok(launcher);
        }
    }
    let engine = match local::engine::detect(config) {
        Ok(engine) => engine,
        Err(why) if mode == ExecutorMode::Local => {
            anyhow::bail!("EXECUTOR=local but the local runner cannot start: {why}")
        }
        Err(why) => {
            return Ok(Arc::new(RecordingLauncher::new(format!(
                "Not executed: no Kubernetes cluster is configured (no in-cluster service account, no KUBECONFIG) and the local runner is unavailable: {why}."
            ))));
        }
    };
    if config.local.k_service.is_some() && !config.local.local_runner_force {
        if mode == ExecutorMode::Local {
            anyhow::bail!(
                "EXECUTOR=local inside a Knative Service (K_SERVICE is set): a scaled-down pod would kill its runs; configure a cluster, or set LOCAL_RUNNER_FORCE=true"
            );
        }
        return Ok(Arc::new(RecordingLauncher::new(
            "Not executed: no Kubernetes cluster is configured, and the local runner is off inside a Knative Service (LOCAL_RUNNER_FORCE=true turns it on).",
        )));
    }
    if engine.sandbox.is_none() {
        tracing::warn!(
            "LOCAL_SANDBOX=off: runs of the local runner execute without a sandbox, as this service's user, with its view of the machine and its network; only for a single trusted user"
        );
    }
    Ok(Arc::new(local::LocalLauncher::new(engine, config)))
}

/// Hides the password of a database URL in messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Serves the application on `listener` until `shutdown` completes; in-flight requests finish.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Trailing slashes are trimmed before routing, so `/api/pipelines/` and `/api/pipelines`
    // reach the same handler without a redirect (the reference 301s, which breaks POSTs).
    state
        .runs
        .launcher
        .attach(&state.runs, listener.local_addr()?);
    let app = NormalizePathLayer::trim_trailing_slash().layer(http::router(state));
    axum::serve(
        listener,
        ServiceExt::<Request>::into_make_service_with_connect_info::<std::net::SocketAddr>(app),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Builds the state and serves until SIGTERM or SIGINT.
pub async fn run(config: Config, listener: TcpListener) -> anyhow::Result<()> {
    if config.events.from_any_peer() {
        // Every start, so the choice never goes unnoticed in the logs.
        tracing::warn!(
            "EVENTS_TRUST_NETWORK=true with EVENTS_AUTH=off: CloudEvents are accepted from any peer without authentication, so whoever reaches this service can start runs as any user it names; use EVENTS_AUTH=oidc unless every sender on this network is trusted"
        );
    }
    if config.kubernetes.aqbb_reporterimage.is_some() {
        tracing::warn!(
            "AQBB_REPORTERIMAGE is ignored: the run's pod has one container, whose launcher (in the Calrissian image) posts the results"
        );
    }
    let state = build_state(config).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        executor = state.runs.launcher.name(),
        how = %state.runs.launcher.describe(),
        "listening"
    );
    let server = tokio::spawn(serve(state.clone(), listener, shutdown_signal()));
    if let Err(e) = check_schema(&state).await {
        server.abort();
        state.runs.launcher.shutdown().await;
        return Err(e);
    }
    server.await.context("server task")??;
    state.runs.launcher.shutdown().await;
    tracing::info!("shut down");
    Ok(())
}

/// Completes on SIGTERM (what Kubernetes sends) or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received, finishing in-flight requests");
}
