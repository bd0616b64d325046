//! What the response types of the REST resources share: path-id parsing, and the batched
//! look-ups that lists need (usernames, job report counts, trigger events) so a list costs a
//! fixed number of queries whatever its length. The response types themselves live with their
//! handlers (`Pipeline` in [`super::pipelines`], `Run` in [`super::runs`], ...).

pub use crate::db::iso;
use crate::{
    db::entities::{job_report, pipeline_run, trigger_event, user},
    error::{AppError, AppResult},
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
    sea_query::{Expr, Func},
};
use std::collections::HashMap;

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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono::Utc;

    #[test]
    fn datetimes_have_microseconds_and_z() {
        let dt = Utc.with_ymd_and_hms(2026, 11, 25, 17, 51, 48).unwrap()
            + chrono::Duration::microseconds(725_175);
        assert_eq!(iso(&dt), "2026-11-25T17:51:48.725175Z");
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
