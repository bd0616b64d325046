//! The built-in demo catalogue (`application-quality-api seed`): tags, command-line tools,
//! subworkflows, the public pipelines ("Notebook static analysis", "Python lint", "Python
//! pipeline", "Notebook execution", "Notebook pipeline", "Application Package validation";
//! docs/catalogue.md) and the GitHub/GitLab webhook trigger types.
//!
//! The catalogue is data, not code: `demo/catalogue.yaml` lists the entries and names the CWL
//! and Jinja files (next to it) holding the long texts; all of it is compiled into the binary.
//! Seeding upserts by natural key inside one transaction, and only writes rows that differ, so
//! a second run reports everything as unchanged and touches no timestamps.

use crate::db::entities::{
    command_line_tool, pipeline, pipeline_tool, subworkflow, subworkflow_tag, subworkflow_tool,
    tag, trigger_type,
};
use anyhow::Context;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, TransactionTrait,
};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;

/// The catalogue index.
const CATALOGUE: &str = include_str!("demo/catalogue.yaml");

/// Files the index refers to, by their path relative to `demo/`.
const FILES: &[(&str, &str)] = &[
    ("tools/clone.cwl", include_str!("demo/tools/clone.cwl")),
    ("tools/filter.cwl", include_str!("demo/tools/filter.cwl")),
    ("tools/nbcheck.cwl", include_str!("demo/tools/nbcheck.cwl")),
    ("tools/ruff.cwl", include_str!("demo/tools/ruff.cwl")),
    ("tools/bandit.cwl", include_str!("demo/tools/bandit.cwl")),
    ("tools/flake8.cwl", include_str!("demo/tools/flake8.cwl")),
    ("tools/pylint.cwl", include_str!("demo/tools/pylint.cwl")),
    (
        "tools/papermill.cwl",
        include_str!("demo/tools/papermill.cwl"),
    ),
    (
        "tools/ap_validator.cwl",
        include_str!("demo/tools/ap_validator.cwl"),
    ),
    ("tools/report.cwl", include_str!("demo/tools/report.cwl")),
    (
        "subworkflows/clone.cwl.j2",
        include_str!("demo/subworkflows/clone.cwl.j2"),
    ),
    (
        "subworkflows/notebook_validation.cwl.j2",
        include_str!("demo/subworkflows/notebook_validation.cwl.j2"),
    ),
    (
        "subworkflows/python_lint.cwl.j2",
        include_str!("demo/subworkflows/python_lint.cwl.j2"),
    ),
    (
        "subworkflows/bandit.cwl.j2",
        include_str!("demo/subworkflows/bandit.cwl.j2"),
    ),
    (
        "subworkflows/flake8.cwl.j2",
        include_str!("demo/subworkflows/flake8.cwl.j2"),
    ),
    (
        "subworkflows/pylint.cwl.j2",
        include_str!("demo/subworkflows/pylint.cwl.j2"),
    ),
    (
        "subworkflows/ruff_ipynb.cwl.j2",
        include_str!("demo/subworkflows/ruff_ipynb.cwl.j2"),
    ),
    (
        "subworkflows/papermill.cwl.j2",
        include_str!("demo/subworkflows/papermill.cwl.j2"),
    ),
    (
        "subworkflows/ap_validator.cwl.j2",
        include_str!("demo/subworkflows/ap_validator.cwl.j2"),
    ),
    ("pipeline.cwl.j2", include_str!("demo/pipeline.cwl.j2")),
];

/// The demo catalogue as described by `demo/catalogue.yaml`, with file references resolved.
#[derive(Debug, Clone, Deserialize)]
pub struct Catalogue {
    pub tags: Vec<String>,
    pub command_line_tools: Vec<ToolSpec>,
    pub subworkflows: Vec<SubworkflowSpec>,
    pub pipelines: Vec<PipelineSpec>,
    pub trigger_types: Vec<TriggerTypeSpec>,
}

