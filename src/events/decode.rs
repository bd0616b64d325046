//! Decoding an HTTP request into a CloudEvent with the SDK's HTTP binding (binary mode: `ce-*`
//! headers; structured mode: `application/cloudevents+json`). The web layer's extractor
//! (`crate::http::events`) reads the body through axum's `Bytes` extractor so the body limit
//! applies (the SDK's own axum extractor reads without bound, so it is not used).

use crate::{error::AppError, json::parse_json};
use axum::http::{HeaderMap, header};
use chrono::{DateTime, SecondsFormat, Utc};
use cloudevents::{
    AttributesReader, Data, Event,
    event::{EventBuilderError, ExtensionValue, SpecVersion},
    message::Error as CeError,
};
use serde_json::{Map, Value};

/// Longest accepted `id`, `source`, `type` and `subject` (they are stored and indexed).
pub const MAX_ATTRIBUTE_LEN: usize = 255;
/// Longest accepted `user` extension value (a username).
pub const MAX_USER_LEN: usize = 150;

/// What a sender gets for a POST that is not a CloudEvent (e.g. `kn func invoke --format http`).
pub const NOT_A_CLOUDEVENT: &str = "Not a CloudEvent. Send a CloudEvent (spec version 1.0): binary mode with the ce-specversion, ce-id, ce-source and ce-type headers and the data as the body, or structured mode with Content-Type application/cloudevents+json.";

/// A decoded, checked CloudEvent plus what we keep of the HTTP request.
#[derive(Debug, Clone)]
pub struct IncomingEvent {
    pub id: String,
    pub source: String,
    pub ty: String,
    pub subject: Option<String>,
    pub time: Option<DateTime<Utc>>,
    /// The `user` extension attribute (`ce-user`).
    pub user: Option<String>,
    /// The data as JSON (`None` when the event has none).
    pub data: Option<Value>,
    /// Attributes and extensions as a JSON object: what `ce.<name>` reads in CQL2 filters.
    pub attributes: Value,
    /// The request headers (see [`IncomingEvent::headers_json`]).
    pub raw_headers: HeaderMap,
    /// W3C trace context of the delivery, handed on to the launch.
    pub traceparent: Option<String>,
}

/// Whether a header may be stored: no credentials, nothing that looks like a secret.
pub fn header_is_storable(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    !matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) && !n.contains("token")
        && !n.contains("secret")
        && !n.contains("password")
        && !n.contains("api-key")
}

/// The storable headers as a JSON object (values lossily decoded; repeated headers joined).
pub fn storable_headers(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for (name, value) in headers {
        if !header_is_storable(name.as_str()) {
            continue;
        }
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match out.get_mut(name.as_str()) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&v);
            }
            _ => {
                out.insert(name.as_str().to_owned(), Value::String(v));
            }
        }
    }
    Value::Object(out)
}

