//! The same migrations give equivalent schemas on SQLite and PostgreSQL: tables, columns in
//! order (name, nullability, type family, text length, presence of a default), primary keys,
//! indexes (unique or not) and foreign keys (columns, target, ON DELETE). This test always
//! needs PostgreSQL (`TEST_DATABASE_URL`), whatever `TEST_BACKEND` is. Views (the Grafana ones
//! exist on PostgreSQL only) are not tables and are left out; `grafana.rs` tests them.

use crate::common::fresh_postgres_database;
use application_quality_api::{config::Config, db};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, QueryResult, Statement};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Column {
    name: String,
    not_null: bool,
    family: &'static str,
    /// Declared length of character columns.
    length: Option<i64>,
    has_default: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    columns: Vec<Column>,
    primary_key: Vec<String>,
    /// (name, unique, columns).
    indexes: BTreeSet<(String, bool, Vec<String>)>,
    /// (columns, target table, target columns, on delete).
    foreign_keys: BTreeSet<(Vec<String>, String, Vec<String>, String)>,
}

type Schema = BTreeMap<String, Table>;

async fn rows(db: &DatabaseConnection, sql: &str) -> Vec<QueryResult> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, i: usize) -> T {
    row.try_get_by_index(i).unwrap()
}

/// Maps a declared type (SQLite affinity name or PostgreSQL `data_type`) to a family and,
/// for character types, a length.
fn family(declared: &str) -> (&'static str, Option<i64>) {
    let t = declared.to_ascii_lowercase();
    let length = t
        .split_once('(')
        .and_then(|(_, rest)| rest.trim_end_matches(')').parse().ok());
    let fam = if t.contains("json") {
        "json"
    } else if t.contains("timestamp") && (t.contains("timezone") || t.contains("time zone")) {
        "timestamptz"
    } else if t.contains("timestamp") || t.contains("date") {
        "timestamp"
    } else if t.contains("bool") {
        "bool"
    } else if t.contains("int") {
        "integer"
    } else if t.contains("char") || t.contains("text") || t.contains("clob") {
        "text"
    } else if t.contains("double") || t.contains("real") || t.contains("float") {
        "float"
    } else {
        panic!("unmapped column type {declared:?}")
    };
    (fam, length)
}

fn normalise_action(a: &str) -> String {
    match a.to_ascii_uppercase().as_str() {
        "A" | "NO ACTION" => "NO ACTION".into(),
        "R" | "RESTRICT" => "RESTRICT".into(),
        "C" | "CASCADE" => "CASCADE".into(),
        "N" | "SET NULL" => "SET NULL".into(),
        "D" | "SET DEFAULT" => "SET DEFAULT".into(),
        other => panic!("unknown referential action {other}"),
    }
}

fn split_cols(s: &str) -> Vec<String> {
    s.split(',').map(str::to_string).collect()
}

