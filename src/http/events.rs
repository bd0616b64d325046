//! CloudEvents ingress routes: `POST /` (where `kn func invoke` sends), `POST /api/events/` (the
//! Knative Trigger's subscriber path), `POST /<namespace>/<broker>` (broker-ingress shaped, so
//! the broker test scripts work when pointed at the service), and the staff list of received
//! events, `GET /api/events/?type=<prefix>` (newest first, paged like every growing list).
//!
//! With `EVENTS_AUTH=oidc` every delivery is authenticated first ([`EventSender`]: 401 without
//! a valid sender token, 403 for a sender that is not allowed), before the body is even read;
//! a `pipeline.execute` event that names a `user` additionally needs a sender allowed to do so.
//! With `EVENTS_AUTH=off` deliveries are accepted from this machine only (403 otherwise,
//! before the body is read) unless `EVENTS_TRUST_NETWORK=true`.

use crate::{
    auth::oidc::EventSender,
    db::{entities::received_event, iso},
    error::{AppError, AppResult},
    events::{decode::IncomingEvent, dispatch},
    http::auth::StaffUser,
    http::{
        middleware,
        openapi::ErrorDetail,
        paging::{ListQuery, ListUrl, Listing, PageParams},
        routes::{Routes, route},
    },
    state::AppState,
};
use axum::{
    body::Bytes,
    extract::{FromRequest, Path, RawQuery, Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::MethodRouter,
};
use futures::future::BoxFuture;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, IntoResponses, ToSchema};

/// The shapes of a list of `ReceivedEvent`, for the OpenAPI document.
type ListedReceivedEvents = crate::http::paging::Listed<ReceivedEvent>;

/// `/api/events/`: the Knative Trigger's subscriber path and the staff list of received
/// events. It sits with the REST routes (the browser frontend reads the list, so CORS
/// preflights must be answered); the `Host` check exempts its `POST`.
pub fn routes<R: Routes>(routes: R) -> R {
    routes.add(route!(receive)).add(route!(list))
}

/// The other CloudEvents ingress routes, `POST /` and `POST /<namespace>/<broker>`, which
/// skip CORS and the `Host` check (see [`crate::http::router`]): brokers deliver with whatever
/// `Host` their subscriber URI has, and browsers cannot post CloudEvents cross-origin without
/// a preflight, which is never granted.
pub fn ingress_routes<R: Routes>(routes: R) -> R {
    routes
        .add(route!(receive_root))
        .add(route!(receive_broker_path))
        // Other methods on two-segment paths stay plain 404s.
        .not_an_operation(
            "/{namespace}/{broker}",
            MethodRouter::new().fallback(middleware::not_found),
        )
}

/// A CloudEvent 1.0 in structured mode (`Content-Type: application/cloudevents+json`), as the
/// CloudEvents SDK reads it. In binary mode the attributes are `ce-*` headers (`ce-id`,
/// `ce-source`, `ce-type`, `ce-specversion`, ...) and the body is the data. Types handled:
/// `*.pipeline.execute`, `*.health`, Kubernetes Job events from an ApiServerSource, the
/// commit-status wake-up (`dev.knative.sources.ping`,
/// `org.eoepca.application-quality.events.wakeup`), and any type a trigger's CQL2-JSON filter
/// matches. Redelivery of an already seen (`source`, `id`) is harmless.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({
    "specversion": "1.0",
    "id": "b7c1-0001",
    "source": "https://ci.example.org",
    "type": "org.eoepca.application-quality.pipeline.execute",
    "data": {"pipeline_id": 2, "parameters": {}}
}))]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// With `source`, the key of exactly-once processing (at most 255 characters).
    pub id: String,
    /// At most 255 characters.
    pub source: String,
    /// At most 255 characters.
    #[serde(rename = "type")]
    pub ty: String,
    pub subject: Option<String>,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub time: Option<String>,
    pub datacontenttype: Option<String>,
    /// The user a `pipeline.execute` event starts its run as (senders in
    /// `EVENTS_USER_SENDERS` only).
    pub user: Option<String>,
    /// The event's data: for `pipeline.execute`, `{pipeline_id, parameters?, user?}`.
    pub data: Option<Value>,
}

