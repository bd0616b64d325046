//! The built-in demo catalogue (placeholder until written).

use sea_orm::DatabaseConnection;

/// Loads the demo catalogue.
pub async fn seed(_db: &DatabaseConnection) -> anyhow::Result<String> {
    anyhow::bail!("seed is not written yet")
}
