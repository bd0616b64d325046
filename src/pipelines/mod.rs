//! Pipelines as data: loading a pipeline with its subworkflows and tools, validating run
//! parameters against their declared inputs, flattening them, and rendering the CWL.

pub mod params;
pub mod render;
pub mod repos;

use crate::db::entities::{
    command_line_tool, pipeline, pipeline_tool, subworkflow, subworkflow_tool,
};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

/// A pipeline with its subworkflows (in pipeline order) and each subworkflow's tools.
#[derive(Debug, Clone)]
pub struct PipelineGraph {
    pub pipeline: pipeline::Model,
    pub subworkflows: Vec<(subworkflow::Model, Vec<command_line_tool::Model>)>,
}

impl PipelineGraph {
    /// Loads the subworkflows and tools of `pipeline` (three queries, whatever the size).
    pub async fn load<C: ConnectionTrait>(
        db: &C,
        pipeline: pipeline::Model,
    ) -> Result<Self, DbErr> {
        let links = pipeline_tool::Entity::find()
            .filter(pipeline_tool::Column::PipelineId.eq(pipeline.id))
            .order_by_asc(pipeline_tool::Column::Position)
            .order_by_asc(pipeline_tool::Column::Id)
            .all(db)
            .await?;
        let slugs: Vec<String> = links.iter().map(|l| l.subworkflow_id.clone()).collect();
        let sws = subworkflow::Entity::find()
            .filter(subworkflow::Column::Slug.is_in(slugs.clone()))
            .all(db)
            .await?;
        let sw_tools = subworkflow_tool::Entity::find()
            .filter(subworkflow_tool::Column::SubworkflowId.is_in(slugs.clone()))
            .order_by_asc(subworkflow_tool::Column::Id)
            .all(db)
            .await?;
        let tool_slugs: Vec<String> = sw_tools
            .iter()
            .map(|t| t.commandlinetool_id.clone())
            .collect();
        let tools = command_line_tool::Entity::find()
            .filter(command_line_tool::Column::Slug.is_in(tool_slugs))
            .all(db)
            .await?;
        let subworkflows = slugs
            .iter()
            .filter_map(|slug| sws.iter().find(|s| &s.slug == slug))
            .map(|sw| {
                let its_tools = sw_tools
                    .iter()
                    .filter(|l| l.subworkflow_id == sw.slug)
                    .filter_map(|l| {
                        tools
                            .iter()
                            .find(|t| t.slug == l.commandlinetool_id)
                            .cloned()
                    })
                    .collect();
                (sw.clone(), its_tools)
            })
            .collect();
        Ok(Self {
            pipeline,
            subworkflows,
        })
    }
}
