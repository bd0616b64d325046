//! Run parameters: `{"<subworkflow>": {"<tool>": {"<input>": value}}}`, validated against the
//! subworkflows' declared `user_params` and flattened to `"<subworkflow>.<tool>.<input>"` keys.

use super::PipelineGraph;
use crate::error::{AppError, FieldErrors};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Longest accepted string parameter value (bytes).
pub const MAX_VALUE_LEN: usize = 4096;

/// Why a key starting with `$` is refused wherever user data is accepted.
pub const DIRECTIVE_MESSAGE: &str = "Keys starting with '$' are not allowed: they are schema-salad directives ($include, $import, $mixin, ...), and user data never becomes CWL structure.";

/// The path (`field.key.key`) of the first key starting with `$` anywhere in `value`.
pub fn directive_key(value: &Value, field: &str) -> Option<String> {
    match value {
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let path = format!("{field}.{k}");
            if k.starts_with('$') {
                Some(path)
            } else {
                directive_key(v, &path)
            }
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| directive_key(v, &format!("{field}.{i}"))),
        _ => None,
    }
}

/// Checks `parameters` against the pipeline's declared inputs. Errors name the offending field
/// as `parameters.<subworkflow>.<tool>.<input>`.
pub fn validate(graph: &PipelineGraph, parameters: &Value) -> Result<(), AppError> {
    if let Some(path) = directive_key(parameters, "parameters") {
        return Err(AppError::field(path, DIRECTIVE_MESSAGE));
    }
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
                        if let Err(msg) = check_value(spec, value) {
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

/// Checks a pipeline's `default_inputs` (`{subworkflow: {tool: {input: {"default": value,
/// ...}}}}`, the shape already checked): no key starting with `$` anywhere, every field of an
/// entry a scalar, and the `default` of an input that a subworkflow of `declared` (slug and
/// `user_params`) declares a value of its declared type. A `default` for an input nobody
/// declares is never rendered; it must still be a scalar (or a list of scalars). With a
/// configuration, string defaults are also held to the repository URL policy
/// ([`super::repos::check_url`]). Errors are named `default_inputs.<sw>.<tool>.<input>[.<key>]`.
pub fn check_default_inputs(
    declared: &[(&str, &Value)],
    default_inputs: &Value,
    policy: Option<&crate::config::Config>,
) -> FieldErrors {
    let mut errors = FieldErrors::new();
    if let Some(path) = directive_key(default_inputs, "default_inputs") {
        errors.insert(path, vec![DIRECTIVE_MESSAGE.into()]);
        return errors;
    }
    let empty = Map::new();
    for (sw, tools) in default_inputs.as_object().unwrap_or(&empty) {
        for (tool, inputs) in tools.as_object().unwrap_or(&empty) {
            for (input, entry) in inputs.as_object().unwrap_or(&empty) {
                let field = format!("default_inputs.{sw}.{tool}.{input}");
                let Some(entry) = entry.as_object() else {
                    errors.insert(
                        field,
                        vec!["Expected an object {\"default\": value}.".into()],
                    );
                    continue;
                };
                let spec = declared
                    .iter()
                    .find(|(slug, _)| *slug == sw.as_str())
                    .and_then(|(_, up)| up.get(tool)?.get(input));
                for (key, value) in entry {
                    let checked = match (key.as_str(), spec) {
                        ("default", Some(spec)) => check_value(spec, value),
                        ("default", None) => {
                            check_type("Any[]", value).or_else(|_| check_type("Any", value))
                        }
                        _ => check_type("Any", value),
                    }
                    .and_then(|()| match policy {
                        Some(config) if key == "default" => {
                            string_values(value).try_for_each(|s| {
                                super::repos::check_url(
                                    config,
                                    s,
                                    super::repos::is_repo_input(input),
                                )
                            })
                        }
                        _ => Ok(()),
                    });
                    if let Err(msg) = checked {
                        errors.insert(format!("{field}.{key}"), vec![msg]);
                    }
                }
            }
        }
    }
    errors
}

/// The subworkflows of a pipeline as [`check_default_inputs`] takes them.
pub fn declared_inputs(graph: &PipelineGraph) -> Vec<(&str, &Value)> {
    graph
        .subworkflows
        .iter()
        .map(|(sw, _)| (sw.slug.as_str(), &sw.user_params))
        .collect()
}

/// The pipeline's stored `default_inputs` checked again when a run is created, just before
/// its CWL renders: data stored before these checks existed (or written to the database
/// directly) is refused here, the error naming `default_inputs.<sw>.<tool>.<input>.<key>`.
pub fn validate_stored_defaults(graph: &PipelineGraph) -> Result<(), AppError> {
    let Some(defaults) = graph.pipeline.default_inputs.as_ref() else {
        return Ok(());
    };
    let errors = check_default_inputs(&declared_inputs(graph), defaults, None);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(
            errors
                .into_iter()
                .map(|(field, msgs)| {
                    let msgs = msgs
                        .into_iter()
                        .map(|m| format!("{m} (stored in the pipeline; update its default_inputs)"))
                        .collect();
                    (field, msgs)
                })
                .collect(),
        ))
    }
}

