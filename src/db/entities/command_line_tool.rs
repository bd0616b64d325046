//! `backend_commandlinetool`: CWL CommandLineTool definitions shared by subworkflows.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "backend_commandlinetool")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub slug: String,
    pub name: String,
    /// CWL `$graph` entry (YAML) appended to the subworkflows that use it.
    #[sea_orm(column_type = "Text")]
    pub definition: String,
    pub version: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
