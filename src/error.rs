//! The one error type of the service and its one mapping to HTTP statuses and JSON bodies.
//!
//! Bodies follow the reference's DRF shapes: `{"detail": "..."}`, or `{"field": ["msg"]}` for
//! validation errors. Internal details are logged, never sent.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use sea_orm::DbErr;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Field name -> messages, rendered as DRF does.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400 with `{"detail"}`.
    #[error("{0}")]
    BadRequest(String),
    /// 400 with field errors.
    #[error("validation failed: {0:?}")]
    Validation(FieldErrors),
    /// 401 with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405.
    #[error("Method not allowed.")]
    MethodNotAllowed,
    /// 409: the request conflicts with the current state (retryable by Knative).
    #[error("{0}")]
    Conflict(String),
    /// 413; carries the limit in bytes when known (0 otherwise).
    #[error("{}", too_large_message(*.0))]
    PayloadTooLarge(usize),
    /// 413 with `{"detail"}`: a quota in bytes is used up (the detail says which).
    #[error("{0}")]
    QuotaBytes(String),
    /// 429 without `Retry-After`: a quota in count is used up and will not come back.
    #[error("{0}")]
    QuotaCount(String),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but can never succeed (unknown user, pipeline, bad parameters in an event).
    #[error("{0}")]
    Unprocessable(String),
    /// 429 with `Retry-After`.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: u64 },
    /// 503 with `Retry-After`: a dependency (database, Kubernetes API) is unavailable.
    #[error("{detail}")]
    Unavailable { detail: String, retry_after: u64 },
    /// A database error; mapped to 503 when it is an outage, 500 otherwise.
    #[error(transparent)]
    Db(#[from] DbErr),
    /// Anything else: 500, logged.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    /// A single-field validation error.
    pub fn field(field: impl Into<String>, msg: impl Into<String>) -> Self {
        let mut m = FieldErrors::new();
        m.insert(field.into(), vec![msg.into()]);
        AppError::Validation(m)
    }

    /// The standard permission error.
    pub fn forbidden() -> Self {
        AppError::Forbidden("You do not have permission to perform this action.".into())
    }

    /// The database is unreachable.
    pub fn db_unavailable() -> Self {
        AppError::Unavailable {
            detail: "The database is temporarily unavailable; retry later.".into(),
            retry_after: 5,
        }
    }

    /// HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) | AppError::Validation(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge(_) | AppError::QuotaBytes(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::QuotaCount(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Db(e) if crate::db::is_unavailable(e) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Db(e) if crate::db::is_data_error(e) => StatusCode::BAD_REQUEST,
            AppError::Db(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body sent to the client.
    pub fn body(&self) -> Value {
        match self {
            AppError::Validation(fields) => json!(fields),
            AppError::Db(e) if crate::db::is_unavailable(e) => {
                json!({"detail": "The database is temporarily unavailable; retry later."})
            }
            AppError::Db(e) if crate::db::is_data_error(e) => {
                json!({"detail": "The request contains a value the database cannot store (e.g. a NUL character or an oversized field)."})
            }
            AppError::Db(_) | AppError::Internal(_) => {
                json!({"detail": "Internal server error."})
            }
            other => json!({"detail": other.to_string()}),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            AppError::TooManyRequests { retry_after, .. }
            | AppError::Unavailable { retry_after, .. } => Some(*retry_after),
            AppError::Db(e) if crate::db::is_unavailable(e) => Some(5),
            _ => None,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, status = status.as_u16(), "request failed");
        }
        let mut response = (status, Json(self.body())).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

fn too_large_message(limit: usize) -> String {
    if limit == 0 {
        "Request body too large.".into()
    } else {
        format!("Request body too large (limit {limit} bytes).")
    }
}

/// Result alias for handlers.
pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies() {
        let e = AppError::field("name", "This field is required.");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.body(), json!({"name": ["This field is required."]}));
        let e = AppError::Internal(anyhow::anyhow!("secret detail"));
        assert_eq!(e.body(), json!({"detail": "Internal server error."}));
        let e = AppError::Unavailable {
            detail: "x".into(),
            retry_after: 3,
        };
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        let r = AppError::Unauthorized("no".into()).into_response();
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
