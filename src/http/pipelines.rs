//! Pipelines CRUD: `/api/pipelines/` and `/api/pipelines/{id}/`.
//!
//! Access: any authenticated user lists and reads their own pipelines plus the public ones
//! (`owner` null), staff everything; anyone authenticated creates (owning the result); the owner
//! or staff update and delete. `owner` is writable by staff only: a non-staff caller may send it
//! unchanged (the frontend PUTs the whole object back), any other value is 403. The CWL
//! `template` is likewise staff-only, because it is Jinja rendered by the server; pipelines
//! created without one get [`DEFAULT_TEMPLATE`].
//!
//! `(name, owner, version)` is unique, with NULL owners and versions compared as equal values (the
//! reference let NULL versions collide freely). The database's unique index backs the check.

use crate::{
    config::Config,
    db::{
        self,
        entities::{pipeline, pipeline_tool, subworkflow, user},
    },
    error::{AppError, AppResult, FieldErrors},
    http::auth::CurrentUser,
    http::routes::{Routes, route},
    http::{
        extract::JsonBody,
        fields::{Field, FromJson, Invalid, NOT_A_STRING, Problems, too_long},
        serialize::{self, iso},
    },
    pipelines::params,
    runs::{pipeline_not_found, pipeline_visible},
    state::AppState,
};
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use chrono::{SubsecRound, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbBackend,
    EntityTrait, FromQueryResult, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait, sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};
use utoipa::ToSchema;

/// The CWL template given to pipelines created without one.
pub const DEFAULT_TEMPLATE: &str = include_str!("../pipelines/default_template.cwl.jinja");

/// Longest name and version (the columns' sizes).
pub const MAX_NAME_LEN: usize = 50;
/// Longest description.
pub const MAX_DESCRIPTION_LEN: usize = 10_000;
/// Most subworkflows in one pipeline.
pub const MAX_TOOLS: usize = 100;
/// Longest template (bytes).
pub const MAX_TEMPLATE_LEN: usize = 256 * 1024;

const DUPLICATE_ON_CREATE: &str = "A pipeline with this name, version, and owner already exists.";
const DUPLICATE_ON_UPDATE: &str = "The fields name, owner, version must make a unique set.";

/// Routes of this resource.
pub fn routes<R: Routes>(routes: R) -> R {
    routes
        .add(route!(list))
        .add(route!(create))
        .add(route!(read))
        .add(route!(replace))
        .add(route!(update))
        .add(route!(remove))
}

/// Body of `POST`, `PUT` (`name` required) and `PATCH` (all optional) on pipelines. Every
/// field's problem is answered at once, with the reference's (DRF's) messages. Other fields,
/// such as the read-only ones of `Pipeline` that the frontend sends back, are ignored.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PipelineWrite {
    /// Required on `POST` and `PUT`; trimmed, not blank, at most 50 characters.
    #[serde(default)]
    #[schema(value_type = String, required = false, min_length = 1, max_length = 50)]
    name: Field<String>,
    /// Trimmed, at most 10,000 characters.
    #[serde(default)]
    #[schema(value_type = Option<String>, required = false, max_length = 10000)]
    description: Field<String>,
    /// Trimmed, at most 50 characters.
    #[serde(default)]
    #[schema(value_type = Option<String>, required = false, max_length = 50)]
    version: Field<String>,
    /// Tool (subworkflow) slugs, in order: at most 100, no repeats.
    #[serde(default)]
    #[schema(value_type = Vec<String>, required = false, max_items = 100)]
    tools: Field<ToolSlugs>,
    /// `{subworkflow: {tool: {input: {"default": value}}}}` or null; no key starting with `$`.
    #[serde(default)]
    #[schema(value_type = Option<HashMap<String, HashMap<String, HashMap<String, Object>>>>, required = false)]
    default_inputs: Field<DefaultInputs>,
    /// `{"pass": rule, "pass_with_comments": rule}` or null; each rule is parsed when saved
    /// (400 naming the problem; see docs/verdicts.md).
    #[serde(default)]
    #[schema(value_type = Option<QualityRules>, required = false)]
    quality_rules: Field<QualityRules>,
    /// Owner's user id, null for a public pipeline. Staff only (others may send their own id
    /// or the current value).
    #[serde(default)]
    #[schema(value_type = Option<i64>, required = false)]
    owner: Field<UserId>,
    /// Jinja CWL template, at most 256 KiB; staff only.
    #[serde(default)]
    #[schema(value_type = String, required = false)]
    template: Field<String>,
}

/// The `tools` of a pipeline: subworkflow slugs, in order, each once.
#[derive(Debug)]
pub struct ToolSlugs(Vec<String>);

