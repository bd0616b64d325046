//! `backend_subworkflow_tags`: subworkflow <-> tag.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "backend_subworkflow_tags")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub subworkflow_id: String,
    pub tag_id: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