/// What the ingress answers. Every failure is `{"detail": ...}`.
#[derive(IntoResponses)]
#[allow(dead_code)]
enum IngressResponses {
    /// Processed: a binary-mode reply CloudEvent (`ce-type` ends in `.ok`, `.accepted`,
    /// `.duplicate` or `.ignored`; `ce-subject` is the run id, or the run ids, when there are
    /// any), its data the body.
    #[response(status = 200)]
    Processed(crate::events::reply::ReplyData<'static>),
    /// Not a valid CloudEvent.
    #[response(status = 400)]
    NotAnEvent(ErrorDetail),
    /// Sender authentication is on (`EVENTS_AUTH=oidc`) and the sender's OIDC token is missing
    /// or invalid.
    #[response(status = 401)]
    Unauthenticated(ErrorDetail),
    /// The sender may not send events, or may not name a `user` (`EVENTS_ALLOWED_SENDERS`,
    /// `EVENTS_USER_SENDERS`); or, without sender authentication, the event comes from beyond
    /// this machine and `EVENTS_TRUST_NETWORK` is off.
    #[response(status = 403)]
    Forbidden(ErrorDetail),
    /// The same event is being processed; retry later.
    #[response(status = 409)]
    InProgress(ErrorDetail),
    /// Body too large.
    #[response(status = 413)]
    TooLarge(ErrorDetail),
    /// Unsupported content type (batched CloudEvents among them).
    #[response(status = 415)]
    UnsupportedType(ErrorDetail),
    /// Well-formed but cannot succeed (unknown user, pipeline or parameters).
    #[response(status = 422)]
    Unprocessable(ErrorDetail),
    /// The user the run would start as (the named user, or a matching trigger's owner) has as
    /// many runs executing or waiting as allowed (`RUNS_MAX_ACTIVE_PER_USER`,
    /// `RUNS_MAX_QUEUED_PER_USER`); nothing was recorded, retried.
    #[response(status = 429)]
    TooManyRuns(ErrorDetail),
    /// The database, the Kubernetes API or the signing keys of sender tokens are unavailable;
    /// retried.
    #[response(status = 503)]
    Unavailable(ErrorDetail),
}

/// `POST /api/events/`: the Knative Trigger's subscriber path.
#[utoipa::path(
    post,
    path = "/api/events/",
    tag = "events",
    operation_id = "events_receive",
    summary = "Receive a CloudEvent (Trigger subscriber)",
    request_body(content(
        (CloudEvent = "application/cloudevents+json"),
        (CloudEvent = "application/json"),
    )),
    responses(IngressResponses)
)]
async fn receive(state: State<AppState>, sender: EventSender, event: IncomingEvent) -> Response {
    handle(state, sender, event).await
}

/// `POST /`: where `kn func invoke` sends.
#[utoipa::path(
    post,
    path = "/",
    tag = "events",
    operation_id = "events_receive_root",
    summary = "Receive a CloudEvent (`kn func invoke`)",
    request_body(content(
        (CloudEvent = "application/cloudevents+json"),
        (CloudEvent = "application/json"),
    )),
    responses(IngressResponses)
)]
async fn receive_root(
    state: State<AppState>,
    sender: EventSender,
    event: IncomingEvent,
) -> Response {
    handle(state, sender, event).await
}

/// Decodes, dispatches and replies with a binary-mode CloudEvent (errors: plain JSON).
async fn handle(
    State(state): State<AppState>,
    sender: EventSender,
    event: IncomingEvent,
) -> Response {
    if let Err(e) = check_user_naming(&sender, &event) {
        return e.into_response();
    }
    let probe = dispatch::is_health(&event.ty);
    let mut response = match dispatch::handle(&state, event).await {
        Ok(reply) => reply.into_response_with(&state.config),
        Err(e) => e.into_response(),
    };
    if probe {
        response.extensions_mut().insert(middleware::QuietRequest);
    }
    response
}

/// `POST /<namespace>/<broker>`: broker-ingress shaped, so the broker test scripts work when
/// pointed at the service.
#[utoipa::path(
    post,
    path = "/{namespace}/{broker}",
    tag = "events",
    operation_id = "events_receive_broker_path",
    summary = "Receive a CloudEvent at a broker-ingress shaped path (namespaces `api` and `oidc` are 404)",
    params(
        ("namespace" = String, Path, description = "Any namespace name but `api` and `oidc`"),
        ("broker" = String, Path, description = "Any broker name"),
    ),
    request_body(content(
        (CloudEvent = "application/cloudevents+json"),
        (CloudEvent = "application/json"),
    )),
    responses(IngressResponses)
)]
async fn receive_broker_path(
    State(state): State<AppState>,
    Path((namespace, _broker)): Path<(String, String)>,
    sender: EventSender,
    event: IncomingEvent,
) -> Response {
    // `/api/...` and `/oidc/...` are ours; their unknown paths stay 404s, never events.
    if namespace == "api" || namespace == "oidc" {
        return AppError::NotFound("Not found.".into()).into_response();
    }
    handle(State(state), sender, event).await
}

/// Starting a run as the user named in `ce-user` is impersonation: only senders trusted with
/// it (`EVENTS_USER_SENDERS`) may do it. Refused before dispatch, so nothing is recorded.
fn check_user_naming(sender: &EventSender, event: &IncomingEvent) -> Result<(), AppError> {
    if sender.may_name_user
        || event.user.is_none()
        || !dispatch::EXECUTE_TYPES.contains(&event.ty.as_str())
    {
        return Ok(());
    }
    tracing::warn!(
        sender = sender.subject.as_deref().unwrap_or(""),
        "pipeline.execute naming a user from a sender not allowed to"
    );
    Err(AppError::Forbidden(format!(
        "The sender '{}' may not name a user: pipeline.execute events with a 'user' attribute are accepted only from the senders in EVENTS_USER_SENDERS.",
        sender.subject.as_deref().unwrap_or("")
    )))
}

