//! The runs service: everything run bookkeeping needs, held by the shared state (`AppState`)
//! and called by the web and event layers, and reached by the launchers through a weak
//! reference (they move the runs they execute through it, never through the web layer's state).

use super::launcher::Launcher;
use crate::{config::Config, metrics::Metrics, statuses::Notifier};
use sea_orm::DatabaseConnection;
use std::sync::{Arc, Weak};

/// A cheap handle (one reference-counted allocation) to the runs service; its parts are
/// reached through `Deref` to [`RunServiceInner`].
#[derive(Clone)]
pub struct RunService(Arc<RunServiceInner>);

/// The parts of [`RunService`].
pub struct RunServiceInner {
    /// Connection pool.
    pub db: DatabaseConnection,
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Where runs are executed (Kubernetes, the local runner, or a recorder).
    pub launcher: Arc<dyn Launcher>,
    /// Key of the per-run callback tokens (`crate::auth::run_token::derive`).
    pub run_token_key: [u8; 32],
    /// The commit-status outbox, kicked after a transaction that queued statuses commits.
    pub notifier: Notifier,
    /// Prometheus metrics of this instance.
    pub metrics: Arc<Metrics>,
}

impl RunService {
    /// Wraps the parts.
    pub fn new(inner: RunServiceInner) -> Self {
        Self(Arc::new(inner))
    }

    /// A reference that does not keep the service alive (for launchers, which it owns).
    pub fn downgrade(&self) -> Weak<RunServiceInner> {
        Arc::downgrade(&self.0)
    }

    /// The service behind a [`RunService::downgrade`] reference, while it lives.
    pub fn upgrade(weak: &Weak<RunServiceInner>) -> Option<Self> {
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

impl std::ops::Deref for RunService {
    type Target = RunServiceInner;

    fn deref(&self) -> &RunServiceInner {
        &self.0
    }
}
