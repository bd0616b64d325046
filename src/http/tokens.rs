//! `POST /api/token/` and `POST /api/token/refresh/`: JWTs for local users, with the reference's
//! (simplejwt) request and response shapes. Bodies may be JSON or form-urlencoded, as the
//! reference's parsers accepted both.
//!
//! Password checks run on the blocking pool; an unknown user is checked against a dummy hash so
//! unknown and known usernames take the same time. Imported Django hashes are replaced by
//! argon2id on the first successful login.

use crate::{
    auth::{
        jwt::{TokenError, TokenType},
        password::{self, Verified},
    },
    catalogue::users::MAX_USERNAME_LEN,
    db::entities::user,
    error::{AppError, AppResult, FieldErrors},
    http::extract::{body_rejection, is_json_content_type, parse_json},
    state::AppState,
};
use axum::{
    Json, Router,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Map, Value, json};

/// Longest accepted password: bounds the hashing work one request can cause.
pub const MAX_PASSWORD_LEN: usize = 4096;

/// Longest accepted token string.
const MAX_TOKEN_LEN: usize = 4096;

/// Bounds concurrent password hashing: each argon2id check holds 19 MiB and a core for tens of
/// milliseconds, and the blocking pool would otherwise run hundreds at once under a login flood.
/// Extra requests wait their turn (the request timeout still applies).
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores.max(2))
    })
}

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/token", post(obtain))
        .route("/api/token/refresh", post(refresh))
}

/// Reads a JSON object or a form-urlencoded body into a map of fields.
fn fields(headers: &HeaderMap, body: &Bytes) -> AppResult<Map<String, Value>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if is_json_content_type(content_type) {
        match parse_json::<Value>(body)? {
            Value::Object(m) => Ok(m),
            other => Err(AppError::field(
                "non_field_errors",
                format!(
                    "Invalid data. Expected a dictionary, but got {}.",
                    kind(&other)
                ),
            )),
        }
    } else if mime == "application/x-www-form-urlencoded" {
        Ok(url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect())
    } else {
        Err(AppError::UnsupportedMediaType(format!(
            "Unsupported media type \"{content_type}\" in request; send application/json."
        )))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "list",
        Value::String(_) => "str",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        Value::Object(_) => "dict",
    }
}

/// Takes the required string fields `names` from `body`, collecting DRF-style field errors.
fn required_strings(body: &Map<String, Value>, names: &[(&str, usize)]) -> AppResult<Vec<String>> {
    let mut errors = FieldErrors::new();
    let mut out = Vec::with_capacity(names.len());
    for (name, max) in names {
        let msg = match body.get(*name) {
            None | Some(Value::Null) => Some("This field is required.".to_string()),
            Some(Value::String(s)) if s.is_empty() => {
                Some("This field may not be blank.".to_string())
            }
            Some(Value::String(s)) if s.chars().count() > *max => Some(format!(
                "Ensure this field has no more than {max} characters."
            )),
            Some(Value::String(s)) => {
                out.push(s.clone());
                None
            }
            Some(_) => Some("Not a valid string.".to_string()),
        };
        if let Some(msg) = msg {
            errors.insert((*name).to_string(), vec![msg]);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(AppError::Validation(errors))
    }
}

fn bad_credentials() -> AppError {
    AppError::Unauthorized("No active account found with the given credentials".into())
}

/// `POST /api/token/` `{username, password}` -> `{refresh, access}`.
async fn obtain(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<Value>> {
    let body = body.map_err(body_rejection)?;
    let fields = fields(&headers, &body)?;
    let values = required_strings(
        &fields,
        &[
            ("username", MAX_USERNAME_LEN),
            ("password", MAX_PASSWORD_LEN),
        ],
    )?;
    let (username, plain) = (&values[0], &values[1]);
    let found = user::Entity::find()
        .filter(user::Column::Username.eq(username.as_str()))
        .one(&state.db)
        .await?;
    let stored = found.as_ref().map_or_else(
        || password::dummy_hash().to_string(),
        |u| u.password.clone(),
    );
    let verdict = {
        let _slot = hashing_slots()
            .acquire()
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
        password::verify_blocking(plain.clone(), stored).await
    };
    let user = match found {
        Some(u) if u.is_active && verdict != Verified::No => u,
        _ => return Err(bad_credentials()),
    };
    if verdict == Verified::YesRehash {
        upgrade_hash(&state, &user, plain.clone()).await;
    }
    Ok(Json(json!({
        "refresh": state.jwt.issue(user.id, TokenType::Refresh),
        "access": state.jwt.issue(user.id, TokenType::Access),
    })))
}

/// Replaces a legacy (Django) hash by argon2id. A failure only costs a later retry.
async fn upgrade_hash(state: &AppState, user: &user::Model, plain: String) {
    let result = async {
        let hash = {
            let _slot = hashing_slots().acquire().await?;
            password::hash_blocking(plain).await?
        };
        user::ActiveModel {
            id: Set(user.id),
            password: Set(hash),
            ..Default::default()
        }
        .update(&state.db)
        .await?;
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => tracing::info!(user_id = user.id, "password hash upgraded to argon2id"),
        Err(e) => tracing::warn!(user_id = user.id, error = %e, "could not upgrade password hash"),
    }
}

/// A 401 in simplejwt's shape: `{"detail", "code": "token_not_valid"}`.
fn token_not_valid(detail: &str) -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        Json(json!({"detail": detail, "code": "token_not_valid"})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// `POST /api/token/refresh/` `{refresh}` -> `{access}`. The user must still exist and be active.
async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Response> {
    let body = body.map_err(body_rejection)?;
    let fields = fields(&headers, &body)?;
    let token = required_strings(&fields, &[("refresh", MAX_TOKEN_LEN)])?.remove(0);
    let user_id = match state.jwt.verify(&token, TokenType::Refresh) {
        Ok(id) => id,
        Err(TokenError::WrongType) => return Ok(token_not_valid("Token has wrong type")),
        Err(TokenError::Expired) => return Ok(token_not_valid("Token is expired")),
        Err(TokenError::Invalid) => return Ok(token_not_valid("Token is invalid")),
    };
    match user::Entity::find_by_id(user_id).one(&state.db).await? {
        Some(u) if u.is_active => Ok(Json(json!({
            "access": state.jwt.issue(u.id, TokenType::Access),
        }))
        .into_response()),
        _ => Ok(token_not_valid("Token is invalid")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_follow_drf() {
        let body = json!({"username": "u", "password": ""});
        let err = required_strings(
            body.as_object().unwrap(),
            &[("username", 5), ("password", 5)],
        )
        .unwrap_err();
        assert_eq!(
            err.body(),
            json!({"password": ["This field may not be blank."]})
        );
        let body = json!({"username": "toolong"});
        let err = required_strings(
            body.as_object().unwrap(),
            &[("username", 5), ("password", 5)],
        )
        .unwrap_err();
        assert_eq!(
            err.body(),
            json!({
                "username": ["Ensure this field has no more than 5 characters."],
                "password": ["This field is required."],
            })
        );
    }

    #[test]
    fn form_bodies_are_accepted() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let m = fields(&h, &Bytes::from_static(b"username=a%40b&password=p+w")).unwrap();
        assert_eq!(m["username"], "a@b");
        assert_eq!(m["password"], "p w");
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(
            fields(&h, &Bytes::from_static(b"x")).unwrap_err().status(),
            415
        );
    }
}
