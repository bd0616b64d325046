//! `GET /api/openapi.json`: the OpenAPI 3.1 description of every route, generated from the code.
//!
//! The REST handlers carry `#[utoipa::path]` annotations and are listed in [`ApiDoc`]. The
//! CloudEvents ingress, triggers, trigger types, the results callback, the health probes and
//! `/metrics` are described here with utoipa's builder API instead ([`described_elsewhere`]),
//! which keeps this document independent of those modules' internals. The integration test `openapi` fails when
//! a route is served without being documented, or documented without being served.
//!
//! Common statuses are added to every operation by [`Common`]: 500 and 503 (with
//! `Retry-After`), which any handler can answer, and the `WWW-Authenticate` / `Retry-After`
//! headers of 401 / 429 responses. The document is built once, on first request (not on the
//! cold-start path), and served as pre-serialised bytes.

pub mod schemas;

use crate::state::AppState;
use axum::{
    Router,
    body::Bytes,
    http::{HeaderValue, header},
    response::IntoResponse,
    routing::get,
};
use std::sync::OnceLock;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, ContentBuilder, Ref, RefOr, Required, ResponseBuilder,
        header::HeaderBuilder,
        path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItem},
        request_body::RequestBodyBuilder,
        schema::{ObjectBuilder, Schema, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    },
};

/// Name of the security scheme of user access tokens.
pub const BEARER: &str = "bearer";
/// Name of the security scheme of per-run callback tokens.
pub const RUN_TOKEN: &str = "run_token";
/// Name of the session cookie security scheme.
pub const SESSION: &str = "session";

/// The annotated handlers and the schemas they use.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Application Quality API",
        description = "REST API and CloudEvents ingress of EOEPCA Application Quality. \
            Paths are shown with the trailing slash clients use; the same path without it is \
            served too. Errors are JSON: `{\"detail\": \"...\"}`, or field errors \
            `{\"field\": [\"message\"]}` for validation. Requests whose `Host` is not allowed \
            get 400 (health probes excepted)."
    ),
    paths(
        openapi_json,
        super::index::index,
        super::tokens::obtain,
        super::tokens::refresh,
        super::users::me,
        super::oidc::authenticate,
        super::oidc::callback,
        super::oidc::user_details,
        super::oidc::logout_page,
        super::oidc::logout,
        super::settings::settings,
        super::pipelines::list,
        super::pipelines::create,
        super::pipelines::read,
        super::pipelines::replace,
        super::pipelines::update,
        super::pipelines::remove,
        super::runs::list,
        super::runs::create,
        super::runs::read,
        super::runs::override_quality,
        super::runs::cancel,
        super::runlogs::read,
        super::jobreports::list,
        super::jobreports::create,
        super::jobreports::read,
        super::tools::list,
        super::tools::read,
        super::tags::list,
        super::tags::read,
    ),
    components(schemas(
        schemas::ErrorDetail,
        schemas::FieldErrors,
        schemas::TokenRequest,
        schemas::TokenPair,
        schemas::RefreshRequest,
        schemas::AccessToken,
        schemas::TokenNotValid,
        schemas::ApiRoot,
        schemas::Pipeline,
        schemas::PipelineWrite,
        schemas::Run,
        schemas::RunPage,
        schemas::RunCursorPage,
        schemas::Page,
        schemas::RunCreate,
        schemas::RunOverride,
        schemas::JobReport,
        schemas::ReportUpload,
        schemas::Tool,
        schemas::Tag,
        schemas::User,
    )),
    modifiers(&Common),
    tags(
        (name = "tokens", description = "JWTs for local users"),
        (name = "pipelines", description = "Pipelines: own and public; owner or staff change them"),
        (name = "runs", description = "Runs of pipelines: their starter or staff"),
        (name = "jobreports", description = "Reports of a run's steps"),
        (name = "catalogue", description = "Tools, tags and trigger types: anyone may read"),
        (name = "triggers", description = "Event triggers that start pipelines: owner or staff"),
        (name = "events", description = "CloudEvents ingress and the received-event log"),
        (name = "callbacks", description = "Called by a run's own pod with its callback token"),
        (name = "service", description = "API root, settings, health, this document"),
        (name = "sign-in", description = "Browser sign-in through the IAM (OpenID Connect), with session cookies"),
    )
)]
pub struct ApiDoc;