impl FromJson for ToolSlugs {
    fn from_json(value: Value) -> Result<Self, Invalid> {
        let Value::Array(items) = value else {
            return Err(EXPECTED_LIST.into());
        };
        if items.len() > MAX_TOOLS {
            return Err(format!("Ensure this field has no more than {MAX_TOOLS} elements.").into());
        }
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let Value::String(slug) = item else {
                return Err("Incorrect type. Expected pk value (a tool slug).".into());
            };
            if !seen.insert(slug.clone()) {
                return Err(format!("Tool \"{slug}\" is listed twice.").into());
            }
            out.push(slug);
        }
        Ok(ToolSlugs(out))
    }
}

const EXPECTED_LIST: &str = "Expected a list of items.";

/// A pipeline's `default_inputs`: `{subworkflow: {tool: {input: {...}}}}`, without a key
/// starting with `$` anywhere (the error then names that key's path). The values are checked
/// against the declared inputs once the subworkflows are known ([`check_defaults_against`]).
#[derive(Debug)]
pub struct DefaultInputs(Value);

impl FromJson for DefaultInputs {
    fn from_json(value: Value) -> Result<Self, Invalid> {
        const SHAPE: &str =
            "Expected an object {subworkflow: {tool: {input: {\"default\": value}}}} or null.";
        if let Some(path) = params::directive_key(&value, "default_inputs") {
            return Err(Invalid {
                at: Some(path),
                message: params::DIRECTIVE_MESSAGE.into(),
            });
        }
        let ok = value.as_object().is_some_and(|sws| {
            sws.values().all(|tools| {
                tools.as_object().is_some_and(|tools| {
                    tools.values().all(|inputs| {
                        inputs
                            .as_object()
                            .is_some_and(|inputs| inputs.values().all(Value::is_object))
                    })
                })
            })
        });
        if ok {
            Ok(DefaultInputs(value))
        } else {
            Err(SHAPE.into())
        }
    }
}

/// A pipeline's verdict rules, each parsed when saved (see docs/verdicts.md).
#[derive(Debug, Serialize, ToSchema)]
pub struct QualityRules {
    /// The rule for `pass`, e.g. `error == 0 and critical == 0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    pass: Option<String>,
    /// The rule for `pass_with_comments`, tested first.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    pass_with_comments: Option<String>,
}

impl FromJson for QualityRules {
    fn from_json(value: Value) -> Result<Self, Invalid> {
        crate::quality::validate_rules(&value)?;
        let rule = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
        Ok(QualityRules {
            pass: rule("pass"),
            pass_with_comments: rule("pass_with_comments"),
        })
    }
}

/// A user's id sent as a pipeline's `owner`.
#[derive(Debug)]
pub struct UserId(i64);

impl FromJson for UserId {
    fn from_json(value: Value) -> Result<Self, Invalid> {
        value
            .as_i64()
            .map(UserId)
            .ok_or_else(|| "Incorrect type. Expected pk value, received something else.".into())
    }
}

/// A pipeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pipeline {
    pub id: i64,
    pub name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    /// Slugs of its tools (subworkflows), in order.
    pub tools: Vec<String>,
    /// `{subworkflow: {tool: {input: {"default": value}}}}`.
    #[schema(value_type = Object)]
    pub default_inputs: Option<Value>,
    /// `{"pass": rule, "pass_with_comments": rule}` (see docs/verdicts.md).
    #[schema(required = true, value_type = Option<Object>)]
    pub quality_rules: Option<Value>,
    /// Owner's user id; `null` for a public pipeline.
    #[schema(required = true)]
    pub owner: Option<i64>,
    /// Owner's username; absent for public pipelines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_name: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub created_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub edited_at: Option<String>,
    #[schema(required = true)]
    pub version: Option<String>,
}

impl Pipeline {
    /// A pipeline with its tools and owner's name (omitted for public pipelines, as in the
    /// reference).
    pub fn new(p: &pipeline::Model, tools: Vec<String>, owner_name: Option<String>) -> Self {
        Pipeline {
            id: p.id,
            name: p.name.clone(),
            description: p.description.clone(),
            tools,
            default_inputs: p.default_inputs.clone(),
            quality_rules: p.quality_rules.clone(),
            owner: p.owner_id,
            owner_name,
            created_at: p.created_at.as_ref().map(iso),
            edited_at: p.edited_at.as_ref().map(iso),
            version: p.version.clone(),
        }
    }
}

/// What a create or update request asks to change (absent fields are `None`).
#[derive(Debug, Default)]
struct Changes {
    name: Option<String>,
    description: Option<Option<String>>,
    version: Option<Option<String>>,
    tools: Option<Vec<String>>,
    default_inputs: Option<Option<Value>>,
    quality_rules: Option<Option<Value>>,
    owner: Option<Option<i64>>,
    template: Option<String>,
}

