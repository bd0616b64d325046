//! `backend_jobreport`: a report posted by a pipeline step (unique per run, name and instance).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "backend_jobreport")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub run_id: i64,
    pub name: String,
    pub instance: String,
    pub created_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "JsonBinary")]
    pub output: Json,
    /// The tool's counters (`{"tool", "counts"|"issues", "created_at", "status"}`); `{}` when the
    /// step uploaded none.
    #[sea_orm(column_type = "JsonBinary")]
    pub digest: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
