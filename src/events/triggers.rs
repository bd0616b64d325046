//! Triggers: "when an event of this type matches this CQL2-JSON filter, run this pipeline as the
//! trigger's owner, with these parameters". Saving (validation of slug, filter, parameters and
//! mapping against the pipeline), matching an event, building run parameters, and the JSON
//! shapes of triggers, trigger types and trigger events.
//!
//! `params_mapping` format: `{"<subworkflow>.<tool>.<input>": <source>}` where `<source>` is a
//! dotted path into the event data (`repository.clone_url`, `commits.0.id`) or into the
//! CloudEvent attributes (`ce.source`), or `{"path": "<path>", "strip_prefix": "refs/heads/"}`.
//! A path that is absent (or null) in the event leaves the default in place.

use super::cql2::{self, Context};
use crate::{
    db::entities::{pipeline, trigger, trigger_type, user},
    error::{AppError, AppResult, FieldErrors},
    pipelines::{PipelineGraph, params, repos},
    runs::pipeline_visible,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// Statuses of triggers and trigger types (the reference's choices).
pub const STATUSES: [&str; 5] = ["Disabled", "Testing", "Restricted", "Enabled", "Deleted"];
/// Trigger-type statuses whose triggers fire.
pub const ACTIVE_TYPE_STATUSES: [&str; 3] = ["Testing", "Restricted", "Enabled"];
/// Most entries in a `params_mapping`.
pub const MAX_MAPPINGS: usize = 100;

/// Whether a slug is acceptable: 1-50 of `[A-Za-z0-9_-]`.
pub fn valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 50
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One mapping entry, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// `[subworkflow, tool, input]`.
    pub target: [String; 3],
    /// Path into the event (`ce.` prefix for attributes).
    pub path: Vec<String>,
    pub strip_prefix: Option<String>,
}

/// Parses and checks a `params_mapping` object.
pub fn parse_mapping(value: &Value) -> Result<Vec<Mapping>, String> {
    let Some(map) = value.as_object() else {
        return Err(
            "Expected an object {\"<subworkflow>.<tool>.<input>\": \"<data path>\"}.".into(),
        );
    };
    if map.len() > MAX_MAPPINGS {
        return Err(format!("At most {MAX_MAPPINGS} mappings are allowed."));
    }
    let mut out = Vec::with_capacity(map.len());
    for (key, source) in map {
        let parts: Vec<&str> = key.split('.').collect();
        let [sw, tool, input] = parts.as_slice() else {
            return Err(format!(
                "Invalid key {key:?}: expected \"<subworkflow>.<tool>.<input>\"."
            ));
        };
        if [sw, tool, input].iter().any(|p| p.is_empty()) {
            return Err(format!("Invalid key {key:?}: empty segment."));
        }
        let (path, strip_prefix) = match source {
            Value::String(p) => (p.as_str(), None),
            Value::Object(o) => {
                if o.keys().any(|k| k != "path" && k != "strip_prefix") {
                    return Err(format!(
                        "Mapping of {key:?}: only \"path\" and \"strip_prefix\" are allowed."
                    ));
                }
                let path = o
                    .get("path")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("Mapping of {key:?}: \"path\" must be a string."))?;
                let strip = match o.get("strip_prefix") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => {
                        return Err(format!(
                            "Mapping of {key:?}: \"strip_prefix\" must be a string."
                        ));
                    }
                };
                (path, strip)
            }
            _ => {
                return Err(format!(
                    "Mapping of {key:?} must be a data path string or {{\"path\", \"strip_prefix\"}}."
                ));
            }
        };
        let path = cql2::parse_path(path).map_err(|e| format!("Mapping of {key:?}: {e}"))?;
        out.push(Mapping {
            target: [sw.to_string(), tool.to_string(), input.to_string()],
            path,
            strip_prefix,
        });
    }
    Ok(out)
}

/// The run parameters of `params_default`: either `{"parameters": {...}}` or the bare object.
pub fn default_parameters(params_default: &Value) -> Value {
    match params_default.get("parameters") {
        Some(p) => p.clone(),
        None if params_default.is_null() => json!({}),
        None => params_default.clone(),
    }
}