/// Adds the security schemes and the statuses every operation can answer.
struct Common;

impl Modify for Common {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from `POST /api/token/` (`Authorization: Bearer ...`).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            SESSION,
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Cookie(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    crate::auth::session::SESSION_COOKIE,
                    "The session cookie of the browser sign-in (`/oidc/authenticate/`). Every                      operation that accepts `bearer` accepts it too; state-changing requests                      then need `X-CSRFToken` equal to the `csrftoken` cookie and an `Origin`                      of `PUBLIC_URL` (else 403). Bearer tokens may also be IAM access tokens                      or CI ID tokens mapped by `CI_OIDC_POLICIES`.",
                ),
            )),
        );
        components.add_security_scheme(
            RUN_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("aqrun_...")
                    .description(Some(
                        "The callback token issued to one run at launch and given to its pod only.",
                    ))
                    .build(),
            ),
        );
        for item in doc.paths.paths.values_mut() {
            for op in operations_mut(item) {
                add_common_responses(op);
            }
        }
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn header(description: &str) -> openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(description))
        .build()
}

fn add_common_responses(op: &mut Operation) {
    let responses = &mut op.responses.responses;
    responses
        .entry("500".into())
        .or_insert_with(|| error("Internal error (details are logged, never sent)").into());
    responses.entry("503".into()).or_insert_with(|| {
        error("The database (or the Kubernetes API) is temporarily unavailable").into()
    });
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        match status.as_str() {
            "401" => {
                response
                    .headers
                    .entry("WWW-Authenticate".into())
                    .or_insert_with(|| header("`Bearer`").into());
            }
            "429" | "503" => {
                response
                    .headers
                    .entry("Retry-After".into())
                    .or_insert_with(|| header("Seconds to wait before retrying").into());
            }
            _ => {}
        }
    }
}

fn json_content(schema: impl Into<RefOr<Schema>>) -> openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// A free-form JSON object, described in words.
fn object(description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .into()
}

fn array_of(item: Schema) -> Schema {
    openapi::schema::ArrayBuilder::new()
        .items(openapi::schema::ArrayItems::RefOrSchema(Box::new(
            RefOr::T(item),
        )))
        .into()
}

fn error(description: &str) -> openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", json_content(schema_ref("ErrorDetail")))
        .build()
}

fn ok(description: &str, schema: impl Into<RefOr<Schema>>) -> openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", json_content(schema))
        .build()
}

fn path_param(name: &str, description: &str) -> openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

fn query_param(name: &str, ty: Type, description: &str) -> openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(ty)))
        .build()
}

/// The paging parameters of every growing list (see `crate::http::paging`).
fn paging_params() -> Vec<openapi::path::Parameter> {
    vec![
        query_param(
            "limit",
            Type::Integer,
            "Page size, 1-1000 (clamped; 100 with only `offset`/`cursor`): answers a `Page`              `{count, next, previous, results}` instead of the whole list",
        ),
        query_param("offset", Type::Integer, "Rows to skip (with `limit`)"),
        query_param(
            "cursor",
            Type::String,
            "Keyset paging: empty for the first page, then the `next` link's value; pages              `{next, previous: null, results}` stay consistent while rows are added",
        ),
    ]
}

/// Who may call an operation.
#[derive(Clone, Copy)]
enum Access {
    Anyone,
    /// Anonymous callers see less.
    OptionalUser,
    User,
    Staff,
    RunToken,
}

/// One operation described with the builder API.
fn operation(
    tag: &str,
    id: &str,
    summary: &str,
    access: Access,
    params: Vec<openapi::path::Parameter>,
    responses: Vec<(&str, openapi::Response)>,
) -> OperationBuilder {
    let mut op = OperationBuilder::new()
        .tag(tag)
        .operation_id(Some(id))
        .summary(Some(summary))
        .parameters(Some(params));
    let bearer = || SecurityRequirement::new(BEARER, Vec::<String>::new());
    op = match access {
        Access::Anyone => op,
        Access::OptionalUser => op
            .security(SecurityRequirement::default())
            .security(bearer()),
        Access::User | Access::Staff => op.security(bearer()),
        Access::RunToken => op.security(SecurityRequirement::new(RUN_TOKEN, Vec::<String>::new())),
    };
    if matches!(access, Access::User | Access::Staff | Access::RunToken) {
        op = op.response("401", error("Missing or invalid credentials"));
    }
    if matches!(access, Access::Staff | Access::RunToken) {
        op = op.response(
            "403",
            error(match access {
                Access::Staff => "The caller is not staff",
                _ => "The token does not belong to this run",
            }),
        );
    }
    for (status, response) in responses {
        op = op.response(status, response);
    }
    op
}

