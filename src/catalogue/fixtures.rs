//! Import of Django `loaddata` JSON fixtures from the reference backend
//! (`application-quality-api import-fixtures <file>...`).
//!
//! A fixture file is a JSON array of `{"model": "app.model", "pk": ..., "fields": {...}}`.
//! Supported models: `backend.tag`, `backend.commandlinetool`, `backend.subworkflow`,
//! `backend.pipeline`, `backend.triggertype`, `backend.trigger` and `auth.user`. Primary keys
//! are kept (pipeline 17 stays 17), rows with an existing key are updated in place (a tag whose
//! name exists under another id, e.g. a seeded one, takes the fixture's id), many-to-many
//! lists (`tags`, `tools`) replace the stored links, and Django password hashes are stored as
//! they are (they verify through [`crate::auth::password`]). Objects are applied in dependency
//! order whatever their order in the file, in one transaction per file. Other models are
//! counted and skipped.

use super::seed::{set_pipeline_tools, set_subworkflow_tags, set_subworkflow_tools};
use crate::db::entities::{
    command_line_tool, pipeline, subworkflow, subworkflow_tag, tag, trigger, trigger_type, user,
};
use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait,
    IntoActiveModel, TransactionTrait,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::{collections::BTreeMap, fmt, path::Path};

/// One fixture object.
#[derive(Debug, Clone, Deserialize)]
struct Object {
    model: String,
    #[serde(default)]
    pk: Value,
    #[serde(default)]
    fields: Map<String, Value>,
}

/// Supported models, in the order they are applied (each only refers to earlier ones).
const ORDER: &[&str] = &[
    "backend.tag",
    "backend.commandlinetool",
    "backend.subworkflow",
    "auth.user",
    "backend.pipeline",
    "backend.triggertype",
    "backend.trigger",
];

/// Tables whose integer ids we may have written explicitly (their PostgreSQL sequences must
/// then move past the largest id, or later inserts would collide).
const SERIAL_TABLES: &[(&str, &str)] = &[
    ("backend.tag", "backend_tag"),
    ("auth.user", "auth_user"),
    ("backend.pipeline", "backend_pipeline"),
];

/// Counts of one import.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Per supported model: (created, updated).
    pub imported: BTreeMap<String, (usize, usize)>,
    /// Per unsupported model: number of objects skipped.
    pub skipped: BTreeMap<String, usize>,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for model in ORDER {
            if let Some((created, updated)) = self.imported.get(*model) {
                parts.push(format!(
                    "{model} {} (created {created}, updated {updated})",
                    created + updated
                ));
            }
        }
        if parts.is_empty() {
            parts.push("nothing imported".into());
        }
        write!(f, "{}", parts.join(", "))?;
        if !self.skipped.is_empty() {
            let skipped: Vec<String> = self
                .skipped
                .iter()
                .map(|(m, n)| format!("{m} ({n})"))
                .collect();
            write!(f, "; skipped unknown models: {}", skipped.join(", "))?;
        }
        Ok(())
    }
}

/// Imports one fixture file and returns a one-line summary.
pub async fn import_file(db: &DatabaseConnection, path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(import_str(db, &path.display().to_string(), &text)
        .await?
        .to_string())
}

/// Imports fixture text; `name` (usually the file path) prefixes error messages.
pub async fn import_str(
    db: &DatabaseConnection,
    name: &str,
    text: &str,
) -> anyhow::Result<ImportReport> {
    let objects: Vec<Object> = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{name}:{}:{}: not a Django fixture (a JSON array of {{model, pk, fields}}): {e}",
            e.line(),
            e.column()
        )
    })?;
    let txn = db.begin().await?;
    let report = apply(&txn, &objects)
        .await
        .with_context(|| format!("{name}: import failed, nothing was changed"))?;
    txn.commit().await?;
    Ok(report)
}

