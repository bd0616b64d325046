//! The store: SQLite or PostgreSQL, its pool, and whether migrations run at start-up.

use super::ConfigError;
use serde::Deserialize;

/// Where the data lives.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseConfig {
    /// `sqlite://...` (embedded default) or `postgres://...`.
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// Run migrations at start-up. Default: on for SQLite, off for PostgreSQL (use `migrate`).
    #[serde(default)]
    pub database_auto_migrate: Option<bool>,
    /// Connection pool size (PostgreSQL; SQLite uses one writer connection).
    #[serde(default = "default_db_max_connections")]
    pub database_max_connections: u32,
}

impl DatabaseConfig {
    /// The URL names a store this service speaks; the pool is not empty.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError(
                "DATABASE_URL must start with sqlite:, postgres:// or postgresql://".into(),
            ));
        }
        if self.database_max_connections == 0 {
            return Err(ConfigError(
                "DATABASE_MAX_CONNECTIONS must be positive".into(),
            ));
        }
        Ok(())
    }

    /// Whether the configured store is SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// Whether migrations run at start-up.
    pub fn auto_migrate(&self) -> bool {
        self.database_auto_migrate.unwrap_or(self.is_sqlite())
    }
}

fn default_database_url() -> String {
    "sqlite://application-quality.db?mode=rwc".into()
}

fn default_db_max_connections() -> u32 {
    10
}