async fn sqlite_schema(db: &DatabaseConnection) -> Schema {
    let mut schema = Schema::new();
    let tables = rows(
        db,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .await;
    for t in tables {
        let name: String = get(&t, 0);
        let mut table = Table::default();
        let mut pk: Vec<(i64, String)> = Vec::new();
        for c in rows(db, &format!("PRAGMA table_info('{name}')")).await {
            let col: String = get(&c, 1);
            let declared: String = get(&c, 2);
            let not_null: i64 = get(&c, 3);
            let default: Option<String> = get(&c, 4);
            let pk_pos: i64 = get(&c, 5);
            let (fam, length) = family(&declared);
            if pk_pos > 0 {
                pk.push((pk_pos, col.clone()));
            }
            table.columns.push(Column {
                name: col,
                // SQLite reports a rowid primary key as nullable; it never is.
                not_null: not_null == 1 || pk_pos > 0,
                family: fam,
                length,
                has_default: default.is_some(),
            });
        }
        pk.sort();
        table.primary_key = pk.into_iter().map(|(_, c)| c).collect();
        for i in rows(db, &format!("PRAGMA index_list('{name}')")).await {
            let idx: String = get(&i, 1);
            let unique: i64 = get(&i, 2);
            let origin: String = get(&i, 3);
            if origin == "pk" {
                continue;
            }
            let cols: Vec<String> = rows(db, &format!("PRAGMA index_info('{idx}')"))
                .await
                .iter()
                .map(|r| get(r, 2))
                .collect();
            table.indexes.insert((idx, unique == 1, cols));
        }
        let mut fks: BTreeMap<i64, (Vec<String>, String, Vec<String>, String)> = BTreeMap::new();
        for f in rows(db, &format!("PRAGMA foreign_key_list('{name}')")).await {
            let id: i64 = get(&f, 0);
            let target: String = get(&f, 2);
            let from: String = get(&f, 3);
            let to: String = get(&f, 4);
            let on_delete: String = get(&f, 6);
            let e = fks
                .entry(id)
                .or_insert_with(|| (Vec::new(), target, Vec::new(), normalise_action(&on_delete)));
            e.0.push(from);
            e.2.push(to);
        }
        table.foreign_keys = fks.into_values().collect();
        schema.insert(name, table);
    }
    schema
}

async fn postgres_schema(db: &DatabaseConnection) -> Schema {
    let mut schema = Schema::new();
    let columns = rows(
        db,
        "SELECT table_name::text, column_name::text, is_nullable::text, data_type::text, \
                character_maximum_length::bigint, (column_default IS NOT NULL \
                AND column_default NOT LIKE 'nextval(%') OR false, is_identity::text \
         FROM information_schema.columns WHERE table_schema = 'public' \
           AND table_name IN (SELECT table_name FROM information_schema.tables \
                              WHERE table_schema = 'public' AND table_type = 'BASE TABLE') \
         ORDER BY table_name, ordinal_position",
    )
    .await;
    for c in columns {
        let table: String = get(&c, 0);
        let data_type: String = get(&c, 3);
        let (fam, _) = family(&data_type);
        schema.entry(table).or_default().columns.push(Column {
            name: get(&c, 1),
            not_null: get::<String>(&c, 2) == "NO",
            family: fam,
            length: get(&c, 4),
            has_default: get(&c, 5),
        });
    }
    let constraints = rows(
        db,
        "SELECT rel.relname::text, c.contype::text, \
                (SELECT string_agg(a.attname, ',' ORDER BY k.ord) \
                   FROM unnest(c.conkey) WITH ORDINALITY k(attnum, ord) \
                   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum), \
                COALESCE(frel.relname::text, ''), \
                COALESCE((SELECT string_agg(a.attname, ',' ORDER BY k.ord) \
                   FROM unnest(c.confkey) WITH ORDINALITY k(attnum, ord) \
                   JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum), ''), \
                c.confdeltype::text \
         FROM pg_constraint c \
         JOIN pg_class rel ON rel.oid = c.conrelid \
         JOIN pg_namespace n ON n.oid = rel.relnamespace \
         LEFT JOIN pg_class frel ON frel.oid = c.confrelid \
         WHERE n.nspname = 'public' AND c.contype IN ('p', 'f')",
    )
    .await;
    for c in constraints {
        let table: String = get(&c, 0);
        let kind: String = get(&c, 1);
        let cols = split_cols(&get::<String>(&c, 2));
        let t = schema.get_mut(&table).expect("constraint on a known table");
        if kind == "p" {
            t.primary_key = cols;
        } else {
            t.foreign_keys.insert((
                cols,
                get(&c, 3),
                split_cols(&get::<String>(&c, 4)),
                normalise_action(&get::<String>(&c, 5)),
            ));
        }
    }
    let indexes = rows(
        db,
        "SELECT t.relname::text, i.relname::text, x.indisunique, \
                (SELECT string_agg(a.attname, ',' ORDER BY k.ord) \
                   FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, ord) \
                   JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum) \
         FROM pg_index x \
         JOIN pg_class t ON t.oid = x.indrelid \
         JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = 'public' AND NOT x.indisprimary",
    )
    .await;
    for i in indexes {
        let table: String = get(&i, 0);
        schema.get_mut(&table).unwrap().indexes.insert((
            get(&i, 1),
            get(&i, 2),
            split_cols(&get::<String>(&i, 3)),
        ));
    }
    schema
}

async fn migrated(url: &str) -> DatabaseConnection {
    let config = Config::from_iter([("DATABASE_URL".to_string(), url.to_string())]).unwrap();
    let conn = db::connect(&config).await.unwrap();
    db::migrate(&conn).await.unwrap();
    assert_eq!(db::pending_migrations(&conn).await.unwrap(), 0);
    conn
}

#[tokio::test]
async fn sqlite_and_postgres_schemas_are_equivalent() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = migrated(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("schema.db").display()
    ))
    .await;
    let postgres = migrated(&fresh_postgres_database().await).await;
    assert_eq!(postgres.get_database_backend(), DbBackend::Postgres);

    let lite = sqlite_schema(&sqlite).await;
    let pg = postgres_schema(&postgres).await;

    // The domain is all there (and the comparison is not vacuous).
    for table in [
        "auth_user",
        "backend_pipeline",
        "backend_pipelinerun",
        "backend_jobreport",
        "backend_trigger",
        "aq_received_event",
    ] {
        assert!(
            lite.contains_key(table) && pg.contains_key(table),
            "{table}"
        );
    }
    assert!(
        lite["aq_received_event"]
            .indexes
            .iter()
            .any(|(_, unique, cols)| *unique && cols == &["source", "event_id"]),
        "events are unique on (source, id)"
    );
    assert!(lite.values().map(|t| t.foreign_keys.len()).sum::<usize>() >= 10);

    assert_eq!(
        lite.keys().collect::<Vec<_>>(),
        pg.keys().collect::<Vec<_>>(),
        "same tables"
    );
    for (name, l) in &lite {
        let p = &pg[name];
        assert_eq!(
            l.columns, p.columns,
            "{name}: columns (SQLite left, PostgreSQL right)"
        );
        assert_eq!(l.primary_key, p.primary_key, "{name}: primary key");
        assert_eq!(l.indexes, p.indexes, "{name}: indexes");
        assert_eq!(l.foreign_keys, p.foreign_keys, "{name}: foreign keys");
    }
}
