//! Request extractors with the service's error shapes: JSON bodies must say
//! `Content-Type: application/json` (415 otherwise) and parse (400 with the parser's position);
//! [`TraceParent`] reads a valid W3C `traceparent` header (invalid ones are ignored).

use crate::error::AppError;
use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request, rejection::BytesRejection},
    http::{HeaderMap, header, request::Parts},
};
use serde::de::DeserializeOwned;
use std::convert::Infallible;

/// Deepest JSON nesting accepted in request bodies (serde_json itself stops at 128).
pub const MAX_JSON_DEPTH: usize = 64;

/// A JSON request body.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

/// Whether a content type is JSON (`application/json`, `application/*+json`).
pub fn is_json_content_type(value: &str) -> bool {
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Maps a body read failure to our errors (413 for the size limit).
pub fn body_rejection(e: BytesRejection) -> AppError {
    if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge(0)
    } else {
        AppError::BadRequest(format!("Could not read the request body: {e}"))
    }
}

/// Parses JSON bytes, refusing documents nested deeper than [`MAX_JSON_DEPTH`] and NUL
/// characters (`\u0000`), which PostgreSQL cannot store in text or jsonb.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    if nesting_depth(bytes) > MAX_JSON_DEPTH {
        return Err(AppError::BadRequest(format!(
            "JSON parse error - nesting deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    if contains_nul_escape(bytes) {
        return Err(AppError::BadRequest(
            "JSON parse error - NUL characters (\\u0000) are not accepted".into(),
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| AppError::BadRequest(format!("JSON parse error - {e}")))
}

/// Whether a JSON text contains a `\u0000` escape (any hex case).
pub fn contains_nul_escape(bytes: &[u8]) -> bool {
    bytes
        .windows(6)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && &w[2..] == b"0000")
}

/// Maximum bracket nesting of a JSON text, ignoring brackets inside strings.
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_json_content_type(content_type) {
            return Err(AppError::UnsupportedMediaType(format!(
                "Unsupported media type \"{content_type}\" in request; send application/json."
            )));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Longest `traceparent` value considered (version `00` is 55 characters; later versions may
/// append fields, which are dropped).
pub const MAX_TRACEPARENT_LEN: usize = 256;

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

/// The trace id of a valid `traceparent` value.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    traceparent.get(3..35)
}

/// Checks a `traceparent` value (`version-traceid-parentid-flags`, lower-case hex; the trace
/// and parent ids not all zeros; version `ff` invalid) and returns it in its version-00 shape
/// (the first 55 characters; fields a later version appends are dropped).
pub fn valid_traceparent(value: &str) -> Option<String> {
    let v = value.trim_matches([' ', '\t']);
    if v.len() < 55 || v.len() > MAX_TRACEPARENT_LEN || !v.is_ascii() {
        return None;
    }
    let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    let (version, trace_id, parent_id, flags) = (&v[0..2], &v[3..35], &v[36..52], &v[53..55]);
    let dashes = [2, 35, 52].iter().all(|&i| v.as_bytes()[i] == b'-');
    let ok = dashes
        && hex(version)
        && version != "ff"
        && hex(trace_id)
        && nonzero(trace_id)
        && hex(parent_id)
        && nonzero(parent_id)
        && hex(flags)
        // Version 00 has exactly four fields; a later one may have more after a dash.
        && (v.len() == 55 || (version != "00" && v.as_bytes()[55] == b'-'));
    ok.then(|| v[..55].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_validation() {
        let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert_eq!(valid_traceparent(good).as_deref(), Some(good));
        assert_eq!(
            valid_traceparent(&format!(" {good} ")).as_deref(),
            Some(good)
        );
        assert_eq!(trace_id_of(good), Some("0af7651916cd43dd8448eb211c80319c"));
        // A later version with an extra field keeps the known part.
        let v1 = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra";
        assert_eq!(
            valid_traceparent(v1).as_deref(),
            Some("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        for bad in [
            "",
            "garbage",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
            "00-0af7651916cd43dd8448eb211c8031zz-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01é",
        ] {
            assert_eq!(valid_traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn depth_ignores_strings() {
        assert_eq!(nesting_depth(br#"{"a":[1,{"b":"[[[["}]}"#), 3);
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(parse_json::<serde_json::Value>(deep.as_bytes()).is_err());
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("application/cloudevents+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(parse_json::<serde_json::Value>(br#"{"a":"x\u0000y"}"#).is_err());
        assert!(parse_json::<serde_json::Value>(br#"{"a":"x\u0001y"}"#).is_ok());
    }
}