/// A received CloudEvent, as staff see it (`GET /api/events/`).
#[derive(Serialize, ToSchema)]
pub struct ReceivedEvent {
    pub id: i64,
    pub source: String,
    /// The CloudEvent's `id`.
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub subject: Option<String>,
    #[schema(format = DateTime)]
    pub time: Option<String>,
    /// The `user` extension attribute, as sent.
    pub user: Option<String>,
    /// `accepted`, `ignored`, `rejected` or `processing`.
    pub outcome: String,
    pub message: Option<String>,
    /// Ids of the runs the event created.
    #[schema(value_type = Vec<i64>)]
    pub run_ids: Value,
    pub pipeline_id: Option<i64>,
    #[schema(format = DateTime)]
    pub received_at: String,
    /// The event's data.
    pub data: Option<Value>,
    /// The request headers, without credentials.
    #[schema(value_type = Object)]
    pub headers: Value,
}

impl From<received_event::Model> for ReceivedEvent {
    fn from(e: received_event::Model) -> Self {
        ReceivedEvent {
            id: e.id,
            source: e.source,
            event_id: e.event_id,
            event_type: e.event_type,
            subject: e.subject,
            time: e.event_time.as_ref().map(iso),
            user: e.user,
            outcome: e.outcome,
            message: e.message,
            run_ids: e.run_ids,
            pipeline_id: e.pipeline_id,
            received_at: iso(&e.received_at),
            data: e.data,
            headers: e.headers,
        }
    }
}

fn serialise_events(
    _db: &DatabaseConnection,
    rows: Vec<received_event::Model>,
) -> BoxFuture<'_, AppResult<Vec<(i64, ReceivedEvent)>>> {
    Box::pin(async move { Ok(rows.into_iter().map(|e| (e.id, e.into())).collect()) })
}

/// Filters of the received-event list (all optional, combined with AND).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct EventFilters {
    /// Event type prefix.
    #[param(rename = "type")]
    ty: Option<String>,
    /// Exact event source.
    source: Option<String>,
    /// Exact outcome.
    outcome: Option<String>,
    /// Received at or after this time (RFC 3339).
    received_after: Option<String>,
    /// Received before this time (RFC 3339).
    received_before: Option<String>,
}

/// `GET /api/events/?type=<prefix>&source=&outcome=`: staff only, newest first; the whole list
/// streamed, or pages (see [`crate::http::paging`]).
#[utoipa::path(
    get,
    path = "/api/events/",
    tag = "events",
    operation_id = "events_list",
    summary = "Received events, newest first (staff)",
    security(("bearer" = [])),
    params(EventFilters, PageParams),
    responses(
        (status = 200, description = "Received events: an array without paging parameters, a page with `limit`/`offset`, a keyset page with `cursor`", body = inline(ListedReceivedEvents)),
        (status = 400, description = "Malformed filter or paging parameter", body = ErrorDetail),
        (status = 401, description = "Missing or invalid credentials", body = ErrorDetail),
        (status = 403, description = "The caller is not staff", body = ErrorDetail),
    )
)]
async fn list(
    State(state): State<AppState>,
    _staff: StaffUser,
    RawQuery(raw): RawQuery,
    url: ListUrl,
) -> AppResult<Response> {
    let query = ListQuery::parse(raw.as_deref())?;
    let mut select = received_event::Entity::find();
    if let Some(prefix) = query.text("type", 255)? {
        select = select.filter(received_event::Column::EventType.starts_with(prefix));
    }
    if let Some(source) = query.text("source", 255)? {
        select = select.filter(received_event::Column::Source.eq(source));
    }
    if let Some(outcome) = query.text("outcome", 20)? {
        select = select.filter(received_event::Column::Outcome.eq(outcome));
    }
    if let Some(after) = query.time("received_after")? {
        select = select.filter(received_event::Column::ReceivedAt.gte(after));
    }
    if let Some(before) = query.time("received_before")? {
        select = select.filter(received_event::Column::ReceivedAt.lt(before));
    }
    Listing {
        select,
        id: received_event::Column::Id,
        descending: true,
        serialise: serialise_events,
    }
    .respond(&state.db, &query, &url)
    .await
}

impl FromRequest<AppState> for IncomingEvent {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, AppError> {
        let headers = req.headers().clone();
        IncomingEvent::check_headers(&headers)?;
        let limit = state.config.server.max_body_bytes;
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge(limit)
            } else {
                AppError::BadRequest(format!("Could not read the request body: {e}"))
            }
        })?;
        IncomingEvent::decode_owned(headers, body.into())
    }
}
