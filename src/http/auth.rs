//! Typed authentication extractors. A handler's signature says who may call it:
//! - [`CurrentUser`]: an active user, authenticated by a Bearer token (ours, the IAM's, or a CI
//!   workload identity mapped by policy) or by a session cookie of the browser sign-in (else 401);
//! - [`StaffUser`]: the same, and staff (else 403);
//! - [`MaybeUser`]: anonymous allowed, but a credential that is present must be valid;
//! - [`RunToken`]: a per-run callback token (checked against the run by the handler).
//!
//! A Bearer header wins over cookies; a session that was signed out (on any replica, see
//! `auth::revocation`) is refused like an expired one. A state-changing request authenticated
//! by the session cookie must carry `X-CSRFToken` equal to the `csrftoken` cookie (and to the
//! token sealed in the session) and an `Origin` (or `Referer`) of `PUBLIC_URL`, else 403: the
//! double-submit and same-origin checks the reference gets from Django's CSRF middleware.

use crate::{
    auth::{
        jwt::{TokenError, TokenType},
        oidc::{EventSender, unverified_issuer},
        run_token,
        session::{self, CSRF_COOKIE, CSRF_HEADER, CookieError, SESSION_COOKIE, Session},
    },
    db::entities::user,
    error::AppError,
    state::AppState,
};
use axum::{extract::FromRequestParts, http::request::Parts};
use jsonwebtoken::Algorithm;
use sea_orm::EntityTrait;
use subtle::ConstantTimeEq;

/// An authenticated, active user.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub user::Model);

/// An authenticated, active staff user.
#[derive(Debug, Clone)]
pub struct StaffUser(pub user::Model);

/// An optional user: `None` for anonymous requests.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<user::Model>);

/// The bearer token of a pipeline pod calling back about its run.
#[derive(Debug, Clone)]
pub struct RunToken(pub String);

/// The bearer token of the request, if any (a malformed `Authorization` header is a 401).
pub(crate) fn bearer(parts: &Parts) -> Result<Option<&str>, AppError> {
    let Some(value) = parts.headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AppError::Unauthorized("Invalid Authorization header.".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(AppError::Unauthorized(
            "Authorization header must be 'Bearer <token>'.".into(),
        )),
    }
}

async fn user_from_token(state: &AppState, token: &str) -> Result<user::Model, AppError> {
    // Tokens of other issuers (the IAM, CI): asymmetric signatures and a foreign `iss`.
    if let Ok(header) = jsonwebtoken::decode_header(token)
        && !matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        )
        && let Some(iss) = unverified_issuer(token)
        && iss != state.config.auth.jwt_issuer
    {
        return state
            .identities
            .user_from_token(&state.db, token, &iss)
            .await;
    }
    let user_id = state
        .jwt
        .verify(token, TokenType::Access)
        .map_err(|e| match e {
            TokenError::Expired => AppError::Unauthorized("Token is expired".into()),
            TokenError::WrongType => AppError::Unauthorized("Token has wrong type".into()),
            TokenError::Invalid => {
                AppError::Unauthorized("Given token not valid for any token type".into())
            }
        })?;
    user_by_id(state, user_id).await
}

/// The active user `id` (cached for `AUTH_USER_CACHE_SECS`).
async fn user_by_id(state: &AppState, user_id: i64) -> Result<user::Model, AppError> {
    if let Some(u) = state.users.get(user_id) {
        return Ok(u);
    }
    match user::Entity::find_by_id(user_id).one(&state.db).await? {
        Some(u) if u.is_active => {
            state.users.insert(&u);
            Ok(u)
        }
        Some(_) => Err(AppError::Unauthorized("User is inactive".into())),
        None => Err(AppError::Unauthorized("User not found".into())),
    }
}

/// The valid session of the request's cookie. `Ok(None)`: no session cookie, or (when
/// `lenient`) one that is expired or invalid, which then counts as anonymous.
pub fn session_of(
    headers: &http::HeaderMap,
    state: &AppState,
    lenient: bool,
) -> Result<Option<Session>, AppError> {
    let Some(value) = session::cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    match state.sessions.open_session(value) {
        Ok(s) => Ok(Some(s)),
        Err(_) if lenient => Ok(None),
        Err(CookieError::Expired) => Err(AppError::Unauthorized(
            "The session has expired; sign in again.".into(),
        )),
        Err(CookieError::Invalid) => Err(AppError::Unauthorized(
            "The session cookie is not valid; sign in again.".into(),
        )),
    }
}

/// Django's CSRF rules for a request authenticated by the session cookie: safe methods pass;
/// others need `X-CSRFToken` = the `csrftoken` cookie = the session's token, and an `Origin`
/// (else `Referer`) of `PUBLIC_URL`.
fn check_csrf(parts: &Parts, state: &AppState, session: &Session) -> Result<(), AppError> {
    use http::Method;
    if matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return Ok(());
    }
    let header = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    check_csrf_token(&parts.headers, state, session, header)
}