/// A CWL CommandLineTool.
#[derive(Debug, Clone, Deserialize)]
pub struct ToolSpec {
    pub slug: String,
    pub name: String,
    pub version: String,
    /// File name in the index; the CWL text after [`catalogue`].
    pub definition: String,
}

/// A subworkflow ("tool" in the REST API).
#[derive(Debug, Clone, Deserialize)]
pub struct SubworkflowSpec {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub version: String,
    pub status: String,
    pub available: bool,
    /// Tag names.
    pub tags: Vec<String>,
    /// Command-line tool slugs, in definition order.
    pub tools: Vec<String>,
    /// File name in the index; the Jinja text after [`catalogue`].
    pub definition: String,
    pub pipeline_step: String,
    pub user_params: Value,
}

/// A public pipeline.
#[derive(Debug, Clone, Deserialize)]
pub struct PipelineSpec {
    pub name: String,
    pub description: String,
    pub version: String,
    /// File name in the index; the Jinja text after [`catalogue`].
    pub template: String,
    /// Subworkflow slugs, in pipeline order.
    pub subworkflows: Vec<String>,
}

/// A webhook trigger type.
#[derive(Debug, Clone, Deserialize)]
pub struct TriggerTypeSpec {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub event_type_prefix: String,
    pub data: Value,
}

/// Status of the seeded trigger types: usable, but flagged as not yet production-grade.
pub const TRIGGER_TYPE_STATUS: &str = "Testing";

fn file(path: &str) -> anyhow::Result<String> {
    FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, text)| text.trim_end().to_string())
        .ok_or_else(|| anyhow::anyhow!("demo catalogue refers to an unknown file {path:?}"))
}

/// Parses the built-in catalogue and inlines the files it refers to.
pub fn catalogue() -> anyhow::Result<Catalogue> {
    let mut c: Catalogue =
        serde_yaml::from_str(CATALOGUE).context("parsing the built-in demo catalogue")?;
    for t in &mut c.command_line_tools {
        t.definition = file(&t.definition)?;
    }
    for s in &mut c.subworkflows {
        s.definition = file(&s.definition)?;
        s.pipeline_step = s.pipeline_step.trim_end().to_string();
    }
    for p in &mut c.pipelines {
        p.template = file(&p.template)?;
    }
    Ok(c)
}

/// What a seed run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// `(pipeline name, id)` of the demo pipelines, in catalogue order.
    pub pipelines: Vec<(String, i64)>,
    /// Counts per kind: tags, tools, subworkflows, pipelines, trigger types.
    pub counts: [usize; 5],
}

