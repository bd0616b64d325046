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
    db::entities::received_event,
    error::{AppError, AppResult},
    events::{decode::IncomingEvent, dispatch, received_event_json},
    http::auth::StaffUser,
    http::{
        middleware,
        paging::{ListQuery, ListUrl, Listing},
    },
    state::AppState,
};
use axum::{
    Router,
    body::Bytes,
    extract::{FromRequest, Path, RawQuery, Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use futures::future::BoxFuture;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::Value;

/// `/api/events/`: the Knative Trigger's subscriber path and the staff list of received
/// events. It sits with the REST routes (the browser frontend reads the list, so CORS
/// preflights must be answered); the `Host` check exempts its `POST`.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/events", post(receive).get(list))
}

/// The other CloudEvents ingress routes, `POST /` and `POST /<namespace>/<broker>`, which
/// skip CORS and the `Host` check (see [`crate::http::router`]): brokers deliver with whatever
/// `Host` their subscriber URI has, and browsers cannot post CloudEvents cross-origin without
/// a preflight, which is never granted.
pub fn ingress_router() -> Router<AppState> {
    Router::new()
        .route("/", post(receive))
        // Other methods on two-segment paths stay plain 404s.
        .route(
            "/{namespace}/{broker}",
            post(receive_broker_path).fallback(middleware::not_found),
        )
}

/// Decodes, dispatches and replies with a binary-mode CloudEvent (errors: plain JSON).
async fn receive(
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
    receive(State(state), sender, event).await
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

fn serialise_events(
    _db: &DatabaseConnection,
    rows: Vec<received_event::Model>,
) -> BoxFuture<'_, AppResult<Vec<(i64, Value)>>> {
    Box::pin(async move {
        Ok(rows
            .iter()
            .map(|e| (e.id, received_event_json(e)))
            .collect())
    })
}

/// `GET /api/events/?type=<prefix>&source=&outcome=`: staff only, newest first; the whole list
/// streamed, or pages (see [`crate::http::paging`]).
async fn list(
    State(state): State<AppState>,
    StaffUser(_): StaffUser,
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
