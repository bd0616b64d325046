//! JSON text as the service accepts it, in request bodies and CloudEvent data alike: nesting
//! bounded, no NUL characters, and errors that carry the parser's position (400).

use crate::error::AppError;
use serde::de::DeserializeOwned;

/// Deepest JSON nesting accepted in request bodies (serde_json itself stops at 128).
pub const MAX_JSON_DEPTH: usize = 64;

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

#[cfg(test)]
mod tests {
    use super::*;

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
