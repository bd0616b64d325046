//! `POST /api/token/` and `POST /api/token/refresh/`: JWTs for local users, with the reference's
//! (simplejwt) request and response shapes. Bodies may be JSON or form-urlencoded, as the
//! reference's parsers accepted both.
//!
//! Password checks run on the blocking pool; an unknown user is checked against a dummy hash so
//! unknown and known usernames take the same time. Imported Django hashes are replaced by
//! argon2id on the first successful login.
//!
//! Failed logins are limited per username and per client address
//! ([`crate::auth::login_limit`]); the limit is checked before any database or hashing work.

use crate::{
    auth::{
        jwt::{TokenError, TokenType},
        password::{self, Verified},
    },
    catalogue::users::MAX_USERNAME_LEN,
    db::entities::user,
    error::{AppError, AppResult},
    http::extract::JsonOrForm,
    http::fields::{Field, Problems},
    http::routes::{Routes, route},
    state::AppState,
};
use axum::{
    Extension, Json,
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use utoipa::ToSchema;

/// Longest accepted password: bounds the hashing work one request can cause.
pub const MAX_PASSWORD_LEN: usize = 4096;

/// Longest accepted token string.
const MAX_TOKEN_LEN: usize = 4096;

/// Routes of this resource.
pub fn routes<R: Routes>(routes: R) -> R {
    routes.add(route!(obtain)).add(route!(refresh))
}

/// `POST /api/token/` body (JSON or `application/x-www-form-urlencoded`). Each field is read
/// as sent, so that every missing, blank, too long or non-string field gets DRF's message.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 150)]
    username: Field<String>,
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 4096)]
    password: Field<String>,
}

impl TokenRequest {
    /// The username and password, or DRF's 400 naming each bad field.
    fn credentials(self) -> AppResult<(String, String)> {
        let mut problems = Problems::default();
        let username = problems.take("username", self.username.required(MAX_USERNAME_LEN));
        let password = problems.take("password", self.password.required(MAX_PASSWORD_LEN));
        problems.finish()?;
        // Both are set when no field had a problem.
        Ok(username.zip(password).unwrap_or_default())
    }
}

/// `POST /api/token/refresh/` body (JSON or form), read like [`TokenRequest`].
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// A refresh token from `POST /api/token/`.
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 4096)]
    refresh: Field<String>,
}

/// A new token pair.
#[derive(Serialize, ToSchema)]
pub struct TokenPair {
    /// Refresh token (JWT, HS256, `token_type: refresh`).
    refresh: String,
    /// Access token (JWT, HS256, `token_type: access`): send it as `Authorization: Bearer`.
    access: String,
}

/// A new access token.
#[derive(Serialize, ToSchema)]
pub struct AccessToken {
    /// Access token (JWT).
    access: String,
}

/// simplejwt's rejection of a refresh token.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"detail": "Token is expired", "code": "token_not_valid"}))]
pub struct TokenNotValid {
    /// `Token is invalid`, `Token is expired` or `Token has wrong type`.
    #[schema(value_type = String)]
    detail: &'static str,
    /// Always `token_not_valid`.
    #[schema(value_type = String)]
    code: &'static str,
}

fn bad_credentials() -> AppError {
    AppError::Unauthorized("No active account found with the given credentials".into())
}

