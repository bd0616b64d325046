//! Typed extractors. A handler's signature says who may call it:
//! - [`CurrentUser`]: a valid access token of an active user (else 401);
//! - [`StaffUser`]: the same, and staff (else 403);
//! - [`MaybeUser`]: anonymous allowed, but a credential that is present must be valid;
//! - [`RunToken`]: a per-run callback token (checked against the run by the handler).

use super::jwt::{TokenError, TokenType};
use crate::{db::entities::user, error::AppError, state::AppState};
use axum::{extract::FromRequestParts, http::request::Parts};
use sea_orm::EntityTrait;

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

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        match bearer(parts)? {
            Some(token) => Ok(CurrentUser(user_from_token(state, token).await?)),
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
        match bearer(parts)? {
            Some(token) => Ok(MaybeUser(Some(user_from_token(state, token).await?))),
            None => Ok(MaybeUser(None)),
        }
    }
}

impl FromRequestParts<AppState> for RunToken {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, AppError> {
        match bearer(parts)? {
            Some(token) if token.starts_with(super::run_token::PREFIX) => {
                Ok(RunToken(token.into()))
            }
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
