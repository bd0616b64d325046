//! Run parameters: `{"<subworkflow>": {"<tool>": {"<input>": value}}}`, validated against the
//! subworkflows' declared `user_params` and flattened to `"<subworkflow>.<tool>.<input>"` keys.

use super::PipelineGraph;
use crate::error::{AppError, FieldErrors};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Longest accepted string parameter value (bytes).
pub const MAX_VALUE_LEN: usize = 4096;

/// Checks `parameters` against the pipeline's declared inputs. Errors name the offending field
/// as `parameters.<subworkflow>.<tool>.<input>`.
pub fn validate(graph: &PipelineGraph, parameters: &Value) -> Result<(), AppError> {
    let mut errors = FieldErrors::new();
    let Some(by_sw) = parameters.as_object() else {
        return Err(AppError::field(
            "parameters",
            "Expected an object {subworkflow: {tool: {input: value}}}.",
        ));
    };
    for (sw_slug, tools) in by_sw {
        let field = format!("parameters.{sw_slug}");
        let Some((sw, _)) = graph.subworkflows.iter().find(|(s, _)| &s.slug == sw_slug) else {
            errors.insert(
                field,
                vec![format!(
                    "Unknown subworkflow {sw_slug:?} for this pipeline."
                )],
            );
            continue;
        };
        let Some(tools) = tools.as_object() else {
            errors.insert(
                field,
                vec!["Expected an object {tool: {input: value}}.".into()],
            );
            continue;
        };
        for (tool, inputs) in tools {
            let field = format!("parameters.{sw_slug}.{tool}");
            let Some(declared) = sw.user_params.get(tool).and_then(Value::as_object) else {
                errors.insert(
                    field,
                    vec![format!("Unknown tool {tool:?} in subworkflow {sw_slug:?}.")],
                );
                continue;
            };
            let Some(inputs) = inputs.as_object() else {
                errors.insert(field, vec!["Expected an object {input: value}.".into()]);
                continue;
            };
            for (input, value) in inputs {
                let field = format!("parameters.{sw_slug}.{tool}.{input}");
                match declared.get(input) {
                    None => {
                        errors.insert(
                            field,
                            vec![format!("Unknown input {input:?} of tool {tool:?}.")],
                        );
                    }
                    Some(spec) => {
                        let ty = spec.get("type").and_then(Value::as_str).unwrap_or("Any");
                        if let Err(msg) = check_type(ty, value) {
                            errors.insert(field, vec![msg]);
                        }
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(errors))
    }
}

/// Checks a value against a CWL type name (`string`, `boolean`, `int`, `long`, `float`,
/// `double`, `Any`, with `?` for optional and `[]` for arrays).
fn check_type(ty: &str, value: &Value) -> Result<(), String> {
    let (base, optional) = match ty.strip_suffix('?') {
        Some(b) => (b, true),
        None => (ty, false),
    };
    if value.is_null() {
        return if optional || base == "Any" {
            Ok(())
        } else {
            Err(format!("Expected a {base}, got null."))
        };
    }
    if let Some(item) = base.strip_suffix("[]") {
        let Some(items) = value.as_array() else {
            return Err(format!("Expected an array of {item}."));
        };
        return items.iter().try_for_each(|v| check_type(item, v));
    }
    let ok = match base {
        "string" => value.as_str().is_some_and(|s| s.len() <= MAX_VALUE_LEN),
        "boolean" => value.is_boolean(),
        "int" | "long" => value.is_i64() || value.is_u64(),
        "float" | "double" => value.is_number(),
        _ => true,
    };
    if ok {
        Ok(())
    } else if base == "string" && value.is_string() {
        Err(format!(
            "Ensure this value has at most {MAX_VALUE_LEN} bytes."
        ))
    } else {
        Err(format!("Expected a {base}, got {}.", json_kind(value)))
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Flattens validated parameters and adds `pipeline_id`, `run_id` (strings) and `server_url`.
pub fn flatten(
    parameters: &Value,
    pipeline_id: i64,
    run_id: i64,
    server_url: &str,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let empty = Map::new();
    for (sw, tools) in parameters.as_object().unwrap_or(&empty) {
        for (tool, inputs) in tools.as_object().unwrap_or(&empty) {
            for (input, value) in inputs.as_object().unwrap_or(&empty) {
                out.insert(format!("{sw}.{tool}.{input}"), value.clone());
            }
        }
    }
    out.insert("pipeline_id".into(), Value::String(pipeline_id.to_string()));
    out.insert("run_id".into(), Value::String(run_id.to_string()));
    out.insert("server_url".into(), Value::String(server_url.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types() {
        assert!(check_type("string", &json!("x")).is_ok());
        assert!(check_type("string", &json!(1)).is_err());
        assert!(check_type("string?", &json!(null)).is_ok());
        assert!(check_type("boolean", &json!(true)).is_ok());
        assert!(check_type("int", &json!(1.5)).is_err());
        assert!(check_type("string[]", &json!(["a", "b"])).is_ok());
        assert!(check_type("string[]", &json!(["a", 2])).is_err());
        assert!(check_type("string", &json!("x".repeat(MAX_VALUE_LEN + 1))).is_err());
    }

    #[test]
    fn flatten_adds_ids() {
        let p = json!({"clone_subworkflow": {"clone": {"repo_url": "u", "repo_branch": "b"}}});
        let f = flatten(&p, 17, 42, "http://svc");
        assert_eq!(f["clone_subworkflow.clone.repo_url"], json!("u"));
        assert_eq!(f["pipeline_id"], json!("17"));
        assert_eq!(f["run_id"], json!("42"));
        assert_eq!(f["server_url"], json!("http://svc"));
    }
}
