//! Request extractors with the service's error shapes: JSON bodies must say
//! `Content-Type: application/json` (415 otherwise), be a JSON object (400
//! `{"non_field_errors": [...]}`, as DRF answers) and parse into the handler's request type (400
//! with the parser's message and position); [`JsonOrForm`] reads the same types from JSON or
//! a form (the token endpoints, as the reference's parsers);
//! [`TraceParent`] reads a valid W3C `traceparent` header (invalid ones are ignored).

pub use crate::json::{is_json_content_type, parse_json};
use crate::{
    error::AppError,
    telemetry::{trace_id_of, valid_traceparent},
};
use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request, rejection::BytesRejection},
    http::{HeaderMap, header, request::Parts},
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::convert::Infallible;

/// A JSON request body: an object, read into `T` (every request body of the API is a JSON
/// object; serde alone would also read a struct from an array).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

/// Maps a body read failure to our errors (413 for the size limit).
pub fn body_rejection(e: BytesRejection) -> AppError {
    if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge(0)
    } else {
        AppError::BadRequest(format!("Could not read the request body: {e}"))
    }
}

/// The request's `Content-Type`, empty when absent or not text.
fn content_type(req: &Request) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// A parsed body read into its type; a value of the wrong shape is the reference's 400.
fn typed<T: DeserializeOwned>(value: Value) -> Result<T, AppError> {
    serde_json::from_value(value)
        .map_err(|e| AppError::BadRequest(format!("JSON parse error - {e}")))
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let content_type = content_type(&req);
        if !is_json_content_type(&content_type) {
            return Err(AppError::UnsupportedMediaType(format!(
                "Unsupported media type \"{content_type}\" in request; send application/json."
            )));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        // The whole text is parsed (and so checked: UTF-8, numbers, nesting) before it is read
        // as `T`, whose unknown fields serde would otherwise skip unchecked.
        let value: Value = parse_json(&bytes)?;
        if !value.is_object() {
            return Err(AppError::field(
                "non_field_errors",
                "Invalid data. Expected a dictionary.",
            ));
        }
        typed(value).map(JsonBody)
    }
}

/// A request body that is a JSON object or `application/x-www-form-urlencoded` (each value a
/// string), read into `T`: the token endpoints take both, as the reference did.
#[derive(Debug, Clone)]
pub struct JsonOrForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonOrForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let content_type = content_type(&req);
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        let fields = fields(&content_type, &bytes)?;
        typed(Value::Object(fields)).map(JsonOrForm)
    }
}

/// The fields of a JSON object or form-urlencoded body (415 for any other type).
fn fields(content_type: &str, body: &[u8]) -> Result<Map<String, Value>, AppError> {
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

/// Python's name of a JSON value's type, as DRF's messages say it.
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

/// The W3C trace context (`traceparent`) of a request, when it is present and well formed.
/// Malformed values are ignored rather than refused: tracing must never fail a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceParent(pub Option<String>);

impl TraceParent {
    /// Reads the `traceparent` header.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        TraceParent(
            headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(valid_traceparent),
        )
    }

    /// The 32-hex-digit trace id.
    pub fn trace_id(&self) -> Option<&str> {
        self.0.as_deref().and_then(trace_id_of)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TraceParent {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Self::from_headers(&parts.headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_are_read_like_json_objects() {
        let m = fields(
            "application/x-www-form-urlencoded",
            b"username=a%40b&password=p+w",
        )
        .unwrap();
        assert_eq!(m["username"], "a@b");
        assert_eq!(m["password"], "p w");
        let m = fields("application/json", br#"{"username": "a"}"#).unwrap();
        assert_eq!(m["username"], "a");
        assert_eq!(
            fields("application/json", b"[]").unwrap_err().body(),
            serde_json::json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]})
        );
        assert_eq!(fields("text/plain", b"x").unwrap_err().status(), 415);
    }
}