/// `params_default` with the mapping applied to the event.
pub fn build_parameters(t: &trigger::Model, ctx: &Context<'_>) -> Result<Value, String> {
    let mut params = default_parameters(&t.params_default);
    let mappings = parse_mapping(&t.params_mapping)?;
    let Some(root) = params.as_object_mut() else {
        return Err("params_default must be an object.".into());
    };
    for m in mappings {
        let Some(value) = ctx.resolve(&m.path).filter(|v| !v.is_null()) else {
            continue;
        };
        let value = match (&m.strip_prefix, value) {
            (Some(prefix), Value::String(s)) => {
                Value::String(s.strip_prefix(prefix.as_str()).unwrap_or(s).to_owned())
            }
            _ => value.clone(),
        };
        let [sw, tool, input] = m.target;
        let tools = object_entry(root, sw)?;
        let inputs = object_entry(tools, tool)?;
        inputs.insert(input, value);
    }
    Ok(params)
}

fn object_entry(
    map: &mut Map<String, Value>,
    key: String,
) -> Result<&mut Map<String, Value>, String> {
    let msg = format!("params_default.{key} is not an object.");
    map.entry(key)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or(msg)
}

/// Enabled triggers of available, active trigger types whose prefix starts `event_type`.
pub async fn candidates<C: ConnectionTrait>(
    db: &C,
    event_type: &str,
) -> AppResult<Vec<(trigger::Model, trigger_type::Model)>> {
    let types: Vec<trigger_type::Model> = trigger_type::Entity::find()
        .filter(trigger_type::Column::Available.eq(true))
        .filter(trigger_type::Column::Status.is_in(ACTIVE_TYPE_STATUSES))
        .all(db)
        .await?
        .into_iter()
        .filter(|t| !t.event_type_prefix.is_empty() && event_type.starts_with(&t.event_type_prefix))
        .collect();
    if types.is_empty() {
        return Ok(Vec::new());
    }
    let triggers = trigger::Entity::find()
        .filter(trigger::Column::TriggerTypeId.is_in(types.iter().map(|t| t.slug.clone())))
        .filter(trigger::Column::Enabled.eq(true))
        .filter(trigger::Column::Status.is_not_in(["Disabled", "Deleted"]))
        .order_by_asc(trigger::Column::Slug)
        .all(db)
        .await?;
    Ok(triggers
        .into_iter()
        .filter_map(|t| {
            let ty = types
                .iter()
                .find(|ty| ty.slug == t.trigger_type_id)?
                .clone();
            Some((t, ty))
        })
        .collect())
}

/// What a client may send to create or update a trigger (all optional; `slug`, `pipeline` and
/// `trigger_type` are required on create). Any other field is refused; `null` is refused for
/// typed fields. Filters, defaults and mappings are validated when saved (400 with field
/// errors).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerInput {
    /// Letters, digits, `-` and `_`, at most 50 characters; the trigger's key.
    #[serde(default, deserialize_with = "present")]
    pub slug: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub enabled: Option<bool>,
    /// A CQL2-JSON filter on the event (`ce.<attribute>`, `data.<path>`); `null` is the empty
    /// filter, which matches every event of the trigger type.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub cql2_filter: Option<Value>,
    /// Run parameters `{subworkflow: {tool: {input: value}}}`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub params_default: Option<Value>,
    /// `{"subworkflow.tool.input": "data.path"}`: parameters taken from the event.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub params_mapping: Option<Value>,
    /// Pipeline id; visible to the owner.
    #[serde(default, deserialize_with = "present")]
    pub pipeline: Option<i64>,
    /// Accepted as `pipeline_id` too (the read shape's name).
    #[serde(default, deserialize_with = "present")]
    pub pipeline_id: Option<i64>,
    /// Trigger type slug.
    #[serde(default, deserialize_with = "present")]
    pub trigger_type: Option<String>,
    /// Username or user id; staff only. `null` removes the owner (staff only).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub owner: Option<Value>,
    /// Read-only fields of the representation, accepted and ignored so a GET body can be PUT back.
    #[schema(value_type = Option<String>)]
    pub trigger_type_name: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub pipeline_name: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub pipeline_version: Option<Value>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A field that was sent: `null` is refused for typed fields ("invalid type: null") instead of