fn json_body(
    description: &str,
    schema: impl Into<RefOr<Schema>>,
) -> openapi::request_body::RequestBody {
    RequestBodyBuilder::new()
        .description(Some(description))
        .required(Some(Required::True))
        .content("application/json", json_content(schema))
        .build()
}

/// CloudEvents ingress operation (`POST /`, `/api/events/`, `/{namespace}/{broker}`).
fn ingress(id: &str, summary: &str, params: Vec<openapi::path::Parameter>) -> Operation {
    let event = object(
        "A CloudEvent 1.0: structured mode (`application/cloudevents+json`) or binary mode \
         (`ce-*` headers, the data as the body). Types handled: `*.pipeline.execute`, \
         `*.health`, Kubernetes Job events from an ApiServerSource, the commit-status wake-up \
         (`dev.knative.sources.ping`, `org.eoepca.application-quality.events.wakeup`), and any \
         type matched by a trigger's CQL2-JSON filter. Redelivery of an already seen (source, id) is harmless.",
    );
    let reply = ResponseBuilder::new()
        .description(
            "Processed: a binary-mode reply CloudEvent (`ce-type` ends in `.ok`, `.accepted`, \
             `.duplicate` or `.ignored`; `ce-subject` is the run id when there is one).",
        )
        .content(
            "application/json",
            json_content(object(
                "The reply event's data: `{status, run_ids?, detail?}`.",
            )),
        )
        .build();
    operation(
        "events",
        id,
        summary,
        Access::Anyone,
        params,
        vec![
            ("200", reply),
            ("400", error("Not a valid CloudEvent")),
            (
                "401",
                error(
                    "Sender authentication is on (`EVENTS_AUTH=oidc`) and the sender's OIDC \
                     token is missing or invalid",
                ),
            ),
            (
                "403",
                error(
                    "The sender may not send events, or may not name a `user` \
                     (`EVENTS_ALLOWED_SENDERS`, `EVENTS_USER_SENDERS`); or, without sender \
                     authentication, the event comes from beyond this machine and \
                     `EVENTS_TRUST_NETWORK` is off",
                ),
            ),
            (
                "409",
                error("The same event is being processed; retry later"),
            ),
            ("413", error("Body too large")),
            ("415", error("Unsupported content type")),
            (
                "422",
                error("Well-formed but cannot succeed (unknown user, pipeline or parameters)"),
            ),
            (
                "429",
                error(
                    "The user the run would start as (the named user, or a matching \
                     trigger's owner) has as many runs executing or waiting as allowed \
                     (`RUNS_MAX_ACTIVE_PER_USER`, `RUNS_MAX_QUEUED_PER_USER`); nothing was \
                     recorded, retried",
                ),
            ),
            (
                "503",
                error(
                    "The database, the Kubernetes API or the signing keys of sender tokens \
                     are unavailable; retried",
                ),
            ),
        ],
    )
    .request_body(Some(
        RequestBodyBuilder::new()
            .required(Some(Required::True))
            .content("application/cloudevents+json", json_content(event.clone()))
            .content("application/json", json_content(event))
            .build(),
    ))
    .build()
}

/// Adds an operation to a path item.
trait WithOperation {
    fn with(self, method: HttpMethod, op: impl Into<Operation>) -> Self;
}

impl WithOperation for PathItem {
    fn with(mut self, method: HttpMethod, op: impl Into<Operation>) -> Self {
        self.merge_operations(PathItem::new(method, op));
        self
    }
}

