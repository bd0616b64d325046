//! Indexes for lists and retention at any size. Every list is read in primary-key order after
//! a filter, so the filter column comes first and the id second: a keyset batch such as
//! `WHERE started_by_id = ? AND id > ? ORDER BY id LIMIT n` is then one index range on both
//! stores. The retention sweeps find old rows by time; deleting a received event or a run
//! finds the trigger events that point at it. The two-column indexes replace the one-column
//! ones of the first migration.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `(table, index, columns)` created by this migration.
const CREATED: &[(&str, &str, &[&str])] = &[
    (
        "backend_pipelinerun",
        "ix_pipelinerun_started_by_id",
        &["started_by_id", "id"],
    ),
    (
        "backend_pipelinerun",
        "ix_pipelinerun_pipeline_id",
        &["pipeline_id", "id"],
    ),
    (
        "backend_pipelinerun",
        "ix_pipelinerun_status_id",
        &["status", "id"],
    ),
    (
        "backend_pipelinerun",
        "ix_pipelinerun_triggered_by_id",
        &["triggered_by", "id"],
    ),
    (
        "backend_pipelinerun",
        "ix_pipelinerun_start_time",
        &["start_time"],
    ),
    (
        "backend_pipelinerun",
        "ix_pipelinerun_completion_time",
        &["completion_time"],
    ),
    (
        "backend_jobreport",
        "ix_jobreport_created_at",
        &["created_at"],
    ),
    (
        "backend_triggerevent",
        "ix_triggerevent_trigger_id",
        &["trigger_id", "id"],
    ),
    (
        "backend_triggerevent",
        "ix_triggerevent_received_event",
        &["received_event_id"],
    ),
    (
        "backend_triggerevent",
        "ix_triggerevent_pipeline_run",
        &["pipeline_run_id"],
    ),
];

/// `(table, index, columns)` of the first migration that the two-column ones replace.
const REPLACED: &[(&str, &str, &[&str])] = &[
    (
        "backend_pipelinerun",
        "ix_pipelinerun_pipeline",
        &["pipeline_id"],
    ),
    (
        "backend_pipelinerun",
        "ix_pipelinerun_started_by",
        &["started_by_id"],
    ),
    (
        "backend_triggerevent",
        "ix_triggerevent_trigger",
        &["trigger_id"],
    ),
];

fn create(table: &str, name: &str, cols: &[&str]) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(Alias::new(table));
    for c in cols {
        idx.col(Alias::new(*c));
    }
    idx.to_owned()
}

fn drop(table: &str, name: &str) -> IndexDropStatement {
    Index::drop().name(name).table(Alias::new(table)).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (table, name, cols) in CREATED {
            m.create_index(create(table, name, cols)).await?;
        }
        for (table, name, _) in REPLACED {
            m.drop_index(drop(table, name)).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (table, name, cols) in REPLACED {
            m.create_index(create(table, name, cols)).await?;
        }
        for (table, name, _) in CREATED {
            m.drop_index(drop(table, name)).await?;
        }
        Ok(())
    }
}