async fn apply<C: ConnectionTrait>(db: &C, objects: &[Object]) -> anyhow::Result<ImportReport> {
    let mut report = ImportReport::default();
    for o in objects {
        if !ORDER.contains(&o.model.as_str()) {
            *report.skipped.entry(o.model.clone()).or_default() += 1;
        }
    }
    for model in ORDER {
        for o in objects.iter().filter(|o| o.model == *model) {
            let created = apply_one(db, o)
                .await
                .with_context(|| format!("{} pk {}", o.model, o.pk))?;
            let entry = report.imported.entry(model.to_string()).or_default();
            if created {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
    }
    if db.get_database_backend() == DatabaseBackend::Postgres {
        for (model, table) in SERIAL_TABLES {
            if report.imported.contains_key(*model) {
                db.execute_unprepared(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                     COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                ))
                .await
                .with_context(|| format!("moving the id sequence of {table}"))?;
            }
        }
    }
    Ok(report)
}

/// Field accessors with Django's defaults and clear errors.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn string(&self, key: &str) -> anyhow::Result<String> {
        match self.0.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => bail!("field {key:?} must be a string, got {other}"),
            None => bail!("field {key:?} is missing"),
        }
    }

    fn string_or(&self, key: &str, default: &str) -> anyhow::Result<String> {
        Ok(self.opt_string(key)?.unwrap_or_else(|| default.to_string()))
    }

    fn opt_string(&self, key: &str) -> anyhow::Result<Option<String>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => bail!("field {key:?} must be a string or null, got {other}"),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> anyhow::Result<bool> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => bail!("field {key:?} must be a boolean, got {other}"),
        }
    }

    fn json_or_empty(&self, key: &str) -> Value {
        match self.0.get(key) {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v) => v.clone(),
        }
    }

    fn opt_id(&self, key: &str) -> anyhow::Result<Option<i64>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| anyhow::anyhow!("field {key:?} must be an integer id, got {v}")),
        }
    }

    fn id(&self, key: &str) -> anyhow::Result<i64> {
        self.opt_id(key)?
            .ok_or_else(|| anyhow::anyhow!("field {key:?} is missing"))
    }

    fn opt_time(&self, key: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
        match self.opt_string(key)? {
            None => Ok(None),
            Some(s) => parse_time(&s)
                .map(Some)
                .ok_or_else(|| anyhow::anyhow!("field {key:?} is not a date-time: {s:?}")),
        }
    }

    fn list<T>(&self, key: &str, item: impl Fn(&Value) -> Option<T>) -> anyhow::Result<Vec<T>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    item(v).ok_or_else(|| anyhow::anyhow!("field {key:?} has a bad entry {v}"))
                })
                .collect(),
            Some(other) => bail!("field {key:?} must be a list, got {other}"),
        }
    }
}

/// Django serialises aware date-times as RFC 3339 (`...Z`); naive ones are taken as UTC.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

fn int_pk(o: &Object) -> anyhow::Result<i64> {
    o.pk.as_i64()
        .ok_or_else(|| anyhow::anyhow!("pk must be an integer"))
}

fn slug_pk(o: &Object) -> anyhow::Result<String> {
    match &o.pk {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        _ => bail!("pk must be a non-empty string (slug)"),
    }
}

/// Inserts the model, or updates every column of the row with the same key. Returns whether
/// the row was created.
macro_rules! upsert {
    ($db:expr, $entity:ident, $key:expr, $model:expr) => {{
        let model = $model;
        let am = model.into_active_model().reset_all();
        if $entity::Entity::find_by_id($key).one($db).await?.is_some() {
            am.update($db).await?;
            false
        } else {
            $entity::Entity::insert(am)
                .exec_without_returning($db)
                .await?;
            true
        }
    }};
}

/// Tag names are unique. When the fixture's tag exists under another id (the demo
/// catalogue's, seeded at ids from [`super::seed::SEED_TAG_IDS_FROM`]), the fixture's id wins:
/// that row is replaced by the fixture's and its subworkflow links move along, so the
/// fixture's own subworkflows (in this file or a later one) find their tags by the ids they
/// name, and the seeded ones keep theirs by name.
async fn adopt_same_name_tag<C: ConnectionTrait>(
    db: &C,
    id: i64,
    name: &str,
) -> anyhow::Result<()> {
    use sea_orm::{ActiveValue::Set, ColumnTrait, QueryFilter};
    let Some(other) = tag::Entity::find()
        .filter(tag::Column::Name.eq(name))
        .one(db)
        .await?
        .filter(|t| t.id != id)
    else {
        return Ok(());
    };
    let linked: Vec<String> = subworkflow_tag::Entity::find()
        .filter(subworkflow_tag::Column::TagId.eq(other.id))
        .all(db)
        .await?
        .into_iter()
        .map(|l| l.subworkflow_id)
        .collect();
    subworkflow_tag::Entity::delete_many()
        .filter(subworkflow_tag::Column::TagId.eq(other.id))
        .exec(db)
        .await?;
    tag::Entity::delete_by_id(other.id).exec(db).await?;
    upsert!(
        db,
        tag,
        id,
        tag::Model {
            id,
            name: name.to_string(),
        }
    );
    for subworkflow_id in linked {
        let exists = subworkflow_tag::Entity::find()
            .filter(subworkflow_tag::Column::TagId.eq(id))
            .filter(subworkflow_tag::Column::SubworkflowId.eq(subworkflow_id.as_str()))
            .one(db)
            .await?
            .is_some();
        if !exists {
            subworkflow_tag::ActiveModel {
                subworkflow_id: Set(subworkflow_id),
                tag_id: Set(id),
                ..Default::default()
            }
            .insert(db)
            .await?;
        }
    }
    Ok(())
}