/// The CSRF checks of a state-changing request on `session`, with the token the request
/// submitted (the `X-CSRFToken` header, or a form field where a form cannot set headers):
/// same origin as `PUBLIC_URL`, and submitted token = `csrftoken` cookie = session's token.
pub fn check_csrf_token(
    headers: &http::HeaderMap,
    state: &AppState,
    session: &Session,
    submitted: &str,
) -> Result<(), AppError> {
    let refuse = |why: &str| Err(AppError::Forbidden(format!("CSRF Failed: {why}")));
    let origin = match headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    {
        Some(o) => Some(o.trim_end_matches('/').to_ascii_lowercase()),
        None => headers
            .get(http::header::REFERER)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| url::Url::parse(r).ok())
            .map(|u| u.origin().ascii_serialization()),
    };
    match origin {
        None => return refuse("Origin checking failed - no Origin or Referer header."),
        Some(o) if o != state.config.server.public_url => {
            return refuse(&format!(
                "Origin checking failed - {o:?} does not match PUBLIC_URL."
            ));
        }
        Some(_) => {}
    }
    let cookie = session::cookie(headers, CSRF_COOKIE).unwrap_or("");
    if submitted.is_empty() || cookie.is_empty() {
        return refuse("CSRF token missing (the X-CSRFToken header and the csrftoken cookie).");
    }
    let same = |a: &str, b: &str| bool::from(a.as_bytes().ct_eq(b.as_bytes()));
    if !same(submitted, cookie) || !same(cookie, &session.csrf) {
        return refuse("CSRF token incorrect.");
    }
    Ok(())
}

/// The user of a request: Bearer first, else the session cookie (CSRF-checked). `lenient`:
/// an unusable session cookie counts as anonymous instead of a 401.
async fn user_of(
    parts: &Parts,
    state: &AppState,
    lenient: bool,
) -> Result<Option<user::Model>, AppError> {
    if let Some(token) = bearer(parts)? {
        return user_from_token(state, token).await.map(Some);
    }
    let Some(session) = session_of(&parts.headers, state, lenient)? else {
        return Ok(None);
    };
    if state
        .revocations
        .is_revoked(&state.db, &session.sid)
        .await?
    {
        if lenient {
            return Ok(None);
        }
        return Err(AppError::Unauthorized(
            "The session was signed out; sign in again.".into(),
        ));
    }
    check_csrf(parts, state, &session)?;
    user_by_id(state, session.uid).await.map(Some)
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        match user_of(parts, state, false).await? {
            Some(user) => Ok(CurrentUser(user)),
            None => Err(AppError::Unauthorized(
                "Authentication credentials were not provided.".into(),
            )),
        }
    }
}

impl FromRequestParts<AppState> for StaffUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        if user.is_staff {
            Ok(StaffUser(user))
        } else {
            Err(AppError::forbidden())
        }
    }
}

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        Ok(MaybeUser(user_of(parts, state, true).await?))
    }
}

impl FromRequestParts<AppState> for RunToken {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, AppError> {
        match bearer(parts)? {
            Some(token) if token.starts_with(run_token::PREFIX) => Ok(RunToken(token.into())),
            _ => Err(AppError::Unauthorized(
                "This endpoint requires the run's callback token.".into(),
            )),
        }
    }
}

impl user::Model {
    /// Staff, or the owner of something owned by `owner_id`.
    pub fn owns_or_staff(&self, owner_id: Option<i64>) -> bool {
        self.is_staff || owner_id == Some(self.id)
    }
}

impl FromRequestParts<AppState> for EventSender {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let Some(verifier) = &state.event_senders else {
            if !state.config.events.events_trust_network && !from_this_machine(parts) {
                tracing::warn!(
                    peer = %peer_of(parts).map_or_else(|| "unknown".to_string(), |p| p.to_string()),
                    "unauthenticated event from beyond this machine refused"
                );
                return Err(AppError::Forbidden(
                    "CloudEvents without sender authentication (EVENTS_AUTH=off) are accepted from this machine only: send them from loopback, or configure EVENTS_AUTH=oidc (EVENTS_TRUST_NETWORK=true accepts them from any peer).".into(),
                ));
            }
            return Ok(EventSender::unauthenticated());
        };
        let token = bearer(parts)?.ok_or_else(|| {
            AppError::Unauthorized(
                "Sender authentication is required: send an OIDC token of the sender as 'Authorization: Bearer <token>' (Knative's authentication-oidc feature).".into(),
            )
        })?;
        let subject = verifier.verify(token).await?;
        if !verifier.allowed.contains(&subject) {
            tracing::warn!(sender = %subject, "event from a sender that is not allowed");
            return Err(AppError::Forbidden(format!(
                "The sender '{subject}' may not send events to this service."
            )));
        }
        Ok(EventSender {
            may_name_user: verifier.user_senders.contains(&subject),
            subject: Some(subject),
        })
    }
}

/// The TCP peer of the request (absent when the router is served without connection info).
fn peer_of(parts: &Parts) -> Option<std::net::SocketAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0)
}

/// Headers a proxy adds for the client it forwards.
const FORWARDING_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

/// Whether a request comes from this machine itself: a loopback TCP peer that is not a proxy
/// forwarding someone else's request (a local reverse proxy or sidecar, such as Knative's
/// queue-proxy, connects from loopback on behalf of the network). Unknown peers are not.
pub fn from_this_machine(parts: &Parts) -> bool {
    peer_of(parts).is_some_and(|p| crate::config::is_loopback_ip(p.ip()))
        && !FORWARDING_HEADERS
            .iter()
            .any(|h| parts.headers.contains_key(*h))
}
