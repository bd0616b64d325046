//! `backend_subworkflow`: a quality tool ("tool" in the API) that pipelines are made of.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "backend_subworkflow")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub slug: String,
    pub name: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub description: Option<String>,
    /// YAML step snippet inserted in the pipeline's `steps`.
    #[sea_orm(column_type = "Text")]
    pub pipeline_step: String,
    /// Jinja template of the subworkflow's `$graph` entries, rendered with its `tools`.
    #[sea_orm(column_type = "Text")]
    pub definition: String,
    /// `{tool: {input: {"type", "default", "label", "doc"}}}`: the inputs a run may set.
    #[sea_orm(column_type = "JsonBinary")]
    pub user_params: Json,
    pub version: String,
    /// Beta | Candidate | Disabled | Stable | Deprecated.
    pub status: String,
    pub available: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