/// The client's address for per-address limits: the first `X-Forwarded-For` hop when
/// `TRUSTED_PROXY_HEADERS` is on and it parses, else the TCP peer (absent when the server was
/// not started with connection info).
pub fn client_address(
    trust_proxy_headers: bool,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Option<IpAddr> {
    let forwarded = trust_proxy_headers
        .then(|| headers.get("x-forwarded-for")?.to_str().ok())
        .flatten()
        .and_then(|v| {
            let first = v.split(',').next()?.trim();
            // Some proxies write `ip:port` or `[v6]:port`.
            first
                .parse::<IpAddr>()
                .ok()
                .or_else(|| first.parse::<SocketAddr>().ok().map(|s| s.ip()))
        });
    forwarded.or(peer.map(|p| p.ip()))
}

fn too_many_attempts(retry_after: u64) -> AppError {
    AppError::TooManyRequests {
        detail: format!("Too many failed login attempts; try again in {retry_after} seconds."),
        retry_after,
    }
}

/// `POST /api/token/` `{username, password}` -> `{refresh, access}`.
///
/// Failed attempts are limited per username and per client address (429 with `Retry-After`).
#[utoipa::path(
    post,
    path = "/api/token/",
    tag = "tokens",
    operation_id = "token_obtain",
    request_body(content(
        (TokenRequest = "application/json"),
        (TokenRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "A new token pair", body = TokenPair),
        (status = 400, description = "Missing, blank or too long fields", body = crate::http::openapi::FieldErrors),
        (status = 401, description = "Wrong password, unknown or inactive user", body = crate::http::openapi::ErrorDetail),
        (status = 413, description = "Body too large", body = crate::http::openapi::ErrorDetail),
        (status = 415, description = "Neither JSON nor a form", body = crate::http::openapi::ErrorDetail),
        (status = 429, description = "Too many failed attempts for this username or address", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn obtain(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    JsonOrForm(body): JsonOrForm<TokenRequest>,
) -> AppResult<Json<TokenPair>> {
    let (username, plain) = body.credentials()?;
    let username = &username;
    let addr = client_address(
        state.config.server.trusted_proxy_headers,
        &headers,
        peer.map(|Extension(ConnectInfo(a))| a),
    );
    let attempt = state
        .login_limiter
        .begin(username, addr)
        .map_err(|l| too_many_attempts(l.retry_after))?;
    let found = user::Entity::find()
        .filter(user::Column::Username.eq(username.as_str()))
        .one(&state.db)
        .await?;
    let stored = found.as_ref().map_or_else(
        || password::dummy_hash().to_string(),
        |u| u.password.clone(),
    );
    // Waits for a hashing slot: concurrent hashes are bounded in the password module.
    let verdict = password::verify_blocking(plain.clone(), stored).await;
    let user = match found {
        Some(u) if u.is_active && verdict != Verified::No => u,
        _ => {
            attempt.failed();
            return Err(bad_credentials());
        }
    };
    attempt.succeeded();
    if verdict == Verified::YesRehash {
        upgrade_hash(&state, &user, plain.clone()).await;
    }
    Ok(Json(TokenPair {
        refresh: state.jwt.issue(user.id, TokenType::Refresh),
        access: state.jwt.issue(user.id, TokenType::Access),
    }))
}

/// Replaces a legacy (Django) hash by argon2id. A failure only costs a later retry.
async fn upgrade_hash(state: &AppState, user: &user::Model, plain: String) {
    let result = async {
        let hash = password::hash_blocking(plain).await?;
        user::ActiveModel {
            id: Set(user.id),
            password: Set(hash),
            ..Default::default()
        }
        .update(&state.db)
        .await?;
        state.users.evict(user.id);
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => tracing::info!(user_id = user.id, "password hash upgraded to argon2id"),
        Err(e) => tracing::warn!(user_id = user.id, error = %e, "could not upgrade password hash"),
    }
}

/// A 401 in simplejwt's shape: `{"detail", "code": "token_not_valid"}`.
fn token_not_valid(detail: &'static str) -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        Json(TokenNotValid {
            detail,
            code: "token_not_valid",
        }),
    )
        .into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// `POST /api/token/refresh/` `{refresh}` -> `{access}`. The user must still exist and be active.
#[utoipa::path(
    post,
    path = "/api/token/refresh/",
    tag = "tokens",
    operation_id = "token_refresh",
    request_body(content(
        (RefreshRequest = "application/json"),
        (RefreshRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "A new access token", body = AccessToken),
        (status = 400, description = "Missing or blank field", body = crate::http::openapi::FieldErrors),
        (status = 401, description = "Invalid, expired or wrong-type token, or inactive user", body = TokenNotValid),
        (status = 413, description = "Body too large", body = crate::http::openapi::ErrorDetail),
        (status = 415, description = "Neither JSON nor a form", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn refresh(
    State(state): State<AppState>,
    JsonOrForm(body): JsonOrForm<RefreshRequest>,
) -> AppResult<Response> {
    let mut problems = Problems::default();
    let token = problems.take("refresh", body.refresh.required(MAX_TOKEN_LEN));
    problems.finish()?;
    // Set when no field had a problem.
    let token = token.unwrap_or_default();
    let user_id = match state.jwt.verify(&token, TokenType::Refresh) {
        Ok(id) => id,
        Err(TokenError::WrongType) => return Ok(token_not_valid("Token has wrong type")),
        Err(TokenError::Expired) => return Ok(token_not_valid("Token is expired")),
        Err(TokenError::Invalid) => return Ok(token_not_valid("Token is invalid")),
    };
    match user::Entity::find_by_id(user_id).one(&state.db).await? {
        Some(u) if u.is_active => Ok(Json(AccessToken {
            access: state.jwt.issue(u.id, TokenType::Access),
        })
        .into_response()),
        _ => Ok(token_not_valid("Token is invalid")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_errors_follow_drf() {
        let read = |v: serde_json::Value| {
            serde_json::from_value::<TokenRequest>(v)
                .unwrap()
                .credentials()
        };
        assert_eq!(
            read(json!({"username": "u", "password": ""}))
                .unwrap_err()
                .body(),
            json!({"password": ["This field may not be blank."]})
        );
        assert_eq!(
            read(json!({"username": "x".repeat(151), "password": 1}))
                .unwrap_err()
                .body(),
            json!({
                "username": ["Ensure this field has no more than 150 characters."],
                "password": ["Not a valid string."],
            })
        );
        assert_eq!(
            read(json!({"username": null})).unwrap_err().body(),
            json!({
                "username": ["This field is required."],
                "password": ["This field is required."],
            })
        );
        assert_eq!(
            read(json!({"username": "u", "password": "p", "other": 1})).unwrap(),
            ("u".to_string(), "p".to_string())
        );
    }

    #[test]
    fn client_address_trusts_forwarded_for_only_when_told() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, 10.0.0.1"),
        );
        assert_eq!(
            client_address(false, &h, Some(peer)),
            Some(peer.ip()),
            "ignored by default"
        );
        assert_eq!(
            client_address(true, &h, Some(peer)),
            "203.0.113.7".parse().ok()
        );
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("[2001:db8::1]:443"),
        );
        assert_eq!(client_address(true, &h, None), "2001:db8::1".parse().ok());
        h.insert("x-forwarded-for", HeaderValue::from_static("unknown"));
        assert_eq!(client_address(true, &h, Some(peer)), Some(peer.ip()));
        assert_eq!(client_address(true, &HeaderMap::new(), None), None);
    }
}