impl fmt::Display for SeedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [tags, tools, sws, pipelines, tts] = self.counts;
        write!(
            f,
            "demo catalogue: {tags} tags, {tools} command-line tools, {sws} subworkflows, \
             {pipelines} pipelines, {tts} trigger types (created {}, updated {}, unchanged {})",
            self.created, self.updated, self.unchanged
        )?;
        for (name, id) in &self.pipelines {
            write!(f, "\n{name}: pipeline {id}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Created,
    Updated,
    Unchanged,
}

impl SeedReport {
    fn record(&mut self, change: Change) {
        match change {
            Change::Created => self.created += 1,
            Change::Updated => self.updated += 1,
            Change::Unchanged => self.unchanged += 1,
        }
    }
}

/// Loads the demo catalogue and returns a printable summary (one line, then one line per
/// pipeline with its id).
pub async fn seed(db: &DatabaseConnection) -> anyhow::Result<String> {
    Ok(seed_catalogue(db).await?.to_string())
}

/// Loads the demo catalogue in one transaction.
pub async fn seed_catalogue(db: &DatabaseConnection) -> anyhow::Result<SeedReport> {
    let catalogue = catalogue()?;
    let txn = db.begin().await?;
    let report = seed_into(&txn, &catalogue).await?;
    txn.commit().await?;
    Ok(report)
}

async fn seed_into<C: ConnectionTrait>(db: &C, c: &Catalogue) -> anyhow::Result<SeedReport> {
    let mut report = SeedReport {
        counts: [
            c.tags.len(),
            c.command_line_tools.len(),
            c.subworkflows.len(),
            c.pipelines.len(),
            c.trigger_types.len(),
        ],
        ..Default::default()
    };
    for name in &c.tags {
        let (_, change) = upsert_tag(db, name).await?;
        report.record(change);
    }
    for t in &c.command_line_tools {
        report.record(upsert_tool(db, t).await?);
    }
    for s in &c.subworkflows {
        let change = upsert_subworkflow(db, s)
            .await
            .with_context(|| format!("subworkflow {:?}", s.slug))?;
        report.record(change);
    }
    for p in &c.pipelines {
        let (id, change) = upsert_pipeline(db, p)
            .await
            .with_context(|| format!("pipeline {:?}", p.name))?;
        report.record(change);
        report.pipelines.push((p.name.clone(), id));
    }
    for t in &c.trigger_types {
        report.record(upsert_trigger_type(db, t).await?);
    }
    Ok(report)
}

/// First id of the demo catalogue's tags. The reference's fixtures number their tags from 1
/// and `import-fixtures` keeps their ids, so seeded tags live above them: seeding and importing
/// in either order never make one overwrite the other's tags.
pub const SEED_TAG_IDS_FROM: i64 = 1000;

async fn upsert_tag<C: ConnectionTrait>(db: &C, name: &str) -> anyhow::Result<(i64, Change)> {
    if let Some(t) = tag::Entity::find()
        .filter(tag::Column::Name.eq(name))
        .one(db)
        .await?
    {
        return Ok((t.id, Change::Unchanged));
    }
    let max = tag::Entity::find()
        .order_by_desc(tag::Column::Id)
        .one(db)
        .await?
        .map_or(0, |t| t.id);
    let id = (max + 1).max(SEED_TAG_IDS_FROM);
    tag::Entity::insert(tag::ActiveModel {
        id: Set(id),
        name: Set(name.to_string()),
    })
    .exec_without_returning(db)
    .await?;
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        // Explicit ids leave the sequence behind.
        db.execute_unprepared(&format!(
            "SELECT setval(pg_get_serial_sequence('backend_tag', 'id'), {}, false)",
            id + 1
        ))
        .await?;
    }
    Ok((id, Change::Created))
}

async fn upsert_tool<C: ConnectionTrait>(db: &C, spec: &ToolSpec) -> anyhow::Result<Change> {
    let wanted = command_line_tool::Model {
        slug: spec.slug.clone(),
        name: spec.name.clone(),
        definition: spec.definition.clone(),
        version: Some(spec.version.clone()),
    };
    let existing = command_line_tool::Entity::find_by_id(spec.slug.clone())
        .one(db)
        .await?;
    Ok(match existing {
        None => {
            command_line_tool::Entity::insert(wanted.into_active_model().reset_all())
                .exec_without_returning(db)
                .await?;
            Change::Created
        }
        Some(old) if old == wanted => Change::Unchanged,
        Some(_) => {
            wanted.into_active_model().reset_all().update(db).await?;
            Change::Updated
        }
    })
}

async fn upsert_subworkflow<C: ConnectionTrait>(
    db: &C,
    spec: &SubworkflowSpec,
) -> anyhow::Result<Change> {
    let wanted = subworkflow::Model {
        slug: spec.slug.clone(),
        name: spec.name.clone(),
        description: Some(spec.description.clone()),
        pipeline_step: spec.pipeline_step.clone(),
        definition: spec.definition.clone(),
        user_params: spec.user_params.clone(),
        version: spec.version.clone(),
        status: spec.status.clone(),
        available: spec.available,
    };
    let existing = subworkflow::Entity::find_by_id(spec.slug.clone())
        .one(db)
        .await?;
    let mut change = match existing {
        None => {
            subworkflow::Entity::insert(wanted.into_active_model().reset_all())
                .exec_without_returning(db)
                .await?;
            Change::Created
        }
        Some(old) if old == wanted => Change::Unchanged,
        Some(_) => {
            wanted.into_active_model().reset_all().update(db).await?;
            Change::Updated
        }
    };
    let mut tag_ids = Vec::with_capacity(spec.tags.len());
    for name in &spec.tags {
        tag_ids.push(upsert_tag(db, name).await?.0);
    }
    let tags_changed = set_subworkflow_tags(db, &spec.slug, &tag_ids).await?;
    let tools_changed = set_subworkflow_tools(db, &spec.slug, &spec.tools).await?;
    if (tags_changed || tools_changed) && change == Change::Unchanged {
        change = Change::Updated;
    }
    Ok(change)
}

