//! JSON shapes of the REST resources (the reference's field names), path-id parsing, and the
//! batched look-ups that lists need (usernames, job report counts) so a list costs a fixed number
//! of queries whatever its length.

pub use crate::db::iso;
use crate::{
    db::entities::{job_report, pipeline, pipeline_run, subworkflow, tag, trigger_event, user},
    error::{AppError, AppResult},
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
    sea_query::{Expr, Func},
};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// [`iso`] or `null`.
pub fn iso_opt(dt: Option<&DateTime<Utc>>) -> Value {
    dt.map_or(Value::Null, |d| Value::String(iso(d)))
}

/// Parses a numeric path id; anything else is the generic 404 (never a 500).
pub fn parse_id(raw: &str) -> AppResult<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AppError::NotFound("Not found.".into()))
}

/// The pipeline part of a runs URL: one pipeline, or `_` / `-` for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineScope {
    /// Every pipeline (`_` or `-`).
    All,
    /// One pipeline id.
    One(i64),
}

impl PipelineScope {
    /// Parses `{id|_|-}`; non-numeric ids are 404.
    pub fn parse(raw: &str) -> AppResult<Self> {
        match raw {
            "_" | "-" => Ok(PipelineScope::All),
            other => parse_id(other).map(PipelineScope::One),
        }
    }

    /// Whether a run of `pipeline_id` belongs to this scope.
    pub fn contains(self, pipeline_id: i64) -> bool {
        match self {
            PipelineScope::All => true,
            PipelineScope::One(id) => id == pipeline_id,
        }
    }
}

/// A pipeline: `{id, name, description, tools, default_inputs, owner, owner_name?, created_at,
/// edited_at, version}`. `owner_name` is omitted for public pipelines, as in the reference.
pub fn pipeline(p: &pipeline::Model, tools: &[String], owner_name: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(p.id));
    m.insert("name".into(), json!(p.name));
    m.insert("description".into(), json!(p.description));
    m.insert("tools".into(), json!(tools));
    m.insert("default_inputs".into(), json!(p.default_inputs));
    m.insert("quality_rules".into(), json!(p.quality_rules));
    m.insert("owner".into(), json!(p.owner_id));
    if let Some(name) = owner_name {
        m.insert("owner_name".into(), json!(name));
    }
    m.insert("created_at".into(), iso_opt(p.created_at.as_ref()));
    m.insert("edited_at".into(), iso_opt(p.edited_at.as_ref()));
    m.insert("version".into(), json!(p.version));
    Value::Object(m)
}

/// What a run's JSON needs besides its row (looked up in batches by [`runs`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunExtras<'a> {
    /// Username of the starter.
    pub started_by: Option<&'a str>,
    pub job_reports_count: i64,
    /// Id of the trigger event that started the run.
    pub trigger_event: Option<i64>,
}

/// A run: `{id, pipeline, usage_report, start_time, completion_time, status, status_message,
/// user, inputs, output, digest, digest_quality, executed_cwl, started_by?, trigger_event,
/// job_reports_count, triggered_by}`. `user` is always null, as in the reference (whose
/// `PipelineRun.user` column is never set); the starter is `started_by`.
pub fn run(r: &pipeline_run::Model, extras: RunExtras<'_>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(r.id));
    m.insert("pipeline".into(), json!(r.pipeline_id));
    m.insert("usage_report".into(), r.usage_report.clone());
    m.insert("start_time".into(), json!(iso(&r.start_time)));
    m.insert(
        "completion_time".into(),
        iso_opt(r.completion_time.as_ref()),
    );
    m.insert("status".into(), json!(r.status.as_str()));
    m.insert("status_message".into(), json!(r.status_message));
    m.insert("user".into(), Value::Null);
    m.insert(
        "inputs".into(),
        r.inputs.clone().unwrap_or_else(|| json!({})),
    );
    m.insert("output".into(), json!(r.output));
    m.insert("digest".into(), r.digest.clone());
    m.insert(
        "digest_quality".into(),
        json!(crate::quality::digest_quality(&r.digest)),
    );
    m.insert("executed_cwl".into(), json!(r.executed_cwl));
    if let Some(name) = extras.started_by {
        m.insert("started_by".into(), json!(name));
    }
    m.insert("trigger_event".into(), json!(extras.trigger_event));
    m.insert("job_reports_count".into(), json!(extras.job_reports_count));
    m.insert("triggered_by".into(), json!(r.triggered_by));
    Value::Object(m)
}