fn mime(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Maps the SDK's decoding errors to 400s that say what is wrong.
fn decode_error(e: CeError) -> AppError {
    match e {
        CeError::WrongEncoding {} => AppError::BadRequest(NOT_A_CLOUDEVENT.into()),
        CeError::UnknownSpecVersion { source } => AppError::BadRequest(format!(
            "Unsupported CloudEvents spec version ({source}); only 1.0 is accepted."
        )),
        CeError::EventBuilderError {
            source: EventBuilderError::MissingRequiredAttribute { attribute_name },
        } => AppError::BadRequest(format!(
            "Invalid CloudEvent: the required attribute {attribute_name:?} is missing (ce-{attribute_name} header in binary mode)."
        )),
        other => AppError::BadRequest(format!("Invalid CloudEvent: {other}.")),
    }
}

fn check_len(name: &str, value: &str, max: usize) -> Result<(), AppError> {
    if value.len() > max {
        Err(AppError::BadRequest(format!(
            "Invalid CloudEvent: the {name:?} attribute is longer than {max} characters."
        )))
    } else if value.is_empty() {
        Err(AppError::BadRequest(format!(
            "Invalid CloudEvent: the {name:?} attribute is empty."
        )))
    } else {
        Ok(())
    }
}

/// The data as JSON. Binary data (binary mode, or `data_base64`) must be JSON text; a
/// structured-mode string with a non-JSON content type stays a JSON string.
fn data_as_json(event: &Event) -> Result<Option<Value>, AppError> {
    let invalid = |e: AppError| {
        AppError::BadRequest(format!(
            "The event data must be JSON (Content-Type application/json): {}",
            match e {
                AppError::BadRequest(m) => m,
                other => other.to_string(),
            }
        ))
    };
    match event.data() {
        None => Ok(None),
        Some(Data::Json(v)) => Ok(Some(v.clone())),
        Some(Data::Binary(bytes)) => parse_json(bytes).map(Some).map_err(invalid),
        Some(Data::String(s)) => {
            let json_type = event
                .datacontenttype()
                .is_some_and(crate::json::is_json_content_type);
            if json_type {
                parse_json(s.as_bytes()).map(Some).map_err(invalid)
            } else {
                Ok(Some(Value::String(s.clone())))
            }
        }
    }
}

fn attributes_json(event: &Event) -> Value {
    let mut m = Map::new();
    for (name, value) in event.iter_attributes() {
        m.insert(name.to_owned(), Value::String(value.to_string()));
    }
    if let Some(t) = event.time() {
        m.insert(
            "time".into(),
            Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        );
    }
    for (name, value) in event.iter_extensions() {
        let v = match value {
            ExtensionValue::String(s) => Value::String(s.clone()),
            ExtensionValue::Boolean(b) => Value::Bool(*b),
            ExtensionValue::Integer(i) => Value::from(*i),
        };
        m.insert(name.to_owned(), v);
    }
    Value::Object(m)
}

impl IncomingEvent {
    /// Decodes and checks an event from headers and a body that was already read (bounded).
    pub fn decode(headers: &HeaderMap, body: Vec<u8>) -> Result<Self, AppError> {
        Self::decode_owned(headers.clone(), body)
    }

    /// Refuses what this service never decodes (batches), from the headers alone, before the
    /// body is read.
    pub fn check_headers(headers: &HeaderMap) -> Result<(), AppError> {
        if mime(headers) == "application/cloudevents-batch+json" {
            return Err(AppError::UnsupportedMediaType(
                "Batched CloudEvents (application/cloudevents-batch+json) are not supported; send each event in its own request (binary or structured mode).".into(),
            ));
        }
        Ok(())
    }

    /// Decodes a request's headers and body (read within the body limit by the caller).
    pub fn decode_owned(headers: HeaderMap, body: Vec<u8>) -> Result<Self, AppError> {
        let event = cloudevents::binding::http::to_event(&headers, body).map_err(decode_error)?;
        if event.specversion() != SpecVersion::V10 {
            return Err(AppError::BadRequest(format!(
                "Unsupported CloudEvents spec version {}; only 1.0 is accepted.",
                event.specversion()
            )));
        }
        check_len("id", event.id(), MAX_ATTRIBUTE_LEN)?;
        check_len("source", event.source(), MAX_ATTRIBUTE_LEN)?;
        check_len("type", event.ty(), MAX_ATTRIBUTE_LEN)?;
        if let Some(s) = event.subject() {
            check_len("subject", s, MAX_ATTRIBUTE_LEN)?;
        }
        let user = match event.extension("user") {
            None => None,
            Some(ExtensionValue::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        if let Some(u) = &user {
            check_len("user", u, MAX_USER_LEN)?;
        }
        let data = data_as_json(&event)?;
        Ok(IncomingEvent {
            id: event.id().to_owned(),
            source: event.source().to_string(),
            ty: event.ty().to_owned(),
            subject: event.subject().map(str::to_owned),
            time: event.time().copied(),
            user,
            data,
            attributes: attributes_json(&event),
            traceparent: headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            raw_headers: headers,
        })
    }

    /// Request headers without credentials, for the record (built only for events that are
    /// stored: health probes never pay for it).
    pub fn headers_json(&self) -> Value {
        storable_headers(&self.raw_headers)
    }

    /// When the event happened: its `time`, or now when it has none.
    pub fn time_or_now(&self) -> DateTime<Utc> {
        self.time.unwrap_or_else(Utc::now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};

    fn binary(extra: &[(&str, &str)], body: &str) -> Result<IncomingEvent, AppError> {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "123"),
            ("ce-source", "curl"),
            ("ce-type", "org.eoepca.application-quality.probes.health"),
            ("content-type", "application/json"),
        ]
        .iter()
        .chain(extra)
        {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        IncomingEvent::decode(&h, body.as_bytes().to_vec())
    }

    #[test]
    fn binary_mode_with_extensions() {
        let ev = binary(
            &[
                ("ce-user", "eric"),
                ("ce-subject", "pipelines/17"),
                ("authorization", "Bearer x"),
                ("x-api-token", "t"),
            ],
            r#"{"parameters": {}}"#,
        )
        .unwrap();
        assert_eq!(ev.user.as_deref(), Some("eric"));
        assert_eq!(ev.subject.as_deref(), Some("pipelines/17"));
        assert_eq!(ev.data, Some(serde_json::json!({"parameters": {}})));
        assert_eq!(ev.attributes["source"], "curl");
        assert_eq!(ev.attributes["user"], "eric");
        let headers = ev.headers_json();
        assert!(headers.get("authorization").is_none());
        assert!(headers.get("x-api-token").is_none());
        assert_eq!(headers["ce-id"], "123");
    }

    #[test]
    fn errors_are_400_with_reasons() {
        let e = binary(&[("ce-specversion", "0.3")], "{}").unwrap_err();
        assert!(e.to_string().contains("1.0"), "{e}");
        let e = binary(&[], "not json").unwrap_err();
        assert!(e.to_string().contains("must be JSON"), "{e}");
        let long = "x".repeat(300);
        let e = binary(&[("ce-id", &long)], "{}").unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        let e = IncomingEvent::decode(&HeaderMap::new(), b"{}".to_vec()).unwrap_err();
        assert!(e.to_string().contains("Not a CloudEvent"));
        let e = binary(&[("ce-time", "yesterday")], "{}").unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn empty_body_means_no_data() {
        assert_eq!(binary(&[], "").unwrap().data, None);
    }
}
