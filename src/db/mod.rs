//! Database access: connection set-up for SQLite and PostgreSQL, migrations, and error helpers.

pub mod entities;
pub mod migrations;

use crate::config::Config;
use rand::RngCore;
use sea_orm::{
    ActiveValue::Set, ConnectOptions, Database, DatabaseConnection, DbErr, EntityTrait, RuntimeErr,
    SqlErr,
};
use sea_orm_migration::MigratorTrait;
use std::time::Duration;

pub use migrations::Migrator;

/// Opens the configured store. SQLite gets WAL, a busy timeout and foreign keys; both backends
/// get bounded acquire/connect timeouts so an outage turns into a quick 503, not a hung request.
pub async fn connect(config: &Config) -> Result<DatabaseConnection, DbErr> {
    connect_with(config, false).await
}

/// [`connect`], optionally without opening a connection yet (`lazy`): the first query does,
/// so a server can listen before the database has answered.
pub async fn connect_with(config: &Config, lazy: bool) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(config.database.database_url.clone());
    opts.connect_lazy(lazy);
    let wait = outage_wait(config.server.request_timeout);
    opts.sqlx_logging(false)
        .connect_timeout(wait)
        .acquire_timeout(wait);
    if config.database.is_sqlite() {
        let url = &config.database.database_url;
        crate::files::prepare_sqlite(url, !url.contains("mode=") || url.contains("mode=rwc"));
        // One connection: SQLite serialises writers anyway, and a single connection avoids
        // SQLITE_BUSY between our own pool members.
        opts.max_connections(1).min_connections(1);
        // A file named without `mode=` is created on first use, as the default one is: an
        // image's `sqlite:///data/aq.db` on a fresh volume must not fail with SQLite's bare
        // "unable to open database file". An explicit mode (`ro`, `rw`) is left as given.
        let create = !config.database.database_url.contains("mode=");
        opts.map_sqlx_sqlite_opts(move |o| {
            // Only ever turned on: `create_if_missing(false)` would override `mode=rwc`.
            let o = if create { o.create_if_missing(true) } else { o };
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
        });
    } else {
        opts.max_connections(config.database.database_max_connections)
            .min_connections(0)
            .idle_timeout(Duration::from_secs(300));
    }
    Database::connect(opts).await
}

/// How long a request waits for a database connection: 5 s, but at most half the request
/// timeout, so an outage is answered 503 + `Retry-After` before the request times out (408).
pub fn outage_wait(request_timeout: Duration) -> Duration {
    Duration::from_secs(5).min(request_timeout / 2)
}

/// Applies pending migrations.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Whether the schema is missing migrations (used to fail clearly when PostgreSQL was not
/// migrated). Read-only: one query, no `CREATE TABLE` of the migrations table (a cold start
/// never runs DDL, and the database user may lack the right to).
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<usize, DbErr> {
    use sea_orm::{ConnectionTrait, Statement};
    // The common case in one statement on one connection (a cold start's first, over TLS on
    // PostgreSQL); sea-orm-migration's own check asks the information schema first and may
    // open a second connection for its second query.
    let applied = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT version FROM seaql_migrations",
        ))
        .await;
    match applied {
        Ok(rows) => {
            let applied: std::collections::HashSet<String> = rows
                .iter()
                .filter_map(|r| r.try_get_by_index::<String>(0).ok())
                .collect();
            Ok(Migrator::migrations()
                .iter()
                .filter(|m| !applied.contains(m.name()))
                .count())
        }
        // No migrations table (or another surprise): the library's careful check decides.
        Err(_) => Ok(Migrator::get_pending_migrations_read_only(db).await?.len()),
    }
}

/// Key of the generated JWT secret in `aq_setting`.
const JWT_KEY_SETTING: &str = "jwt_secret";

/// Returns the JWT signing key: `JWT_SECRET` when set, otherwise a random key generated once and
/// kept in the database (insert-if-absent, so concurrent first starts agree on one key).
pub async fn jwt_key(config: &Config, db: &DatabaseConnection) -> Result<Vec<u8>, DbErr> {
    if let Some(secret) = &config.auth.jwt_secret {
        return Ok(secret.as_bytes().to_vec());
    }
    use entities::kv_setting as kv;
    if let Some(row) = kv::Entity::find_by_id(JWT_KEY_SETTING.to_string())
        .one(db)
        .await?
    {
        return Ok(row.value.into_bytes());
    }
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let generated = hex::encode(raw);
    kv::Entity::insert(kv::ActiveModel {
        key: Set(JWT_KEY_SETTING.into()),
        value: Set(generated),
    })
    .on_conflict_do_nothing_on([kv::Column::Key])
    .exec(db)
    .await?;
    let row = kv::Entity::find_by_id(JWT_KEY_SETTING.to_string())
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("generated JWT key vanished".into()))?;
    Ok(row.value.into_bytes())
}

/// A unique constraint was violated (duplicate key).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// The database could not be reached or is overloaded: worth a retry (503), not a 500.
pub fn is_unavailable(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            sqlx_unavailable(e)
        }
        _ => false,
    }
}

/// The database refused a value (PostgreSQL SQLSTATE class 22: NUL in text, value too long,
/// out-of-range number...): the client's fault, a 400 rather than a 500.
pub fn is_data_error(err: &DbErr) -> bool {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            matches!(e.as_ref(), sea_orm::sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")))
        }
        _ => false,
    }
}

fn sqlx_unavailable(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as E;
    match e {
        E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::Tls(_) => true,
        E::Database(db) => {
            // SQLITE_BUSY / SQLITE_LOCKED, PostgreSQL admin shutdown / cannot connect now.
            matches!(
                db.code().as_deref(),
                Some("5" | "6" | "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01")
            )
        }
        _ => false,
    }
}

/// ISO 8601 in UTC with microseconds, e.g. `2026-11-25T17:51:48.725175Z`: how the reference
/// writes times, in the API's bodies and in the JSON documents stored with runs and events.
pub fn iso(dt: &chrono::DateTime<chrono::Utc>) -> String {
    dt.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_wait_is_shorter_than_the_request_timeout() {
        assert_eq!(outage_wait(Duration::from_secs(30)), Duration::from_secs(5));
        assert_eq!(
            outage_wait(Duration::from_secs(5)),
            Duration::from_millis(2500)
        );
        assert!(outage_wait(Duration::from_secs(1)) < Duration::from_secs(1));
    }
}