/// A sent string as DRF's `CharField(max_length=max, trim_whitespace=True)`: `Ok(None)` for
/// null when `nullable`.
fn trimmed(
    sent: Result<Option<String>, Invalid>,
    max: usize,
    nullable: bool,
    blank: bool,
) -> Result<Option<String>, Invalid> {
    match sent? {
        None if nullable => Ok(None),
        None => Err("This field may not be null.".into()),
        Some(s) => {
            let s = s.trim();
            if s.is_empty() && !blank {
                Err("This field may not be blank.".into())
            } else if s.chars().count() > max {
                Err(too_long(max).into())
            } else {
                Ok(Some(s.to_string()))
            }
        }
    }
}

/// The defaults against the inputs the pipeline's subworkflows (`tools`) declare: scalars of
/// the declared types, held to the repository URL policy ([`params::check_default_inputs`]).
async fn check_defaults_against<C: ConnectionTrait>(
    db: &C,
    config: &Config,
    tools: &[String],
    defaults: &Value,
) -> AppResult<()> {
    let subworkflows = if tools.is_empty() {
        Vec::new()
    } else {
        subworkflow::Entity::find()
            .filter(subworkflow::Column::Slug.is_in(tools.to_vec()))
            .all(db)
            .await?
    };
    let declared: Vec<(&str, &Value)> = subworkflows
        .iter()
        .map(|s| (s.slug.as_str(), &s.user_params))
        .collect();
    let errors = params::check_default_inputs(&declared, defaults, Some(config));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(errors))
    }
}

/// Checks the request body into [`Changes`], collecting every field error.
fn parse_changes(body: PipelineWrite, require_name: bool) -> AppResult<Changes> {
    let mut problems = Problems::default();
    let mut c = Changes::default();
    match body.name.sent() {
        None if require_name => problems.add("name", "This field is required."),
        None => {}
        Some(sent) => {
            c.name = problems
                .take("name", trimmed(sent, MAX_NAME_LEN, false, false))
                .flatten();
        }
    }
    if let Some(sent) = body.description.sent() {
        c.description = problems.take(
            "description",
            trimmed(sent, MAX_DESCRIPTION_LEN, true, true),
        );
    }
    if let Some(sent) = body.version.sent() {
        c.version = problems.take("version", trimmed(sent, MAX_NAME_LEN, true, true));
    }
    if let Some(sent) = body.tools.sent() {
        // null is not a list.
        let tools = sent.and_then(|t| t.ok_or_else(|| EXPECTED_LIST.into()));
        c.tools = problems.take("tools", tools).map(|t| t.0);
    }
    if let Some(sent) = body.default_inputs.sent() {
        c.default_inputs = problems
            .take("default_inputs", sent)
            .map(|d| d.map(|d| d.0));
    }
    if let Some(sent) = body.quality_rules.sent() {
        // Checked here, so a bad rule is a 400 now rather than an `exception` verdict later.
        c.quality_rules = problems
            .take("quality_rules", sent)
            .map(|r| r.map(|r| serde_json::to_value(r).unwrap_or_default()));
    }
    if let Some(sent) = body.owner.sent() {
        c.owner = problems.take("owner", sent).map(|o| o.map(|o| o.0));
    }
    if let Some(sent) = body.template.sent() {
        let template = sent
            .and_then(|t| t.ok_or_else(|| NOT_A_STRING.into()))
            .and_then(|t| {
                if t.len() > MAX_TEMPLATE_LEN {
                    Err(too_long(MAX_TEMPLATE_LEN).into())
                } else {
                    crate::pipelines::render::check_template(&t)
                        .map(|_| t)
                        .map_err(|e| format!("Invalid Jinja template: {e}").into())
                }
            });
        c.template = problems.take("template", template);
    }
    problems.finish()?;
    Ok(c)
}

/// Checks that every tool slug and the owner exist (one query each).
async fn check_references<C: ConnectionTrait>(db: &C, c: &Changes) -> AppResult<()> {
    let mut errors = FieldErrors::new();
    if let Some(tools) = &c.tools
        && !tools.is_empty()
    {
        let found: HashSet<String> = subworkflow::Entity::find()
            .filter(subworkflow::Column::Slug.is_in(tools.clone()))
            .all(db)
            .await?
            .into_iter()
            .map(|s| s.slug)
            .collect();
        if let Some(missing) = tools.iter().find(|t| !found.contains(*t)) {
            errors.insert(
                "tools".into(),
                vec![format!(
                    "Invalid pk \"{}\" - object does not exist.",
                    missing.chars().take(60).collect::<String>()
                )],
            );
        }
    }
    if let Some(Some(owner)) = c.owner
        && user::Entity::find_by_id(owner).one(db).await?.is_none()
    {
        errors.insert(
            "owner".into(),
            vec![format!("Invalid pk \"{owner}\" - object does not exist.")],
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(errors))
    }
}

