//! Logging: JSON lines by default (for cluster log collectors), readable lines with
//! `LOG_FORMAT=pretty`; the level comes from `RUST_LOG` (default `info`). And the W3C trace
//! context (`traceparent`) that requests, events and runs carry.

use crate::config::LogFormat;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber (idempotent: a second call is ignored).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().compact().with_writer(std::io::stderr))
            .try_init(),
    };
}

/// Longest `traceparent` value considered (version `00` is 55 characters; later versions may
/// append fields, which are dropped).
pub const MAX_TRACEPARENT_LEN: usize = 256;

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
}
