//! `backend_triggertype`: a family of events (by type prefix) that triggers can react to.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "backend_triggertype")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub slug: String,
    pub name: String,
    #[sea_orm(column_type = "Text")]
    pub description: String,
    pub event_type_prefix: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub data: Json,
    /// Disabled | Testing | Restricted | Enabled | Deleted.
    pub status: String,
    pub available: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
