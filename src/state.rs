//! Shared application state: one reference-counted allocation, so the clones that axum makes
//! for every layer and handler of every request cost one atomic increment.

use crate::{
    auth::{
        identity::Identities, jwt::JwtKeys, login_limit::LoginLimiter, oidc::SenderVerifier,
        revocation::Revocations, session::SessionKeys, user_cache::UserCache,
    },
    config::Config,
    metrics::Metrics,
    read_cache::ReadCache,
    runs::launcher::Launcher,
};
use sea_orm::DatabaseConnection;
use std::sync::Arc;

/// Every pipeline's list entry with its owner id (`None`: public), in id order.
pub type PipelineList = Vec<(Option<i64>, serde_json::Value)>;

/// What every handler may use (fields through `Deref` to [`AppStateInner`]).
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    /// Wraps the shared parts.
    pub fn new(inner: AppStateInner) -> Self {
        Self(Arc::new(inner))
    }

    /// A reference that does not keep the state alive (for executors the state owns).
    pub fn downgrade(&self) -> std::sync::Weak<AppStateInner> {
        Arc::downgrade(&self.0)
    }

    /// The state behind a [`AppState::downgrade`] reference, while it lives.
    pub fn upgrade(weak: &std::sync::Weak<AppStateInner>) -> Option<Self> {
        weak.upgrade().map(Self)
    }

    /// Base URL the executing tools call back to (`server_url`): the executor's own (the local
    /// runner's loopback address) or the configured one.
    pub fn callback_base_url(&self) -> String {
        self.launcher
            .callback_base_url()
            .unwrap_or_else(|| self.config.callback_base_url())
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppStateInner {
    /// Connection pool.
    pub db: DatabaseConnection,
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Key of the per-run callback tokens (`auth::run_token::derive`).
    pub run_token_key: [u8; 32],
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
    /// Every pipeline's list entry (owner id, JSON), for `GET /api/pipelines/`.
    pub pipeline_list: ReadCache<PipelineList>,
    /// Recently read users behind access tokens.
    pub users: UserCache,
    /// Keys of the browser session cookies.
    pub sessions: SessionKeys,
    /// Which sessions were signed out (cached per instance).
    pub revocations: Revocations,
    /// The IAM and CI issuers whose tokens are accepted.
    pub identities: Identities,
    /// Prometheus metrics of this instance (`GET /metrics`).
    pub metrics: Arc<Metrics>,
    /// Delivery state of the commit-status outbox (`statuses`).
    pub outbox: Arc<crate::statuses::Outbox>,
    /// When this instance last started a retention pass (`crate::maintenance`).
    pub maintenance: Arc<crate::maintenance::Maintenance>,
    /// The database schema has been checked (`/health/readiness` answers 200 only then).
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}
