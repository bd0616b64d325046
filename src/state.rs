//! Shared application state of the web and event layers: one reference-counted allocation, so
//! the clones that axum makes for every layer and handler of every request cost one atomic
//! increment. It holds the runs service ([`RunService`]), which the domain uses instead.

use crate::{
    auth::{
        identity::Identities, jwt::JwtKeys, login_limit::LoginLimiter, oidc::SenderVerifier,
        revocation::Revocations, session::SessionKeys, user_cache::UserCache,
    },
    config::Config,
    read_cache::ReadCache,
    runs::RunService,
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
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppStateInner {
    /// Connection pool (the runs service's).
    pub db: DatabaseConnection,
    /// Validated configuration (the runs service's).
    pub config: Arc<Config>,
    /// JWT signing/verification keys.
    pub jwt: Arc<JwtKeys>,
    /// The runs service (with the launcher, the commit-status notifier and the metrics).
    pub runs: RunService,
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
    /// When this instance last started a retention pass (`crate::maintenance`).
    pub maintenance: Arc<crate::maintenance::Maintenance>,
    /// The database schema has been checked (`/health/readiness` answers 200 only then).
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}
