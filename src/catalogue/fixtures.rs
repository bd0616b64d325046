//! Import of the reference's Django fixtures (placeholder until written).

use sea_orm::DatabaseConnection;
use std::path::Path;

/// Imports one fixture file.
pub async fn import_file(_db: &DatabaseConnection, _path: &Path) -> anyhow::Result<String> {
    anyhow::bail!("import-fixtures is not written yet")
}