/// Makes the subworkflow's tags exactly `tag_ids`; returns whether anything changed.
pub(crate) async fn set_subworkflow_tags<C: ConnectionTrait>(
    db: &C,
    slug: &str,
    tag_ids: &[i64],
) -> anyhow::Result<bool> {
    let mut current: Vec<i64> = subworkflow_tag::Entity::find()
        .filter(subworkflow_tag::Column::SubworkflowId.eq(slug))
        .all(db)
        .await?
        .into_iter()
        .map(|l| l.tag_id)
        .collect();
    current.sort_unstable();
    let mut wanted = tag_ids.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    if current == wanted {
        return Ok(false);
    }
    subworkflow_tag::Entity::delete_many()
        .filter(subworkflow_tag::Column::SubworkflowId.eq(slug))
        .exec(db)
        .await?;
    for tag_id in wanted {
        subworkflow_tag::ActiveModel {
            subworkflow_id: Set(slug.to_string()),
            tag_id: Set(tag_id),
            ..Default::default()
        }
        .insert(db)
        .await?;
    }
    Ok(true)
}

/// Makes the subworkflow's command-line tools exactly `tools`, in this order (links are read
/// back by id, so a changed order means re-inserting them); returns whether anything changed.
pub(crate) async fn set_subworkflow_tools<C: ConnectionTrait>(
    db: &C,
    slug: &str,
    tools: &[String],
) -> anyhow::Result<bool> {
    let current: Vec<String> = subworkflow_tool::Entity::find()
        .filter(subworkflow_tool::Column::SubworkflowId.eq(slug))
        .order_by_asc(subworkflow_tool::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|l| l.commandlinetool_id)
        .collect();
    if current == tools {
        return Ok(false);
    }
    subworkflow_tool::Entity::delete_many()
        .filter(subworkflow_tool::Column::SubworkflowId.eq(slug))
        .exec(db)
        .await?;
    for tool in tools {
        subworkflow_tool::ActiveModel {
            subworkflow_id: Set(slug.to_string()),
            commandlinetool_id: Set(tool.clone()),
            ..Default::default()
        }
        .insert(db)
        .await?;
    }
    Ok(true)
}

/// Makes the pipeline's subworkflows exactly `slugs`, with `position` = index; returns whether
/// anything changed.
pub(crate) async fn set_pipeline_tools<C: ConnectionTrait>(
    db: &C,
    pipeline_id: i64,
    slugs: &[String],
) -> anyhow::Result<bool> {
    let current: Vec<(String, i32)> = pipeline_tool::Entity::find()
        .filter(pipeline_tool::Column::PipelineId.eq(pipeline_id))
        .order_by_asc(pipeline_tool::Column::Position)
        .order_by_asc(pipeline_tool::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|l| (l.subworkflow_id, l.position))
        .collect();
    let wanted: Vec<(String, i32)> = slugs
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i as i32))
        .collect();
    if current == wanted {
        return Ok(false);
    }
    pipeline_tool::Entity::delete_many()
        .filter(pipeline_tool::Column::PipelineId.eq(pipeline_id))
        .exec(db)
        .await?;
    for (slug, position) in wanted {
        pipeline_tool::ActiveModel {
            pipeline_id: Set(pipeline_id),
            subworkflow_id: Set(slug),
            position: Set(position),
            ..Default::default()
        }
        .insert(db)
        .await?;
    }
    Ok(true)
}

