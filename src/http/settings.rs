//! `GET /api/settings/`: the frontend's settings, the YAML file `SETTINGS_FILE` served as JSON.
//! Public and credential-free (the frontend reads it before anyone logs in). A missing file is
//! `{}` (the reference sent an empty body); an unreadable or invalid one is logged and `{}`.

use crate::{
    http::routes::{Routes, route},
    state::AppState,
};
use axum::{Json, extract::State};
use serde_json::{Value, json};

/// Largest settings file read; larger files are treated as invalid.
const MAX_SETTINGS_BYTES: u64 = 256 * 1024;

/// Routes of this resource.
pub fn routes<R: Routes>(routes: R) -> R {
    routes.add(route!(settings))
}

/// `GET /api/settings/`: the frontend's settings (public).
///
/// Read on each request: the file is small, and a ConfigMap update then takes effect without a
/// restart.
#[utoipa::path(
    get,
    path = "/api/settings/",
    tag = "service",
    operation_id = "settings",
    responses((status = 200, description = "The settings file as JSON (`{}` when absent or invalid)", body = Object))
)]
async fn settings(State(state): State<AppState>) -> Json<Value> {
    Json(load(&state.config.server.settings_file).await)
}

/// Reads and converts the settings file; never fails.
pub async fn load(path: &str) -> Value {
    let meta = match tokio::fs::metadata(path).await {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return json!({}),
        Err(e) => {
            tracing::warn!(path, error = %e, "cannot read the settings file");
            return json!({});
        }
    };
    if meta.len() > MAX_SETTINGS_BYTES {
        tracing::warn!(path, bytes = meta.len(), "settings file too large, ignored");
        return json!({});
    }
    let text = match tokio::fs::read_to_string(path).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(path, error = %e, "cannot read the settings file");
            return json!({});
        }
    };
    parse(&text).unwrap_or_else(|msg| {
        tracing::warn!(path, error = %msg, "invalid settings file, serving {{}}");
        json!({})
    })
}

/// YAML text -> JSON object (an empty document is `{}`).
fn parse(text: &str) -> Result<Value, String> {
    match serde_yaml::from_str::<Value>(text) {
        Ok(Value::Null) => Ok(json!({})),
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("the document is not a mapping".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_to_json() {
        assert_eq!(
            parse("instance:\n  name: AQ\ndebug:\n  enabled: true\n").unwrap(),
            json!({"instance": {"name": "AQ"}, "debug": {"enabled": true}})
        );
        assert_eq!(parse("").unwrap(), json!({}));
        assert!(parse("- a\n- b\n").is_err());
        assert!(parse("a: [").is_err());
    }
}
