//! Shared application state: cheap to clone (everything inside is reference-counted).

use crate::{
    auth::{jwt::JwtKeys, login_limit::LoginLimiter, oidc::SenderVerifier},
    config::Config,
    metrics::Metrics,
    runs::launcher::Launcher,
};
use sea_orm::DatabaseConnection;
use std::sync::Arc;

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    /// Connection pool.
    pub db: DatabaseConnection,
    /// Validated configuration.
    pub config: Arc<Config>,
    /// JWT signing/verification keys.
    pub jwt: Arc<JwtKeys>,
    /// Where runs are executed (Kubernetes, or a recorder when no cluster is configured).
    pub launcher: Arc<dyn Launcher>,
    /// Lower-cased allowed `Host` values.
    pub allowed_hosts: Arc<Vec<String>>,
    /// Failed-login counters of `POST /api/token/` (per instance).
    pub login_limiter: Arc<LoginLimiter>,
    /// Verifier of CloudEvent senders' tokens; `None` when `EVENTS_AUTH=off`.
    pub event_senders: Option<Arc<SenderVerifier>>,
    /// Prometheus metrics of this instance (`GET /metrics`).
    pub metrics: Arc<Metrics>,
}