/// Routes whose handlers are not annotated: the CloudEvents ingress, triggers, trigger types,
/// the results callback, the health probes and the metrics.
fn described_elsewhere() -> Vec<(&'static str, PathItem)> {
    let trigger = || {
        object(
            "A trigger: `{slug, description, status, enabled, filter (CQL2-JSON), params_default, \
             params_mapping, trigger_type, trigger_type_name, pipeline_id, pipeline_name, \
             pipeline_version, owner, ...}`.",
        )
    };
    let trigger_body = || {
        json_body(
            "`{slug, description?, status?, enabled?, filter?, params_default?, params_mapping?, \
             pipeline (or pipeline_id), trigger_type, owner? (staff only)}`; read-only fields \
             sent back are ignored. `PUT` and `PATCH` change the fields given.",
            trigger(),
        )
    };
    let trigger_type =
        || object("A trigger type: `{slug, name, description, status, data, available}`.");
    let trigger_event = || {
        object(
            "An event a trigger fired for: `{id, source, event_time, event_type, event_headers, \
             event_body, trigger, trigger_type, trigger_type_name}`, plus `pipeline_run_id`, \
             `pipeline_id`, `pipeline_name`, `pipeline_version` and `user` when it started a run.",
        )
    };
    let received_event = || {
        object(
            "A received CloudEvent: `{id, source, event_id, type, subject, time, user, outcome, \
             message, run_ids, pipeline_id, received_at, data, headers}`.",
        )
    };
    let slug = || path_param("slug", "Trigger slug");
    let not_found = |what: &str| error(&format!("No such {what} visible to the caller"));
    let invalid = || {
        ResponseBuilder::new()
            .description("Validation failed")
            .content("application/json", json_content(schema_ref("FieldErrors")))
            .build()
    };
    let health = |id: &str, what: &str| {
        PathItem::new(
            HttpMethod::Get,
            operation(
                "service",
                id,
                what,
                Access::Anyone,
                vec![],
                vec![(
                    "200",
                    ok("`{\"status\": \"ok\"}`", object("`{\"status\": \"ok\"}`")),
                )],
            ),
        )
    };
    vec![
        (
            "/",
            PathItem::new(
                HttpMethod::Post,
                ingress(
                    "events_receive_root",
                    "Receive a CloudEvent (`kn func invoke`)",
                    vec![],
                ),
            ),
        ),
        (
            "/api/events/",
            PathItem::new(
                HttpMethod::Post,
                ingress(
                    "events_receive",
                    "Receive a CloudEvent (Trigger subscriber)",
                    vec![],
                ),
            )
            .with(
                HttpMethod::Get,
                operation(
                    "events",
                    "events_list",
                    "Received events, newest first (staff)",
                    Access::Staff,
                    [
                        query_param("type", Type::String, "Event type prefix"),
                        query_param("source", Type::String, "Exact event source"),
                        query_param("outcome", Type::String, "Exact outcome"),
                        query_param(
                            "received_after",
                            Type::String,
                            "Received at or after this time (RFC 3339)",
                        ),
                        query_param(
                            "received_before",
                            Type::String,
                            "Received before this time (RFC 3339)",
                        ),
                    ]
                    .into_iter()
                    .chain(paging_params())
                    .collect(),
                    vec![
                        (
                            "200",
                            ok(
                                "Received events: all of them as an array (streamed) without                                  paging parameters, else a `Page`",
                                array_of(received_event()),
                            ),
                        ),
                        ("400", error("Malformed filter or paging parameter")),
                    ],
                ),
            ),
        ),
        (
            "/{namespace}/{broker}",
            PathItem::new(
                HttpMethod::Post,
                ingress(
                    "events_receive_broker_path",
                    "Receive a CloudEvent at a broker-ingress shaped path (namespace `api` is 404)",
                    vec![
                        path_param("namespace", "Any namespace name but `api`"),
                        path_param("broker", "Any broker name"),
                    ],
                ),
            ),
        ),
        (
            "/api/triggers/",
            PathItem::new(
                HttpMethod::Get,
                operation(
                    "triggers",
                    "triggers_list",
                    "The caller's triggers (staff: all)",
                    Access::User,
                    vec![],
                    vec![("200", ok("Triggers", array_of(trigger())))],
                ),
            )
            .with(
                HttpMethod::Post,
                operation(
                    "triggers",
                    "triggers_create",
                    "Create a trigger owned by the caller",
                    Access::User,
                    vec![],
                    vec![
                        ("201", ok("Created", trigger())),
                        ("400", invalid()),
                        ("403", error("Only staff may assign another owner")),
                        ("415", error("Not JSON")),
                    ],
                )
                .request_body(Some(trigger_body())),
            ),
        ),
        (
            "/api/triggers/{slug}/",
            PathItem::new(
                HttpMethod::Get,
                operation(
                    "triggers",
                    "triggers_read",
                    "One trigger (owner or staff)",
                    Access::User,
                    vec![slug()],
                    vec![
                        ("200", ok("The trigger", trigger())),
                        ("404", not_found("trigger")),
                    ],
                ),
            )
            .with(
                HttpMethod::Put,
                operation(
                    "triggers",
                    "triggers_replace",
                    "Update a trigger (owner or staff)",
                    Access::User,
                    vec![slug()],
                    vec![
                        ("200", ok("Updated", trigger())),
                        ("400", invalid()),
                        ("404", not_found("trigger")),
                        ("415", error("Not JSON")),
                    ],
                )
                .request_body(Some(trigger_body())),
            )
            .with(
                HttpMethod::Patch,
                operation(
                    "triggers",
                    "triggers_update",
                    "Update some fields of a trigger (owner or staff)",
                    Access::User,
                    vec![slug()],
                    vec![
                        ("200", ok("Updated", trigger())),
                        ("400", invalid()),
                        ("404", not_found("trigger")),
                        ("415", error("Not JSON")),
                    ],
                )
                .request_body(Some(trigger_body())),
            )
            .with(
                HttpMethod::Delete,
                operation(
                    "triggers",
                    "triggers_delete",
                    "Delete a trigger (owner or staff)",
                    Access::User,
                    vec![slug()],
                    vec![
                        ("204", ResponseBuilder::new().description("Deleted").build()),
                        ("404", not_found("trigger")),
                    ],
                ),
            ),
        ),
        (
            "/api/triggers/{slug}/events/",
            PathItem::new(
                HttpMethod::Get,
                operation(
                    "triggers",
                    "triggers_events",
                    "Events a trigger fired for, newest first (`_`, `-`: all the caller's)",
                    Access::User,
                    [path_param("slug", "Trigger slug, or `_` / `-` for all")]
                        .into_iter()
                        .chain(paging_params())
                        .collect(),
                    vec![
                        (
                            "200",
                            ok(
                                "Trigger events: all of them as an array (streamed) without                                  paging parameters, else a `Page`",
                                array_of(trigger_event()),
                            ),
                        ),
                        ("400", error("Malformed paging parameter")),
                        ("404", not_found("trigger")),
                    ],
                ),
            ),
        ),
        (
            "/api/triggers/{slug}/runs/",
            PathItem::new(
                HttpMethod::Get,
                operation(
                    "triggers",
                    "triggers_runs",
                    "Runs a trigger started, newest first (`_`, `-`: all the caller's triggers'; staff: all)",
                    Access::User,
                    vec![
                        path_param("slug", "Trigger slug, or `_` / `-` for all"),
                        query_param("limit", Type::Integer, "1-1000, default 1000"),
                    ],
                    vec![
                        (
                            "200",
                            ok(
                                "Runs",
                                openapi::schema::ArrayBuilder::new().items(
                                    openapi::schema::ArrayItems::RefOrSchema(Box::new(schema_ref(
                                        "Run",
                                    ))),
                                ),
                            ),
                        ),
                        ("404", not_found("trigger")),
                    ],
                ),
            ),
        ),
        (
            "/api/triggers/{slug}/events/{id}/",
            PathItem::new(
                HttpMethod::Get,
                operation(
                    "triggers",
                    "triggers_event",
                    "One trigger event",
                    Access::User,
                    vec![
                        path_param("slug", "Trigger slug, or `_` / `-` for all"),
                        path_param("id", "Trigger event id"),
                    ],
                    vec![
                        ("200", ok("The trigger event", trigger_event())),
                        ("404", not_found("trigger event")),
                    ],
                ),
            ),
        ),
        (
            "/api/triggertypes/",
            PathItem::new(
                HttpMethod::Get,
                operation(
                    "catalogue",
                    "triggertypes_list",
                    "Trigger types (non-staff: available ones)",
                    Access::OptionalUser,
                    vec![],
                    vec![("200", ok("Trigger types", array_of(trigger_type())))],
                ),
            ),
        ),
        (
            "/api/triggertypes/{slug}/",
            PathItem::new(
                HttpMethod::Get,
                operation(
                    "catalogue",
                    "triggertypes_read",
                    "One trigger type",
                    Access::OptionalUser,
                    vec![path_param("slug", "Trigger type slug")],
                    vec![
                        ("200", ok("The trigger type", trigger_type())),
                        ("404", not_found("trigger type")),
                    ],
                ),
            ),
        ),
        (
            "/api/pipelines/{pipeline}/runs/{run}/results/",
            PathItem::new(
                HttpMethod::Post,
                operation(
                    "callbacks",
                    "runs_results",
                    "Store a run's CWL output and usage report (the first delivery wins)",
                    Access::RunToken,
                    vec![
                        path_param("pipeline", "Pipeline id, or `_` / `-`"),
                        path_param("run", "Run id"),
                    ],
                    vec![
                        (
                            "200",
                            ok(
                                "`{id, stored, detail?}`",
                                object("`{id, stored: bool, detail?}`"),
                            ),
                        ),
                        ("400", error("Malformed body")),
                        ("404", not_found("run")),
                        ("413", error("Body too large")),
                        ("415", error("Not JSON")),
                    ],
                )
                .request_body(Some(json_body(
                    "`{\"output\": <CWL output or null>, \"usage_report\": <report or null>}`",
                    object("`{output, usage_report}`"),
                ))),
            ),
        ),
        (
            "/metrics",
            PathItem::new(
                HttpMethod::Get,
                operation(
                    "service",
                    "metrics",
                    "Prometheus metrics (text format 0.0.4; outside the `Host` check)",
                    Access::Anyone,
                    vec![],
                    vec![(
                        "200",
                        ResponseBuilder::new()
                            .description("Requests, CloudEvents, run launches and runs by status")
                            .content(
                                "text/plain; version=0.0.4",
                                json_content(ObjectBuilder::new().schema_type(Type::String)),
                            )
                            .build(),
                    )],
                ),
            ),
        ),
        (
            "/health/readiness",
            health(
                "health_readiness",
                "Readiness probe: 503 until the deferred start-up schema check has passed",
            ),
        ),
        (
            "/health/liveness",
            health("health_liveness", "Liveness probe"),
        ),
    ]
}

