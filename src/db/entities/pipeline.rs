//! `backend_pipeline`: a CWL pipeline template made of subworkflows.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "backend_pipeline")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub description: Option<String>,
    /// Jinja template of the whole CWL document.
    #[sea_orm(column_type = "Text")]
    pub template: String,
    pub version: Option<String>,
    /// `None` means public (visible to every user, editable by staff only).
    pub owner_id: Option<i64>,
    pub created_at: Option<DateTimeUtc>,
    pub edited_at: Option<DateTimeUtc>,
    /// `{subworkflow: {tool: {input: {"default": value}}}}` overriding the subworkflows' defaults.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub default_inputs: Option<Json>,
    /// `{"pass": rule, "pass_with_comments": rule}` (see [`crate::quality::rules`]).
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub quality_rules: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