/// The strings of a value: itself, or the items of a list.
pub fn string_values(value: &Value) -> impl Iterator<Item = &str> {
    let items: Box<dyn Iterator<Item = &Value>> = match value {
        Value::Array(items) => Box::new(items.iter()),
        other => Box::new(std::iter::once(other)),
    };
    items.filter_map(Value::as_str)
}

/// Checks a user value against an input's declared spec (`{"type": ..., ...}`): a scalar of
/// that type, or a list of such for `T[]`. A type that is not a plain name (a record, an enum
/// or a union written as YAML) takes any scalar.
pub fn check_value(spec: &Value, value: &Value) -> Result<(), String> {
    match spec.get("type") {
        Some(Value::String(ty)) => check_type(ty, value),
        None => check_type("Any", value),
        Some(_) => check_type("Any", value),
    }
}

/// Checks a value against a CWL type name (`string`, `boolean`, `int`, `long`, `float`,
/// `double`, `Any`, with `?` for optional and `[]` for arrays). Whatever the type, an object
/// is refused (user values never become CWL structure: a map such as `{"$include": ...}` or
/// `{"class": "File", "location": ...}` would), and so is a list where no list is declared.
/// Other type names (`File`, an enum or record name) take any scalar; the runner checks them.
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
    match value {
        Value::Object(_) => {
            return Err(format!(
                "Expected a {base}, got an object: values are scalars, never CWL structure."
            ));
        }
        Value::Array(_) => return Err(format!("Expected a {base}, got an array.")),
        Value::String(s) if s.len() > MAX_VALUE_LEN => {
            return Err(format!(
                "Ensure this value has at most {MAX_VALUE_LEN} bytes."
            ));
        }
        Value::String(s)
            if s.chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) =>
        {
            return Err("Control characters (other than tab and new line) are not allowed.".into());
        }
        _ => {}
    }
    let ok = match base {
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "int" | "long" => value.is_i64() || value.is_u64(),
        "float" | "double" => value.is_number(),
        _ => true,
    };
    if ok {
        Ok(())
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
    fn values_are_scalars_never_structure() {
        for ty in ["string", "Any", "File", "int?", "boolean", "my_enum"] {
            let e = check_type(ty, &json!({"$include": "/etc/passwd"})).unwrap_err();
            assert!(e.contains("object"), "{ty}: {e}");
            assert!(check_type(ty, &json!({"class": "File", "location": "file:///etc"})).is_err());
            assert!(check_type(ty, &json!(["a"])).is_err(), "{ty}: a list");
        }
        assert!(check_type("Any", &json!(null)).is_ok());
        assert!(check_type("Any", &json!("x")).is_ok());
        assert!(
            check_type("File", &json!("x")).is_ok(),
            "the runner checks other names"
        );
        assert!(check_type("string[]", &json!([{"a": 1}])).is_err());
        assert!(check_type("Any[]", &json!([1, "a", null])).is_ok());
        assert!(check_type("string", &json!("tab\tnew\nline\r")).is_ok());
        assert!(check_type("string", &json!("nul\u{0}")).is_err());
        assert!(check_type("string", &json!("c1\u{85}")).is_err());
        // Strings that look like YAML or CWL stay strings.
        assert!(check_type("string", &json!("{\"$include\": \"/etc/passwd\"}")).is_ok());
        assert!(check_type("string", &json!("!!python/object:os.system")).is_ok());
        // A complex declared type takes scalars only.
        let spec = json!({"type": {"type": "enum", "symbols": ["a", "b"]}});
        assert!(check_value(&spec, &json!("a")).is_ok());
        assert!(check_value(&spec, &json!({"a": 1})).is_err());
        assert!(check_value(&json!({}), &json!([1])).is_err());
    }

    #[test]
    fn directive_keys_are_found_at_any_depth() {
        assert_eq!(directive_key(&json!({"a": 1}), "f"), None);
        assert_eq!(
            directive_key(&json!({"$import": 1}), "f").as_deref(),
            Some("f.$import")
        );
        assert_eq!(
            directive_key(&json!({"a": [1, {"b": {"$mixin": "x"}}]}), "f").as_deref(),
            Some("f.a.1.b.$mixin")
        );
        // A `$` inside a string is data.
        assert_eq!(directive_key(&json!({"a": "$include"}), "f"), None);
    }

    #[test]
    fn default_inputs_against_declared_inputs() {
        let up = json!({"clone": {"repo_url": {"type": "string"}, "depth": {"type": "int?"}}});
        let declared = [("sw", &up)];
        let check = |d: Value| check_default_inputs(&declared, &d, None);
        assert!(
            check(json!({"sw": {"clone": {"repo_url": {"default": "https://x", "label": "L"}}}}))
                .is_empty()
        );
        assert!(check(json!({"sw": {"clone": {"depth": {"default": null}}}})).is_empty());
        let e =
            check(json!({"sw": {"clone": {"repo_url": {"default": {"$include": "/etc/passwd"}}}}}));
        assert_eq!(
            e.keys().collect::<Vec<_>>(),
            ["default_inputs.sw.clone.repo_url.default.$include"]
        );
        let e = check(json!({"sw": {"clone": {"repo_url": {"default": {"a": 1}}}}}));
        assert!(
            e.contains_key("default_inputs.sw.clone.repo_url.default"),
            "{e:?}"
        );
        let e = check(json!({"sw": {"clone": {"repo_url": {"default": ["a"]}}}}));
        assert!(
            e.contains_key("default_inputs.sw.clone.repo_url.default"),
            "{e:?}"
        );
        let e = check(json!({"sw": {"clone": {"depth": {"default": "3"}}}}));
        assert!(
            e.contains_key("default_inputs.sw.clone.depth.default"),
            "{e:?}"
        );
        let e = check(json!({"sw": {"clone": {"repo_url": {"default": "x", "label": {"a": 1}}}}}));
        assert!(
            e.contains_key("default_inputs.sw.clone.repo_url.label"),
            "{e:?}"
        );
        // Not declared: never rendered, still no structure.
        assert!(check(json!({"other": {"t": {"i": {"default": [1, 2]}}}})).is_empty());
        let e = check(json!({"other": {"t": {"i": {"default": {"a": 1}}}}}));
        assert!(e.contains_key("default_inputs.other.t.i.default"), "{e:?}");
        // With a configuration, the repository URL policy applies.
        let config = crate::config::Config::from_iter(Vec::<(String, String)>::new()).unwrap();
        let e = check_default_inputs(
            &declared,
            &json!({"sw": {"clone": {"repo_url": {"default": "file:///etc"}}}}),
            Some(&config),
        );
        assert!(
            e["default_inputs.sw.clone.repo_url.default"][0].contains("file://"),
            "{e:?}"
        );
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
