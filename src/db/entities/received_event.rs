//! `aq_received_event`: every CloudEvent we acted on, keyed by (source, id) for exactly-once.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "aq_received_event")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub source: String,
    pub event_id: String,
    pub event_type: String,
    pub subject: Option<String>,
    pub event_time: Option<DateTimeUtc>,
    /// The `user` extension attribute, as sent.
    pub user: Option<String>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub data: Option<Json>,
    /// Request headers minus credentials (`Authorization`, `Cookie`, ...).
    #[sea_orm(column_type = "JsonBinary")]
    pub headers: Json,
    /// accepted | ignored | rejected | processing.
    pub outcome: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub message: Option<String>,
    /// Ids of the runs this event created (JSON array).
    #[sea_orm(column_type = "JsonBinary")]
    pub run_ids: Json,
    pub pipeline_id: Option<i64>,
    pub received_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
