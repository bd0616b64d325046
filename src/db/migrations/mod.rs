//! Backend-neutral schema migrations (the same code runs on SQLite and PostgreSQL).

use sea_orm_migration::prelude::*;

mod m20261125_000001_init;
mod m20261201_000002_list_indexes;
mod m20261201_000002_quality;
mod m20261210_000003_access;

/// All migrations, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_init::Migration),
            Box::new(m20261201_000002_quality::Migration),
            Box::new(m20261201_000002_list_indexes::Migration),
            Box::new(m20261210_000003_access::Migration),
        ]
    }
}