/// Whether another pipeline has this `(name, owner, version)`; NULLs compare equal here, which
/// the unique index cannot do.
async fn duplicate_exists<C: ConnectionTrait>(
    db: &C,
    name: &str,
    owner: Option<i64>,
    version: Option<&str>,
    exclude: Option<i64>,
) -> AppResult<bool> {
    let mut cond = Condition::all().add(pipeline::Column::Name.eq(name));
    cond = cond.add(match owner {
        Some(o) => pipeline::Column::OwnerId.eq(o),
        None => pipeline::Column::OwnerId.is_null(),
    });
    cond = cond.add(match version {
        Some(v) => pipeline::Column::Version.eq(v),
        None => pipeline::Column::Version.is_null(),
    });
    if let Some(id) = exclude {
        cond = cond.add(pipeline::Column::Id.ne(id));
    }
    Ok(pipeline::Entity::find().filter(cond).count(db).await? > 0)
}

/// Replaces a pipeline's subworkflows, keeping the given order in `position`.
async fn set_tools<C: ConnectionTrait>(
    db: &C,
    pipeline_id: i64,
    tools: &[String],
) -> AppResult<()> {
    pipeline_tool::Entity::delete_many()
        .filter(pipeline_tool::Column::PipelineId.eq(pipeline_id))
        .exec(db)
        .await?;
    if tools.is_empty() {
        return Ok(());
    }
    let rows = tools
        .iter()
        .enumerate()
        .map(|(i, slug)| pipeline_tool::ActiveModel {
            pipeline_id: Set(pipeline_id),
            subworkflow_id: Set(slug.clone()),
            position: Set(i as i32),
            ..Default::default()
        });
    pipeline_tool::Entity::insert_many(rows).exec(db).await?;
    Ok(())
}

/// Serialises pipelines with their tools and owner names (two extra queries).
async fn serialize_all<C: ConnectionTrait>(
    db: &C,
    pipelines: &[pipeline::Model],
) -> AppResult<Vec<Pipeline>> {
    let ids: Vec<i64> = pipelines.iter().map(|p| p.id).collect();
    let mut tools: HashMap<i64, Vec<String>> = HashMap::new();
    if !ids.is_empty() {
        for link in pipeline_tool::Entity::find()
            .filter(pipeline_tool::Column::PipelineId.is_in(ids))
            .order_by_asc(pipeline_tool::Column::Position)
            .order_by_asc(pipeline_tool::Column::Id)
            .all(db)
            .await?
        {
            tools
                .entry(link.pipeline_id)
                .or_default()
                .push(link.subworkflow_id);
        }
    }
    let owners = serialize::usernames(db, pipelines.iter().filter_map(|p| p.owner_id)).await?;
    Ok(pipelines
        .iter()
        .map(|p| {
            Pipeline::new(
                p,
                tools.remove(&p.id).unwrap_or_default(),
                p.owner_id.and_then(|o| owners.get(&o)).cloned(),
            )
        })
        .collect())
}

async fn serialize_one<C: ConnectionTrait>(db: &C, p: &pipeline::Model) -> AppResult<Pipeline> {
    let mut list = serialize_all(db, std::slice::from_ref(p)).await?;
    list.pop()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("pipeline {} not serialised", p.id)))
}

/// The pipeline `raw_id` if the caller may see it (404 otherwise, also for non-numeric ids).
pub async fn find_visible<C: ConnectionTrait>(
    db: &C,
    user: &user::Model,
    raw_id: &str,
) -> AppResult<pipeline::Model> {
    let id = serialize::parse_id(raw_id)?;
    pipeline::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|p| pipeline_visible(user, p))
        .ok_or_else(pipeline_not_found)
}

