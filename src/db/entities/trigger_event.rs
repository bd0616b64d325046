//! `backend_triggerevent`: one trigger matched one received event (the reference's shape).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "backend_triggerevent")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub trigger_id: String,
    pub received_event_id: Option<i64>,
    pub source: String,
    pub event_time: DateTimeUtc,
    pub event_type: String,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub event_headers: Option<Json>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub event_body: Option<Json>,
    pub pipeline_run_id: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