/// A job report: `{id, name, instance, created_at, output, digest, run}`.
pub fn job_report(j: &job_report::Model) -> Value {
    json!({
        "id": j.id,
        "name": j.name,
        "instance": j.instance,
        "created_at": iso_opt(j.created_at.as_ref()),
        "output": j.output,
        "digest": j.digest,
        "run": j.run_id,
    })
}

/// A tool (subworkflow): `{slug, name, description, user_params, tags, tools, version, status,
/// available}`; the CWL `definition` and `pipeline_step` stay internal.
pub fn tool(s: &subworkflow::Model, tags: &[i64], tools: &[String]) -> Value {
    json!({
        "slug": s.slug,
        "name": s.name,
        "description": s.description,
        "user_params": s.user_params,
        "tags": tags,
        "tools": tools,
        "version": s.version,
        "status": s.status,
        "available": s.available,
    })
}

/// A tag: `{id, name}`.
pub fn tag(t: &tag::Model) -> Value {
    json!({"id": t.id, "name": t.name})
}

/// The caller: `{id, username, email, is_staff, is_admin, is_active}` (`is_admin` mirrors
/// `is_staff`, as the reference's OIDC user details did).
pub fn user(u: &user::Model) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "email": u.email,
        "is_staff": u.is_staff,
        "is_admin": u.is_staff,
        "is_active": u.is_active,
    })
}

/// Usernames of the given user ids (one query).
pub async fn usernames<C: ConnectionTrait>(
    db: &C,
    ids: impl IntoIterator<Item = i64>,
) -> Result<HashMap<i64, String>, DbErr> {
    let mut ids: Vec<i64> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.username))
        .collect())
}

#[derive(FromQueryResult)]
struct RunCount {
    run_id: i64,
    n: i64,
}

/// Number of job reports of each run (one grouped `COUNT` query).
pub async fn job_report_counts<C: ConnectionTrait>(
    db: &C,
    run_ids: &[i64],
) -> Result<HashMap<i64, i64>, DbErr> {
    if run_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = job_report::Entity::find()
        .select_only()
        .column(job_report::Column::RunId)
        .column_as(
            Expr::from(Func::count(Expr::col(job_report::Column::Id))),
            "n",
        )
        .filter(job_report::Column::RunId.is_in(run_ids.to_vec()))
        .group_by(job_report::Column::RunId)
        .into_model::<RunCount>()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| (r.run_id, r.n)).collect())
}

#[derive(FromQueryResult)]
struct RunEvent {
    run_id: i64,
    event_id: i64,
}

/// The first trigger event of each run (one grouped query).
pub async fn trigger_events_of<C: ConnectionTrait>(
    db: &C,
    run_ids: &[i64],
) -> Result<HashMap<i64, i64>, DbErr> {
    if run_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = trigger_event::Entity::find()
        .select_only()
        .column_as(trigger_event::Column::PipelineRunId, "run_id")
        .column_as(
            Expr::from(Func::min(Expr::col(trigger_event::Column::Id))),
            "event_id",
        )
        .filter(trigger_event::Column::PipelineRunId.is_in(run_ids.to_vec()))
        .group_by(trigger_event::Column::PipelineRunId)
        .into_model::<RunEvent>()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| (r.run_id, r.event_id)).collect())
}

/// A run with what its JSON needs besides its own columns, read in the same statement (see
/// [`with_run_extras`]): lists stream these without any per-list look-up.
#[derive(Debug, Clone)]
pub struct RunRow {
    /// The run's columns.
    pub run: pipeline_run::Model,
    /// Username of its starter.
    pub started_by: Option<String>,
    /// Number of its job reports.
    pub job_reports_count: i64,
    /// Its (first) trigger event.
    pub trigger_event: Option<i64>,
}