/// `GET /api/pipelines/`: own + public, staff all.
#[utoipa::path(
    get,
    path = "/api/pipelines/",
    tag = "pipelines",
    operation_id = "pipelines_list",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Pipelines", body = Vec<Pipeline>),
        (status = 401, description = "Missing or invalid credentials", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> AppResult<Json<Vec<Value>>> {
    let all = match state.pipeline_list.get() {
        Some(all) => all,
        None => {
            let generation = state.pipeline_list.generation();
            let all = Arc::new(list_all(&state.db).await?);
            state.pipeline_list.store(generation, all.clone());
            all
        }
    };
    Ok(Json(
        all.iter()
            .filter(|(owner, _)| user.is_staff || owner.is_none() || *owner == Some(user.id))
            .map(|(_, p)| p.clone())
            .collect(),
    ))
}

/// The columns a list shows (never the large `template`), the owner's name and the ordered
/// tool slugs, read in ONE query: on SQLite each query is a round trip to the database thread
/// that costs more than the rest of the request.
#[derive(Debug, FromQueryResult)]
struct ListedPipeline {
    id: i64,
    name: String,
    description: Option<String>,
    version: Option<String>,
    owner_id: Option<i64>,
    created_at: Option<chrono::DateTime<Utc>>,
    edited_at: Option<chrono::DateTime<Utc>>,
    default_inputs: Option<Value>,
    quality_rules: Option<Value>,
    owner_name: Option<String>,
    /// JSON array text of the subworkflow slugs in pipeline order.
    tools: Option<String>,
}

/// Every pipeline in id order with its owner, serialised; [`list`] keeps those the caller may
/// see (own + public, staff all).
async fn list_all<C: ConnectionTrait>(db: &C) -> AppResult<Vec<(Option<i64>, Value)>> {
    // Both dialects aggregate in order; only the function names differ.
    let tools = match db.get_database_backend() {
        DbBackend::Postgres => {
            r#"(SELECT json_agg(t."subworkflow_id" ORDER BY t."position", t."id")::text FROM "backend_pipeline_tools" t WHERE t."pipeline_id" = "backend_pipeline"."id")"#
        }
        _ => {
            r#"(SELECT json_group_array(t."subworkflow_id" ORDER BY t."position", t."id") FROM "backend_pipeline_tools" t WHERE t."pipeline_id" = "backend_pipeline"."id")"#
        }
    };
    let owner_name =
        r#"(SELECT u."username" FROM "auth_user" u WHERE u."id" = "backend_pipeline"."owner_id")"#;
    let rows = pipeline::Entity::find()
        .select_only()
        .columns([
            pipeline::Column::Id,
            pipeline::Column::Name,
            pipeline::Column::Description,
            pipeline::Column::Version,
            pipeline::Column::OwnerId,
            pipeline::Column::CreatedAt,
            pipeline::Column::EditedAt,
            pipeline::Column::DefaultInputs,
            pipeline::Column::QualityRules,
        ])
        .column_as(Expr::cust(owner_name), "owner_name")
        .column_as(Expr::cust(tools), "tools")
        .order_by_asc(pipeline::Column::Id)
        .into_model::<ListedPipeline>()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let tools: Vec<String> = r
                .tools
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default();
            let p = pipeline::Model {
                id: r.id,
                name: r.name,
                description: r.description,
                // Not part of the list shape, so never read.
                template: String::new(),
                version: r.version,
                owner_id: r.owner_id,
                created_at: r.created_at,
                edited_at: r.edited_at,
                default_inputs: r.default_inputs,
                quality_rules: r.quality_rules,
            };
            // Kept serialised: the list is answered from this cache (see `state::PipelineList`).
            let json =
                serde_json::to_value(Pipeline::new(&p, tools, r.owner_name)).unwrap_or(Value::Null);
            (p.owner_id, json)
        })
        .collect())
}