async fn apply_one<C: ConnectionTrait>(db: &C, o: &Object) -> anyhow::Result<bool> {
    let f = Fields(&o.fields);
    Ok(match o.model.as_str() {
        "backend.tag" => {
            let id = int_pk(o)?;
            adopt_same_name_tag(db, id, &f.string("name")?).await?;
            upsert!(
                db,
                tag,
                id,
                tag::Model {
                    id,
                    name: f.string("name")?,
                }
            )
        }
        "backend.commandlinetool" => {
            let slug = slug_pk(o)?;
            upsert!(
                db,
                command_line_tool,
                slug.clone(),
                command_line_tool::Model {
                    slug: slug.clone(),
                    name: f.string("name")?,
                    definition: f.string("definition")?,
                    version: f.opt_string("version")?,
                }
            )
        }
        "backend.subworkflow" => {
            let slug = slug_pk(o)?;
            let created = upsert!(
                db,
                subworkflow,
                slug.clone(),
                subworkflow::Model {
                    slug: slug.clone(),
                    name: f.string("name")?,
                    description: f.opt_string("description")?,
                    pipeline_step: f.string("pipeline_step")?,
                    definition: f.string("definition")?,
                    user_params: f.json_or_empty("user_params"),
                    version: f.string("version")?,
                    status: f.string_or("status", "Stable")?,
                    available: f.bool_or("available", true)?,
                }
            );
            let tags = f.list("tags", Value::as_i64)?;
            let tools = f.list("tools", |v| v.as_str().map(str::to_string))?;
            set_subworkflow_tags(db, &slug, &tags).await?;
            set_subworkflow_tools(db, &slug, &tools).await?;
            created
        }
        "auth.user" => {
            let id = int_pk(o)?;
            let date_joined = f.opt_time("date_joined")?.unwrap_or_else(Utc::now);
            upsert!(
                db,
                user,
                id,
                user::Model {
                    id,
                    username: f.string("username")?,
                    password: f.string("password")?,
                    email: f.string_or("email", "")?,
                    is_staff: f.bool_or("is_staff", false)?,
                    is_active: f.bool_or("is_active", true)?,
                    date_joined,
                }
            )
        }
        "backend.pipeline" => {
            let id = int_pk(o)?;
            let default_inputs = match o.fields.get("default_inputs") {
                None => Some(Value::Object(Map::new())),
                Some(Value::Null) => None,
                Some(v) => Some(v.clone()),
            };
            // Pipelines of fixtures older than the rules get the reference's defaults.
            let quality_rules = match o.fields.get("quality_rules") {
                None => Some(crate::quality::default_rules()),
                Some(Value::Null) => None,
                Some(v) => {
                    crate::quality::validate_rules(v)
                        .map_err(|e| anyhow::anyhow!("field \"quality_rules\": {e}"))?;
                    Some(v.clone())
                }
            };
            let created = upsert!(
                db,
                pipeline,
                id,
                pipeline::Model {
                    id,
                    name: f.string("name")?,
                    description: f.opt_string("description")?,
                    template: f.string("template")?,
                    version: f.opt_string("version")?,
                    owner_id: f.opt_id("owner")?,
                    created_at: f.opt_time("created_at")?,
                    edited_at: f.opt_time("edited_at")?,
                    default_inputs,
                    quality_rules,
                }
            );
            let tools = f.list("tools", |v| v.as_str().map(str::to_string))?;
            set_pipeline_tools(db, id, &tools).await?;
            created
        }
        "backend.triggertype" => {
            let slug = slug_pk(o)?;
            upsert!(
                db,
                trigger_type,
                slug.clone(),
                trigger_type::Model {
                    slug: slug.clone(),
                    name: f.string("name")?,
                    description: f.string_or("description", "")?,
                    event_type_prefix: f.string("event_type_prefix")?,
                    data: f.json_or_empty("data"),
                    status: f.string_or("status", "Enabled")?,
                    available: f.bool_or("available", true)?,
                }
            )
        }
        "backend.trigger" => {
            let slug = slug_pk(o)?;
            let trigger_type = match o.fields.get("trigger_type") {
                Some(Value::String(s)) => s.clone(),
                _ => bail!("field \"trigger_type\" must be a trigger type slug"),
            };
            upsert!(
                db,
                trigger,
                slug.clone(),
                trigger::Model {
                    slug: slug.clone(),
                    description: f.opt_string("description")?,
                    cql2_filter: f.json_or_empty("cql2_filter"),
                    params_default: f.json_or_empty("params_default"),
                    params_mapping: f.json_or_empty("params_mapping"),
                    trigger_type_id: trigger_type,
                    pipeline_id: f.id("pipeline")?,
                    owner_id: f.opt_id("owner")?,
                    status: f.string_or("status", "Enabled")?,
                    enabled: f.bool_or("enabled", true)?,
                }
            )
        }
        other => bail!("unsupported model {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_summary() {
        assert!(parse_time("2025-09-16T07:47:34.320Z").is_some());
        assert!(parse_time("2025-09-16T07:47:34").is_some());
        assert!(parse_time("yesterday").is_none());
        let mut r = ImportReport::default();
        r.imported.insert("backend.pipeline".into(), (1, 2));
        r.skipped.insert("backend.pipelinerun".into(), 4);
        assert_eq!(
            r.to_string(),
            "backend.pipeline 3 (created 1, updated 2); skipped unknown models: backend.pipelinerun (4)"
        );
    }
}
