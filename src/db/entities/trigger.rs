//! `backend_trigger`: "when an event of this type matches this CQL2 filter, run this pipeline".

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "backend_trigger")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub slug: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub description: Option<String>,
    #[sea_orm(column_type = "JsonBinary")]
    pub cql2_filter: Json,
    #[sea_orm(column_type = "JsonBinary")]
    pub params_default: Json,
    #[sea_orm(column_type = "JsonBinary")]
    pub params_mapping: Json,
    pub trigger_type_id: String,
    pub pipeline_id: i64,
    pub owner_id: Option<i64>,
    pub status: String,
    pub enabled: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