/// `GET /api/pipelines/{id}/`: one pipeline (own, public, or any for staff).
#[utoipa::path(
    get,
    path = "/api/pipelines/{id}/",
    tag = "pipelines",
    operation_id = "pipelines_read",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Pipeline id")),
    responses(
        (status = 200, description = "The pipeline", body = Pipeline),
        (status = 401, description = "Missing or invalid credentials", body = crate::http::openapi::ErrorDetail),
        (status = 404, description = "No such pipeline visible to the caller", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn read(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> AppResult<Json<Pipeline>> {
    let p = find_visible(&state.db, &user, &id).await?;
    Ok(Json(serialize_one(&state.db, &p).await?))
}

fn staff_only(what: &str) -> AppError {
    AppError::Forbidden(format!("Only staff may set the {what} of a pipeline."))
}

/// `POST /api/pipelines/`: the caller owns the new pipeline unless staff says otherwise.
#[utoipa::path(
    post,
    path = "/api/pipelines/",
    tag = "pipelines",
    operation_id = "pipelines_create",
    security(("bearer" = [])),
    request_body = PipelineWrite,
    responses(
        (status = 201, description = "Created", body = Pipeline),
        (status = 400, description = "Field errors, or a duplicate (name, owner, version) as `{detail}`", body = crate::http::openapi::FieldErrors),
        (status = 401, description = "Missing or invalid credentials", body = crate::http::openapi::ErrorDetail),
        (status = 403, description = "`owner` or `template` set by a non-staff caller", body = crate::http::openapi::ErrorDetail),
        (status = 413, description = "Body too large", body = crate::http::openapi::ErrorDetail),
        (status = 415, description = "Not JSON", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(body): JsonBody<PipelineWrite>,
) -> AppResult<(StatusCode, Json<Pipeline>)> {
    let c = parse_changes(body, true)?;
    let owner = match c.owner {
        None => Some(user.id),
        Some(o) if user.owns_or_staff(o) => o,
        Some(_) => return Err(staff_only("owner")),
    };
    if c.template.is_some() && !user.is_staff {
        return Err(staff_only("template"));
    }
    check_references(&state.db, &c).await?;
    if let Some(Some(defaults)) = &c.default_inputs {
        let tools = c.tools.as_deref().unwrap_or_default();
        check_defaults_against(&state.db, &state.config, tools, defaults).await?;
    }
    let name = c.name.clone().unwrap_or_default();
    let version = c.version.clone().flatten();
    let duplicate = || AppError::BadRequest(DUPLICATE_ON_CREATE.into());
    if duplicate_exists(&state.db, &name, owner, version.as_deref(), None).await? {
        return Err(duplicate());
    }
    // Microseconds: what PostgreSQL keeps, so the response equals later reads.
    let now = Utc::now().trunc_subsecs(6);
    let txn = state.db.begin().await?;
    let p = pipeline::ActiveModel {
        name: Set(name),
        description: Set(c.description.flatten()),
        template: Set(c.template.unwrap_or_else(|| DEFAULT_TEMPLATE.to_string())),
        version: Set(version),
        owner_id: Set(owner),
        created_at: Set(Some(now)),
        edited_at: Set(Some(now)),
        default_inputs: Set(Some(
            c.default_inputs
                .flatten()
                .unwrap_or_else(|| Value::Object(Map::new())),
        )),
        quality_rules: Set(c
            .quality_rules
            .unwrap_or_else(|| Some(Value::Object(Map::new())))),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(|e| {
        if db::is_unique_violation(&e) {
            duplicate()
        } else {
            e.into()
        }
    })?;
    set_tools(&txn, p.id, c.tools.as_deref().unwrap_or_default()).await?;
    txn.commit().await?;
    state.pipeline_list.invalidate();
    Ok((
        StatusCode::CREATED,
        Json(serialize_one(&state.db, &p).await?),
    ))
}

/// `PUT /api/pipelines/{id}/` (`name` required): owner or staff.
#[utoipa::path(
    put,
    path = "/api/pipelines/{id}/",
    tag = "pipelines",
    operation_id = "pipelines_replace",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Pipeline id")),
    request_body = PipelineWrite,
    responses(
        (status = 200, description = "Updated", body = Pipeline),
        (status = 400, description = "Field errors (also for a duplicate)", body = crate::http::openapi::FieldErrors),
        (status = 401, description = "Missing or invalid credentials", body = crate::http::openapi::ErrorDetail),
        (status = 403, description = "Not the owner or staff, or `owner`/`template` changed by a non-staff caller", body = crate::http::openapi::ErrorDetail),
        (status = 404, description = "No such pipeline visible to the caller", body = crate::http::openapi::ErrorDetail),
        (status = 413, description = "Body too large", body = crate::http::openapi::ErrorDetail),
        (status = 415, description = "Not JSON", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn replace(
    state: State<AppState>,
    user: CurrentUser,
    id: Path<String>,
    body: JsonBody<PipelineWrite>,
) -> AppResult<Json<Pipeline>> {
    apply_update(state, user, id, body, true).await
}

/// `PATCH /api/pipelines/{id}/`: owner or staff; absent fields are kept.
#[utoipa::path(
    patch,
    path = "/api/pipelines/{id}/",
    tag = "pipelines",
    operation_id = "pipelines_update",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Pipeline id")),
    request_body = PipelineWrite,
    responses(
        (status = 200, description = "Updated", body = Pipeline),
        (status = 400, description = "Field errors (also for a duplicate)", body = crate::http::openapi::FieldErrors),
        (status = 401, description = "Missing or invalid credentials", body = crate::http::openapi::ErrorDetail),
        (status = 403, description = "Not the owner or staff, or `owner`/`template` changed by a non-staff caller", body = crate::http::openapi::ErrorDetail),
        (status = 404, description = "No such pipeline visible to the caller", body = crate::http::openapi::ErrorDetail),
        (status = 413, description = "Body too large", body = crate::http::openapi::ErrorDetail),
        (status = 415, description = "Not JSON", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn update(
    state: State<AppState>,
    user: CurrentUser,
    id: Path<String>,
    body: JsonBody<PipelineWrite>,
) -> AppResult<Json<Pipeline>> {
    apply_update(state, user, id, body, false).await
}

async fn apply_update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PipelineWrite>,
    full: bool,
) -> AppResult<Json<Pipeline>> {
    let p = find_visible(&state.db, &user, &id).await?;
    if !user.owns_or_staff(p.owner_id) {
        return Err(AppError::forbidden());
    }
    let c = parse_changes(body, full)?;
    if let Some(owner) = c.owner
        && owner != p.owner_id
        && !user.is_staff
    {
        return Err(staff_only("owner"));
    }
    if let Some(t) = &c.template
        && *t != p.template
        && !user.is_staff
    {
        return Err(staff_only("template"));
    }
    check_references(&state.db, &c).await?;
    if c.default_inputs.is_some() || c.tools.is_some() {
        let tools = match &c.tools {
            Some(t) => t.clone(),
            None => pipeline_tool::Entity::find()
                .filter(pipeline_tool::Column::PipelineId.eq(p.id))
                .all(&state.db)
                .await?
                .into_iter()
                .map(|l| l.subworkflow_id)
                .collect(),
        };
        let defaults = match &c.default_inputs {
            Some(d) => d.clone(),
            None => p.default_inputs.clone(),
        };
        if let Some(defaults) = defaults {
            check_defaults_against(&state.db, &state.config, &tools, &defaults).await?;
        }
    }
    let name = c.name.clone().unwrap_or_else(|| p.name.clone());
    let owner = c.owner.unwrap_or(p.owner_id);
    let version = c.version.clone().unwrap_or_else(|| p.version.clone());
    let duplicate = || AppError::field("non_field_errors", DUPLICATE_ON_UPDATE);
    if duplicate_exists(&state.db, &name, owner, version.as_deref(), Some(p.id)).await? {
        return Err(duplicate());
    }
    let txn = state.db.begin().await?;
    let mut active = p.into_active_model();
    active.name = Set(name);
    active.owner_id = Set(owner);
    active.version = Set(version);
    if let Some(d) = c.description {
        active.description = Set(d);
    }
    if let Some(d) = c.default_inputs {
        active.default_inputs = Set(Some(d.unwrap_or_else(|| Value::Object(Map::new()))));
    }
    if let Some(r) = c.quality_rules {
        active.quality_rules = Set(r);
    }
    if let Some(t) = c.template {
        active.template = Set(t);
    }
    active.edited_at = Set(Some(Utc::now().trunc_subsecs(6)));
    let p = active.update(&txn).await.map_err(|e| {
        if db::is_unique_violation(&e) {
            duplicate()
        } else {
            e.into()
        }
    })?;
    if let Some(tools) = &c.tools {
        set_tools(&txn, p.id, tools).await?;
    }
    txn.commit().await?;
    state.pipeline_list.invalidate();
    Ok(Json(serialize_one(&state.db, &p).await?))
}

/// `DELETE /api/pipelines/{id}/`: 204; its runs and reports go with it. Owner or staff.
#[utoipa::path(
    delete,
    path = "/api/pipelines/{id}/",
    tag = "pipelines",
    operation_id = "pipelines_delete",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Pipeline id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid credentials", body = crate::http::openapi::ErrorDetail),
        (status = 403, description = "Not the owner or staff", body = crate::http::openapi::ErrorDetail),
        (status = 404, description = "No such pipeline visible to the caller", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let p = find_visible(&state.db, &user, &id).await?;
    if !user.owns_or_staff(p.owner_id) {
        return Err(AppError::forbidden());
    }
    pipeline::Entity::delete_by_id(p.id).exec(&state.db).await?;
    state.pipeline_list.invalidate();
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        db::entities::{command_line_tool, subworkflow},
        pipelines::{PipelineGraph, render},
    };
    use serde_json::json;

    fn clone_graph() -> PipelineGraph {
        let sw = subworkflow::Model {
            slug: "clone_subworkflow".into(),
            name: "Clone".into(),
            description: None,
            pipeline_step: "clone_step:\r\n  in:\r\n    clone.repo_url: clone_subworkflow.clone.repo_url\r\n  run: '#clone_subworkflow'\r\n  out:\r\n  - repo_directory".into(),
            definition: "- class: Workflow\r\n  id: clone_subworkflow\r\n  inputs:\r\n    clone.repo_url: string\r\n  outputs: []\r\n  steps: []\r\n{% for tool in tools %}{{ tool.definition }}\r\n{% endfor %}".into(),
            user_params: json!({"clone": {
                "repo_url": {"type": "string", "label": "Repo \"URL\": x", "doc": "multi\nline", "default": ""},
                "depth": {"type": "int?"},
            }}),
            version: "0.1".into(),
            status: "Stable".into(),
            available: true,
        };
        let tool = command_line_tool::Model {
            slug: "clone".into(),
            name: "clone".into(),
            definition: "- class: CommandLineTool\n  id: clone_tool\n  inputs: {}\n  outputs: {}\n  baseCommand: 'true'".into(),
            version: None,
        };
        let p = pipeline::Model {
            id: 1,
            name: "p".into(),
            description: None,
            template: DEFAULT_TEMPLATE.into(),
            version: None,
            owner_id: None,
            created_at: None,
            edited_at: None,
            default_inputs: Some(
                json!({"clone_subworkflow": {"clone": {"repo_url": {"default": "https://x"}}}}),
            ),
            quality_rules: None,
        };
        PipelineGraph {
            pipeline: p,
            subworkflows: vec![(sw, vec![tool])],
        }
    }

    #[test]
    fn default_template_renders_valid_cwl_yaml() {
        let text = render::render(&clone_graph()).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(doc["cwlVersion"], "v1.2");
        let graph = doc["$graph"].as_array().unwrap();
        assert_eq!(graph.len(), 3, "{text}");
        let main = &graph[0];
        assert_eq!(main["id"], "main");
        let url = &main["inputs"]["clone_subworkflow.clone.repo_url"];
        assert_eq!(url["type"], "string");
        assert_eq!(url["default"], "https://x", "pipeline default applied");
        assert_eq!(url["label"], "Repo \"URL\": x");
        assert_eq!(url["doc"], "multi\nline");
        assert_eq!(
            main["inputs"]["clone_subworkflow.clone.depth"]["type"],
            "int?"
        );
        for k in ["pipeline_id", "run_id", "server_url"] {
            assert_eq!(main["inputs"][k], "string");
        }
        assert_eq!(
            main["steps"]["clone_step"]["run"], "#clone_subworkflow",
            "{text}"
        );
        assert_eq!(graph[1]["id"], "clone_subworkflow");
        assert_eq!(graph[2]["id"], "clone_tool");
    }

    /// User strings written into the CWL stay the strings they are, however much they look like
    /// YAML or schema-salad; a structured default never reaches a template.
    #[test]
    fn user_values_render_as_quoted_scalars() {
        for hostile in [
            "{\"$include\": \"/etc/passwd\"}",
            "{$import: /etc/passwd}",
            "!!python/object/apply:os.system [\"id\"]",
            "*alias",
            "&anchor x",
            "a: b\n- c\n$include: /etc/passwd\n",
            "'single' \"double\" \\ back",
            "%YAML 1.2\n---\n...",
            "$(inputs.repo_url) ${ return 1 }",
            "line\u{2028}separator, é, 🦀, <>&",
        ] {
            let mut g = clone_graph();
            g.pipeline.default_inputs =
                Some(json!({"clone_subworkflow": {"clone": {"repo_url": {"default": hostile}}}}));
            let text = render::render(&g).unwrap();
            let doc: Value = serde_yaml::from_str(&text).unwrap();
            assert_eq!(
                doc["$graph"][0]["inputs"]["clone_subworkflow.clone.repo_url"]["default"],
                json!(hostile),
                "{text}"
            );
        }
        for structured in [
            json!({"$include": "/etc/passwd"}),
            json!({"class": "File", "location": "file:///etc/passwd"}),
            json!(["a", "b"]),
        ] {
            let mut g = clone_graph();
            g.pipeline.default_inputs = Some(
                json!({"clone_subworkflow": {"clone": {"repo_url": {"default": structured}}}}),
            );
            let e = render::render(&g).unwrap_err();
            assert!(
                e.detail
                    .starts_with("refused default_inputs.clone_subworkflow.clone.repo_url"),
                "{e}"
            );
        }
    }

    #[test]
    fn default_template_without_subworkflows() {
        let mut g = clone_graph();
        g.subworkflows.clear();
        let doc: Value = serde_yaml::from_str(&render::render(&g).unwrap()).unwrap();
        assert_eq!(doc["$graph"][0]["steps"], json!([]));
    }

    fn parse_changes(body: &Value, require_name: bool) -> AppResult<Changes> {
        let body: PipelineWrite = serde_json::from_value(body.clone()).unwrap();
        super::parse_changes(body, require_name)
    }

    fn fields_of(err: &AppError) -> Vec<String> {
        err.body().as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn changes_are_validated_per_field() {
        let err = parse_changes(
            &json!({"name": "x".repeat(51), "tools": "nope", "default_inputs": "str", "owner": "me"}),
            true,
        )
        .unwrap_err();
        let body = err.body();
        assert_eq!(
            body["name"][0],
            "Ensure this field has no more than 50 characters."
        );
        assert!(body["tools"].is_array());
        assert!(body["default_inputs"].is_array());
        assert!(body["owner"].is_array());
        assert_eq!(
            parse_changes(&json!({}), true).unwrap_err().body(),
            json!({"name": ["This field is required."]})
        );
        let c = parse_changes(
            &json!({"name": " p ", "owner_name": "ignored", "id": 9, "version": null}),
            true,
        )
        .unwrap();
        assert_eq!(c.name.as_deref(), Some("p"));
        assert_eq!(c.version, Some(None));
        assert!(
            parse_changes(
                &json!({"default_inputs": {"sw": {"tool": {"in": 1}}}}),
                false
            )
            .is_err()
        );
        assert!(
            parse_changes(&json!({"template": "{% for %}"}), false).is_err(),
            "template syntax is checked"
        );
        let err = parse_changes(
            &json!({"default_inputs": {"sw": {"t": {"i": {"default": {"$include": "/etc/passwd"}}}}}}),
            false,
        )
        .unwrap_err();
        assert_eq!(
            fields_of(&err),
            ["default_inputs.sw.t.i.default.$include"],
            "the directive's path is named"
        );
    }
}