/// Builds the document (once; see [`document`]).
fn build() -> openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for (path, item) in described_elsewhere() {
        let mut item = item;
        for op in operations_mut(&mut item) {
            add_common_responses(op);
        }
        doc.paths.paths.insert(path.to_string(), item);
    }
    doc
}

fn cached() -> &'static openapi::OpenApi {
    static DOC: OnceLock<openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(build)
}

/// The OpenAPI document of the service (built once per process).
pub fn document() -> openapi::OpenApi {
    cached().clone()
}

/// The document as served: generated from the code by the test `embedded_document_is_current`
/// and checked in, so the binary carries 135 KB of JSON instead of the code that builds it
/// (about 0.55 MB of machine code), and nothing is built on the request path.
const EMBEDDED: &[u8] = include_bytes!("openapi.json");

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(openapi_json))
}

/// This document. Anyone may read it.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "service",
    operation_id = "openapi",
    responses((status = 200, description = "OpenAPI 3.1 document", body = serde_json::Value))
)]
async fn openapi_json() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Bytes::from_static(EMBEDDED),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        db::entities::{job_report, pipeline, pipeline_run, subworkflow, tag, user},
        http::serialize,
    };
    use chrono::Utc;
    use serde_json::{Value, json};
    use std::collections::BTreeSet;

    fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
        doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {schema}"))
            .keys()
            .cloned()
            .collect()
    }

    fn required(doc: &Value, schema: &str) -> BTreeSet<String> {
        doc["components"]["schemas"][schema]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    /// The served file is the document the code describes. `UPDATE_OPENAPI=1 cargo test
    /// embedded_document_is_current` rewrites it after a change.
    #[test]
    fn embedded_document_is_current() {
        let current = serde_json::to_value(document()).unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/openapi.json");
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            let mut text = serde_json::to_string_pretty(&current).unwrap();
            text.push('\n');
            std::fs::write(path, text).unwrap();
        }
        let embedded: Value = serde_json::from_slice(EMBEDDED).unwrap();
        assert!(
            embedded == current,
            "src/http/openapi.json is out of date: run `UPDATE_OPENAPI=1 cargo test embedded_document_is_current`"
        );
    }

    /// The schemas name exactly the keys the serialisers write, and mark as required every key
    /// that is always written (null or not).
    #[test]
    fn schemas_match_the_serialisers() {
        let doc = serde_json::to_value(document()).unwrap();
        let now = Utc::now();
        let p = pipeline::Model {
            id: 1,
            name: "p".into(),
            description: None,
            template: String::new(),
            version: None,
            owner_id: Some(2),
            created_at: Some(now),
            edited_at: None,
            default_inputs: None,
            quality_rules: None,
        };
        assert_eq!(
            keys(&serialize::pipeline(&p, &[], Some("alice"))),
            properties(&doc, "Pipeline")
        );
        assert_eq!(
            keys(&serialize::pipeline(&p, &[], None)),
            required(&doc, "Pipeline")
        );
        let r = pipeline_run::Model {
            id: 1,
            pipeline_id: 1,
            usage_report: json!(""),
            start_time: now,
            completion_time: None,
            status: crate::runs::RunStatus::Pending,
            status_message: None,
            inputs: None,
            parameters: None,
            output: None,
            executed_cwl: None,
            started_by_id: Some(2),
            triggered_by: None,
            callback_token_hash: None,
            k8s_namespace: None,
            k8s_job_name: None,
            launched_at: None,
            updated_at: now,
            digest: json!(""),
        };
        let alice = serialize::RunExtras {
            started_by: Some("alice"),
            ..Default::default()
        };
        assert_eq!(keys(&serialize::run(&r, alice)), properties(&doc, "Run"));
        assert_eq!(
            keys(&serialize::run(&r, Default::default())),
            required(&doc, "Run")
        );
        let j = job_report::Model {
            id: 1,
            run_id: 1,
            name: "ruff".into(),
            instance: String::new(),
            created_at: None,
            output: json!({}),
            digest: json!({}),
        };
        assert_eq!(
            keys(&serialize::job_report(&j)),
            properties(&doc, "JobReport")
        );
        let s = subworkflow::Model {
            slug: "s".into(),
            name: "s".into(),
            description: None,
            pipeline_step: String::new(),
            definition: String::new(),
            user_params: json!({}),
            version: "1".into(),
            status: "Stable".into(),
            available: true,
        };
        assert_eq!(
            keys(&serialize::tool(&s, &[], &[])),
            properties(&doc, "Tool")
        );
        let t = tag::Model {
            id: 1,
            name: "t".into(),
        };
        assert_eq!(keys(&serialize::tag(&t)), properties(&doc, "Tag"));
        let u = user::Model {
            id: 1,
            username: "u".into(),
            password: String::new(),
            email: String::new(),
            is_staff: false,
            is_active: true,
            date_joined: now,
        };
        assert_eq!(keys(&serialize::user(&u)), properties(&doc, "User"));
        for (value, schema) in [
            (serialize::job_report(&j), "JobReport"),
            (serialize::tool(&s, &[], &[]), "Tool"),
            (serialize::tag(&t), "Tag"),
            (serialize::user(&u), "User"),
        ] {
            assert_eq!(keys(&value), required(&doc, schema), "{schema}");
        }
    }

    #[test]
    fn every_operation_has_an_id_and_the_common_errors() {
        let doc = serde_json::to_value(document()).unwrap();
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default();
                assert!(
                    ids.insert(id.to_string()),
                    "{method} {path}: id {id:?} repeated"
                );
                for status in ["500", "503"] {
                    assert!(
                        op["responses"][status].is_object(),
                        "{method} {path} {status}"
                    );
                }
                assert!(op["responses"]["503"]["headers"]["Retry-After"].is_object());
            }
        }
    }
}