/// being read as "absent" (which made `{"enabled": null}` a silent no-op), and kept as
/// `Value::Null` for JSON fields, whose validation decides what null means.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

fn err(errors: &mut FieldErrors, field: &str, msg: impl Into<String>) {
    errors.entry(field.into()).or_default().push(msg.into());
}

async fn resolve_owner<C: ConnectionTrait>(
    db: &C,
    caller: &user::Model,
    owner: &Value,
    errors: &mut FieldErrors,
) -> AppResult<Option<user::Model>> {
    let found = match owner {
        Value::Null => return Ok(None),
        Value::Number(n) => match n.as_i64() {
            Some(id) => user::Entity::find_by_id(id).one(db).await?,
            None => None,
        },
        Value::String(name) => {
            user::Entity::find()
                .filter(user::Column::Username.eq(name.as_str()))
                .one(db)
                .await?
        }
        _ => None,
    };
    match found {
        Some(u) if u.id == caller.id || caller.is_staff => Ok(Some(u)),
        Some(_) => {
            err(
                errors,
                "owner",
                "Only staff may assign a trigger to another user.",
            );
            Ok(None)
        }
        None => {
            err(errors, "owner", format!("Unknown user {owner}."));
            Ok(None)
        }
    }
}

/// Validates `input` and writes it into `am` (a new or existing trigger). `existing` is the
/// stored trigger on update.
pub async fn apply_input<C: ConnectionTrait>(
    db: &C,
    config: &crate::config::Config,
    caller: &user::Model,
    input: TriggerInput,
    existing: Option<&trigger::Model>,
) -> AppResult<trigger::ActiveModel> {
    let mut errors = FieldErrors::new();
    let mut am = match existing {
        Some(t) => trigger::ActiveModel::from(t.clone()),
        None => trigger::ActiveModel {
            description: Set(None),
            cql2_filter: Set(json!({})),
            params_default: Set(json!({})),
            params_mapping: Set(json!({})),
            owner_id: Set(Some(caller.id)),
            status: Set("Enabled".into()),
            enabled: Set(true),
            ..Default::default()
        },
    };
    match (&input.slug, existing) {
        (Some(s), None) if !valid_slug(s) => err(
            &mut errors,
            "slug",
            "Enter a valid slug of at most 50 letters, digits, underscores or hyphens.",
        ),
        (Some(s), None) => {
            if trigger::Entity::find_by_id(s.clone())
                .one(db)
                .await?
                .is_some()
            {
                err(
                    &mut errors,
                    "slug",
                    "trigger with this slug already exists.",
                );
            }
            am.slug = Set(s.clone());
        }
        (None, None) => err(&mut errors, "slug", "This field is required."),
        (Some(s), Some(t)) if s != &t.slug => err(
            &mut errors,
            "slug",
            "The slug of a trigger cannot be changed.",
        ),
        _ => {}
    }
    if let Some(d) = input.description {
        am.description = Set(d);
    }
    if let Some(s) = input.status {
        if STATUSES.contains(&s.as_str()) {
            am.status = Set(s);
        } else {
            err(
                &mut errors,
                "status",
                format!("\"{s}\" is not a valid choice ({}).", STATUSES.join(", ")),
            );
        }
    }
    if let Some(e) = input.enabled {
        am.enabled = Set(e);
    }
    if let Some(f) = input.cql2_filter {
        match cql2::parse(&f) {
            Ok(_) => am.cql2_filter = Set(if f.is_null() { json!({}) } else { f }),
            Err(e) => err(
                &mut errors,
                "cql2_filter",
                format!("Invalid CQL2-JSON filter: {e}"),
            ),
        }
    }
    if let Some(owner) = &input.owner {
        if let Some(u) = resolve_owner(db, caller, owner, &mut errors).await? {
            am.owner_id = Set(Some(u.id));
        } else if owner.is_null() {
            if caller.is_staff {
                am.owner_id = Set(None);
            } else {
                err(
                    &mut errors,
                    "owner",
                    "Only staff may remove a trigger's owner.",
                );
            }
        }
    }
    if let Some(tt) = &input.trigger_type {
        match trigger_type::Entity::find_by_id(tt.clone()).one(db).await? {
            Some(t) if t.available || caller.is_staff => am.trigger_type_id = Set(t.slug),
            _ => err(
                &mut errors,
                "trigger_type",
                format!("Invalid pk \"{tt}\" - object does not exist."),
            ),
        }
    } else if existing.is_none() {
        err(&mut errors, "trigger_type", "This field is required.");
    }
    // The owner must be able to run the pipeline: resolve it after the owner.
    let owner_id = am.owner_id.try_as_ref().copied().flatten();
    let owner = match owner_id {
        Some(id) if id == caller.id => Some(caller.clone()),
        Some(id) => user::Entity::find_by_id(id).one(db).await?,
        None => None,
    };
    let pipeline_id = input.pipeline.or(input.pipeline_id);
    if let Some(pid) = pipeline_id {
        let found = pipeline::Entity::find_by_id(pid).one(db).await?;
        let visible_to = owner.as_ref().unwrap_or(caller);
        match found {
            Some(p) if pipeline_visible(visible_to, &p) => am.pipeline_id = Set(p.id),
            _ => err(
                &mut errors,
                "pipeline",
                format!("Invalid pk \"{pid}\" - object does not exist."),
            ),
        }
    } else if existing.is_none() {
        err(&mut errors, "pipeline", "This field is required.");
    }
    if let Some(p) = input.params_default {
        if let Some(path) = params::directive_key(&p, "params_default") {
            err(&mut errors, &path, params::DIRECTIVE_MESSAGE);
        } else if p.is_object() {
            am.params_default = Set(p);
        } else {
            err(
                &mut errors,
                "params_default",
                "Expected an object {\"parameters\": {...}}.",
            );
        }
    }
    if let Some(m) = input.params_mapping {
        match params::directive_key(&m, "params_mapping") {
            Some(path) => err(&mut errors, &path, params::DIRECTIVE_MESSAGE),
            None => match parse_mapping(&m) {
                Ok(_) => am.params_mapping = Set(m),
                Err(e) => err(&mut errors, "params_mapping", e),
            },
        }
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    if let (Some(pid), Some(defaults), Some(mapping)) = (
        am.pipeline_id.try_as_ref(),
        am.params_default.try_as_ref(),
        am.params_mapping.try_as_ref(),
    ) {
        check_against_pipeline(db, config, *pid, defaults, mapping).await?;
    }
    Ok(am)
}

/// The defaults and the mapping targets must be inputs the pipeline declares, and the
/// defaults are held to the repository URL policy (mapped values are checked when a run is
/// created from an event).
async fn check_against_pipeline<C: ConnectionTrait>(
    db: &C,
    config: &crate::config::Config,
    pipeline_id: i64,
    defaults: &Value,
    mapping: &Value,
) -> AppResult<()> {
    let Some(p) = pipeline::Entity::find_by_id(pipeline_id).one(db).await? else {
        return Ok(());
    };
    let graph = PipelineGraph::load(db, p).await?;
    let mut errors = FieldErrors::new();
    let parameters = default_parameters(defaults);
    if let Err(AppError::Validation(fields)) = params::validate(&graph, &parameters) {
        for (field, msgs) in fields {
            for m in msgs {
                err(&mut errors, "params_default", format!("{field}: {m}"));
            }
        }
    }
    for (field, value) in given_values(&parameters) {
        let input = field.rsplit('.').next().unwrap_or_default();
        if let Err(m) = params::string_values(value)
            .try_for_each(|s| repos::check_url(config, s, repos::is_repo_input(input)))
        {
            err(&mut errors, "params_default", format!("{field}: {m}"));
        }
    }
    for m in parse_mapping(mapping).unwrap_or_default() {
        let [sw, tool, input] = &m.target;
        let declared = graph
            .subworkflows
            .iter()
            .find(|(s, _)| &s.slug == sw)
            .and_then(|(s, _)| s.user_params.get(tool)?.get(input))
            .is_some();
        if !declared {
            err(
                &mut errors,
                "params_mapping",
                format!("{sw}.{tool}.{input} is not an input of this pipeline."),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(errors))
    }
}

/// The values of `{subworkflow: {tool: {input: value}}}` with their `parameters.` paths.
fn given_values(parameters: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for (sw, tools) in parameters.as_object().into_iter().flatten() {
        for (tool, inputs) in tools.as_object().into_iter().flatten() {
            for (input, value) in inputs.as_object().into_iter().flatten() {
                out.push((format!("parameters.{sw}.{tool}.{input}"), value));
            }
        }
    }
    out
}

/// Users by id (one query).
pub async fn users_by_id<C: ConnectionTrait>(
    db: &C,
    ids: impl Iterator<Item = i64>,
) -> AppResult<HashMap<i64, user::Model>> {
    let ids: Vec<i64> = ids.collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect())
}

/// Pipelines by id (one query).
pub async fn pipelines_by_id<C: ConnectionTrait>(
    db: &C,
    ids: impl Iterator<Item = i64>,
) -> AppResult<HashMap<i64, pipeline::Model>> {
    let ids: Vec<i64> = ids.collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(pipeline::Entity::find()
        .filter(pipeline::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_is_not_absent() {
        for field in ["slug", "status", "enabled", "pipeline", "trigger_type"] {
            let r = serde_json::from_value::<TriggerInput>(json!({ field: null }));
            assert!(r.is_err(), "{field}: null must be refused");
        }
        let i: TriggerInput = serde_json::from_value(json!({"owner": null})).unwrap();
        assert_eq!(i.owner, Some(Value::Null));
        let i: TriggerInput = serde_json::from_value(json!({})).unwrap();
        assert!(i.owner.is_none() && i.enabled.is_none());
    }

    fn t(defaults: Value, mapping: Value) -> trigger::Model {
        trigger::Model {
            slug: "t".into(),
            description: None,
            cql2_filter: json!({}),
            params_default: defaults,
            params_mapping: mapping,
            trigger_type_id: "github".into(),
            pipeline_id: 1,
            owner_id: Some(1),
            status: "Enabled".into(),
            enabled: true,
        }
    }

    #[test]
    fn mapping_fills_parameters_from_data_and_attributes() {
        let data = json!({"ref": "refs/heads/dev", "repository": {"clone_url": "https://github.com/o/r.git"}});
        let ce = json!({"source": "https://github.com/o/r"});
        let ctx = Context {
            data: &data,
            ce: &ce,
        };
        let trig = t(
            json!({"parameters": {"clone_subworkflow": {"clone": {"repo_branch": "main"}}}}),
            json!({
                "clone_subworkflow.clone.repo_url": "repository.clone_url",
                "clone_subworkflow.clone.repo_branch": {"path": "ref", "strip_prefix": "refs/heads/"},
                "other.tool.src": "ce.source",
                "other.tool.absent": "no.such.path"
            }),
        );
        let p = build_parameters(&trig, &ctx).unwrap();
        assert_eq!(
            p,
            json!({
                "clone_subworkflow": {"clone": {"repo_url": "https://github.com/o/r.git", "repo_branch": "dev"}},
                "other": {"tool": {"src": "https://github.com/o/r"}}
            })
        );
        // bare defaults are accepted too
        let bare = t(json!({"sw": {"tool": {"x": 1}}}), json!({}));
        assert_eq!(
            build_parameters(&bare, &ctx).unwrap(),
            json!({"sw": {"tool": {"x": 1}}})
        );
    }

    #[test]
    fn mapping_format_is_checked() {
        assert!(parse_mapping(&json!({"a.b.c": "x.y"})).is_ok());
        assert!(parse_mapping(&json!({"a.b": "x"})).is_err());
        assert!(parse_mapping(&json!({"a.b.c": 3})).is_err());
        assert!(parse_mapping(&json!({"a.b.c": {"path": "x", "other": 1}})).is_err());
        assert!(parse_mapping(&json!({"a.b.c": "x..y"})).is_err());
        assert!(parse_mapping(&json!([1])).is_err());
    }

    #[test]
    fn slugs() {
        assert!(valid_slug("github-push_1"));
        assert!(!valid_slug("a/b"));
        assert!(!valid_slug(""));
        assert!(!valid_slug(&"a".repeat(51)));
    }
}