async fn upsert_pipeline<C: ConnectionTrait>(
    db: &C,
    spec: &PipelineSpec,
) -> anyhow::Result<(i64, Change)> {
    let existing = pipeline::Entity::find()
        .filter(pipeline::Column::Name.eq(&spec.name))
        .filter(pipeline::Column::OwnerId.is_null())
        .filter(pipeline::Column::Version.eq(&spec.version))
        .one(db)
        .await?;
    let now = chrono::Utc::now();
    let default_inputs = Some(Value::Object(Default::default()));
    let rules = Some(crate::quality::default_rules());
    let (id, mut change) = match existing {
        None => {
            let p = pipeline::ActiveModel {
                name: Set(spec.name.clone()),
                description: Set(Some(spec.description.clone())),
                template: Set(spec.template.clone()),
                version: Set(Some(spec.version.clone())),
                owner_id: Set(None),
                created_at: Set(Some(now)),
                edited_at: Set(Some(now)),
                default_inputs: Set(default_inputs),
                quality_rules: Set(rules),
                ..Default::default()
            }
            .insert(db)
            .await?;
            (p.id, Change::Created)
        }
        Some(p)
            if p.description.as_deref() == Some(spec.description.as_str())
                && p.template == spec.template
                && p.default_inputs == default_inputs
                && p.quality_rules == rules =>
        {
            (p.id, Change::Unchanged)
        }
        Some(p) => {
            let id = p.id;
            let mut active = p.into_active_model();
            active.description = Set(Some(spec.description.clone()));
            active.template = Set(spec.template.clone());
            active.default_inputs = Set(default_inputs);
            active.quality_rules = Set(rules);
            active.edited_at = Set(Some(now));
            active.update(db).await?;
            (id, Change::Updated)
        }
    };
    if set_pipeline_tools(db, id, &spec.subworkflows).await? && change == Change::Unchanged {
        change = Change::Updated;
    }
    Ok((id, change))
}

async fn upsert_trigger_type<C: ConnectionTrait>(
    db: &C,
    spec: &TriggerTypeSpec,
) -> anyhow::Result<Change> {
    let wanted = trigger_type::Model {
        slug: spec.slug.clone(),
        name: spec.name.clone(),
        description: spec.description.clone(),
        event_type_prefix: spec.event_type_prefix.clone(),
        data: spec.data.clone(),
        status: TRIGGER_TYPE_STATUS.into(),
        available: true,
    };
    let existing = trigger_type::Entity::find_by_id(spec.slug.clone())
        .one(db)
        .await?;
    Ok(match existing {
        None => {
            trigger_type::Entity::insert(wanted.into_active_model().reset_all())
                .exec_without_returning(db)
                .await?;
            Change::Created
        }
        Some(old) if old == wanted => Change::Unchanged,
        Some(_) => {
            wanted.into_active_model().reset_all().update(db).await?;
            Change::Updated
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_consistent() {
        let c = catalogue().unwrap();
        let tool_slugs: Vec<_> = c.command_line_tools.iter().map(|t| &t.slug).collect();
        for s in &c.subworkflows {
            for t in &s.tools {
                assert!(tool_slugs.contains(&t), "{}: unknown tool {t}", s.slug);
            }
            for tag in &s.tags {
                assert!(c.tags.contains(tag), "{}: unknown tag {tag}", s.slug);
            }
            assert!(s.slug.len() <= 50 && s.name.len() <= 50);
        }
        for p in &c.pipelines {
            assert!(p.name.len() <= 50);
            for sw in &p.subworkflows {
                assert!(
                    c.subworkflows.iter().any(|s| &s.slug == sw),
                    "{}: unknown subworkflow {sw}",
                    p.name
                );
            }
        }
        // Every CWL file is YAML by itself.
        for t in &c.command_line_tools {
            let v: serde_yaml::Value = serde_yaml::from_str(&t.definition).unwrap();
            assert!(v.as_sequence().is_some_and(|s| s.len() == 1), "{}", t.slug);
        }
    }
}
