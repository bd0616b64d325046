//! `backend_subworkflow_tools`: subworkflow <-> command-line tool, in definition order.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "backend_subworkflow_tools")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub subworkflow_id: String,
    pub commandlinetool_id: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
