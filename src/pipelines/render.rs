//! CWL rendering with minijinja, compatible with the reference's stored Jinja templates:
//! each subworkflow `definition` is rendered with its `tools`, then the pipeline `template` with
//! `subworkflows` (`slug`, `definition`, `pipeline_step`, `user_params` with the pipeline's
//! `default_inputs` merged in). Python-style `dict.items()` works through minijinja's pycompat.

use super::PipelineGraph;
use minijinja::{Environment, context};
use serde_json::{Value, json};

/// A template could not be rendered; the run fails with this message.
#[derive(Debug, thiserror::Error)]
#[error("CWL template error in {what}: {detail}")]
pub struct RenderError {
    pub what: String,
    pub detail: String,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env
}

/// `user_params` of a subworkflow with `default_inputs[slug][tool][input]["default"]` applied.
pub fn merged_user_params(
    user_params: &Value,
    slug: &str,
    default_inputs: Option<&Value>,
) -> Value {
    let mut merged = user_params.clone();
    let Some(overrides) = default_inputs
        .and_then(|d| d.get(slug))
        .and_then(Value::as_object)
    else {
        return merged;
    };
    for (tool, inputs) in overrides {
        for (input, spec) in inputs.as_object().into_iter().flatten() {
            if let (Some(default), Some(target)) = (
                spec.get("default"),
                merged
                    .get_mut(tool)
                    .and_then(|t| t.get_mut(input))
                    .and_then(Value::as_object_mut),
            ) {
                target.insert("default".into(), default.clone());
            }
        }
    }
    merged
}

/// Renders the pipeline's CWL document.
pub fn render(graph: &PipelineGraph) -> Result<String, RenderError> {
    let env = environment();
    let mut subworkflows = Vec::with_capacity(graph.subworkflows.len());
    for (sw, tools) in &graph.subworkflows {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| json!({"slug": t.slug, "name": t.name, "definition": t.definition, "version": t.version}))
            .collect();
        let definition = env
            .render_str(
                &sw.definition,
                context! { tools => minijinja::value::Serde(&tools) },
            )
            .map_err(|e| RenderError {
                what: format!("subworkflow {:?}", sw.slug),
                detail: describe(&e),
            })?;
        subworkflows.push(json!({
            "slug": sw.slug,
            "name": sw.name,
            "definition": definition,
            "pipeline_step": sw.pipeline_step,
            "user_params": merged_user_params(&sw.user_params, &sw.slug, graph.pipeline.default_inputs.as_ref()),
        }));
    }
    env.render_str(
        &graph.pipeline.template,
        context! { subworkflows => minijinja::value::Serde(&subworkflows) },
    )
    .map_err(|e| RenderError {
        what: format!("pipeline {}", graph.pipeline.id),
        detail: describe(&e),
    })
}

fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("{} (line {line})", e),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_overrides_only_defaults() {
        let up = json!({"filter": {"regex": {"type": "string", "default": ".*"}}});
        let di =
            json!({"sw": {"filter": {"regex": {"default": ".*\\.py"}, "nope": {"default": 1}}}});
        let m = merged_user_params(&up, "sw", Some(&di));
        assert_eq!(
            m,
            json!({"filter": {"regex": {"type": "string", "default": ".*\\.py"}}})
        );
        assert_eq!(merged_user_params(&up, "other", Some(&di)), up);
    }
}