impl FromQueryResult for RunRow {
    fn from_query_result(res: &sea_orm::QueryResult, pre: &str) -> Result<Self, DbErr> {
        Ok(Self {
            run: pipeline_run::Model::from_query_result(res, pre)?,
            started_by: res.try_get(pre, "started_by_username")?,
            job_reports_count: res.try_get(pre, "job_reports_count")?,
            trigger_event: res.try_get(pre, "trigger_event_id")?,
        })
    }
}

impl RunRow {
    /// The run's JSON ([`run`]).
    pub fn to_json(&self) -> Value {
        run(
            &self.run,
            RunExtras {
                started_by: self.started_by.as_deref(),
                job_reports_count: self.job_reports_count,
                trigger_event: self.trigger_event,
            },
        )
    }
}

/// Adds the columns of [`RunRow`] to a runs select: the starter's username, the report count
/// and the trigger event, as correlated subqueries on indexed keys (the user's primary key, the
/// reports' `(run_id, ...)` unique index, the trigger events' run index), so a batch costs one
/// statement with fixed parameters.
pub fn with_run_extras(
    select: sea_orm::Select<pipeline_run::Entity>,
) -> sea_orm::Select<pipeline_run::Entity> {
    select
        .expr_as(
            Expr::cust(
                "(SELECT u.username FROM auth_user u WHERE u.id = backend_pipelinerun.started_by_id)",
            ),
            "started_by_username",
        )
        .expr_as(
            Expr::cust(
                "(SELECT COUNT(*) FROM backend_jobreport j WHERE j.run_id = backend_pipelinerun.id)",
            ),
            "job_reports_count",
        )
        .expr_as(
            Expr::cust(
                "(SELECT MIN(te.id) FROM backend_triggerevent te WHERE te.pipeline_run_id = backend_pipelinerun.id)",
            ),
            "trigger_event_id",
        )
}

/// Serialises runs with their starters' usernames, report counts and trigger events (three
/// extra queries; for a page or one run, lists stream [`RunRow`]s).
pub async fn runs<C: ConnectionTrait>(db: &C, runs: &[pipeline_run::Model]) -> AppResult<Value> {
    let names = usernames(db, runs.iter().filter_map(|r| r.started_by_id)).await?;
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let counts = job_report_counts(db, &ids).await?;
    let events = trigger_events_of(db, &ids).await?;
    Ok(Value::Array(
        runs.iter()
            .map(|r| {
                let started_by = r
                    .started_by_id
                    .and_then(|id| names.get(&id))
                    .map(String::as_str);
                run(
                    r,
                    RunExtras {
                        started_by,
                        job_reports_count: counts.get(&r.id).copied().unwrap_or(0),
                        trigger_event: events.get(&r.id).copied(),
                    },
                )
            })
            .collect(),
    ))
}

/// Serialises one run (see [`runs`]).
pub async fn one_run<C: ConnectionTrait>(db: &C, r: &pipeline_run::Model) -> AppResult<Value> {
    let mut list = runs(db, std::slice::from_ref(r)).await?;
    Ok(list
        .as_array_mut()
        .and_then(|a| a.pop())
        .unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn datetimes_have_microseconds_and_z() {
        let dt = Utc.with_ymd_and_hms(2026, 11, 25, 17, 51, 48).unwrap()
            + chrono::Duration::microseconds(725_175);
        assert_eq!(iso(&dt), "2026-11-25T17:51:48.725175Z");
        assert_eq!(iso_opt(None), Value::Null);
    }

    #[test]
    fn path_ids() {
        assert_eq!(parse_id("17").unwrap(), 17);
        for bad in ["abc", "", "-1", "0", "1.5", "99999999999999999999"] {
            assert_eq!(parse_id(bad).unwrap_err().status(), 404, "{bad}");
        }
        assert_eq!(PipelineScope::parse("_").unwrap(), PipelineScope::All);
        assert_eq!(PipelineScope::parse("-").unwrap(), PipelineScope::All);
        assert_eq!(PipelineScope::parse("3").unwrap(), PipelineScope::One(3));
        assert!(PipelineScope::All.contains(9));
        assert!(!PipelineScope::One(3).contains(9));
    }
}
