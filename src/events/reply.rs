//! The reply to a processed event: a binary-mode CloudEvent with HTTP 200, which Knative sends
//! back to the broker as a reply event. Built with the SDK's `EventBuilderV10` and written into
//! an axum response through the SDK's HTTP `Serializer`.
//!
//! `id` is the incoming id (so downstream consumers can dedupe too), `source` is
//! `NOTIF_RESPONSE_SOURCE`, `type` is `NOTIF_RESPONSE_TYPE_PREFIX` + `.ok` | `.accepted` |
//! `.duplicate` | `.ignored`, `subject` the run id when there is one.

use crate::config::Config;
use axum::{
    body::Body,
    http::{HeaderMap, HeaderName, HeaderValue},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use cloudevents::{
    EventBuilder, EventBuilderV10,
    binding::http::{Builder, Serializer},
    message::{BinaryDeserializer, Error as CeError},
};
use serde::Serialize;
use serde_json::Value;

/// What happened to the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// Handled with no run (health probe, Job status update).
    Ok,
    /// Run(s) created and launched.
    Accepted,
    /// Seen before: the stored outcome is repeated.
    Duplicate,
    /// Nothing to do for this event.
    Ignored,
}

impl ReplyKind {
    /// `status` in the data and the suffix of the reply type.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::Ok => "ok",
            ReplyKind::Accepted => "accepted",
            ReplyKind::Duplicate => "duplicate",
            ReplyKind::Ignored => "ignored",
        }
    }
}

/// How run ids appear in the data: `run_id` for a direct execution, `run_ids` for triggers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runs {
    None,
    One(i64),
    Many(Vec<i64>),
}

/// A reply, turned into an HTTP response by [`Reply::into_response_with`].
#[derive(Debug, Clone)]
pub struct Reply {
    pub kind: ReplyKind,
    /// The incoming event id.
    pub processed_id: String,
    pub runs: Runs,
    pub pipeline_id: Option<i64>,
    pub message: String,
}

impl Reply {
    /// A reply with no run.
    pub fn new(kind: ReplyKind, processed_id: &str, message: impl Into<String>) -> Self {
        Reply {
            kind,
            processed_id: processed_id.to_owned(),
            runs: Runs::None,
            pipeline_id: None,
            message: message.into(),
        }
    }

    /// The data object of the reply event.
    pub fn data(&self) -> Value {
        serde_json::to_value(self.data_fields()).unwrap_or(Value::Null)
    }

    fn data_fields(&self) -> ReplyData<'_> {
        ReplyData {
            status: self.kind.as_str(),
            processed_id: &self.processed_id,
            pipeline_id: self.pipeline_id,
            message: &self.message,
            timestamp: Utc::now().timestamp(),
            run_id: match self.runs {
                Runs::One(id) => Some(id),
                _ => None,
            },
            run_ids: match &self.runs {
                Runs::Many(ids) => Some(ids),
                _ => None,
            },
        }
    }

    fn subject(&self) -> Option<String> {
        match &self.runs {
            Runs::One(id) => Some(id.to_string()),
            Runs::Many(ids) if !ids.is_empty() => {
                Some(ids.iter().map(i64::to_string).collect::<Vec<_>>().join(","))
            }
            _ => None,
        }
    }

    /// Builds the binary-mode reply event as an HTTP 200 response.
    pub fn into_response_with(self, config: &Config) -> Response {
        match self.build(config) {
            Ok(r) => r,
            Err(e) => {
                // Only reachable with a misconfigured reply source/type (invalid header text).
                tracing::error!(error = %e, "could not build the reply CloudEvent");
                crate::error::AppError::Internal(anyhow::anyhow!("reply event: {e}"))
                    .into_response()
            }
        }
    }

    fn build(self, config: &Config) -> Result<Response, CeError> {
        let mut builder = EventBuilderV10::new()
            .id(self.processed_id.clone())
            .source(config.events.notif_response_source.clone())
            .ty(format!(
                "{}.{}",
                config.events.notif_response_type_prefix,
                self.kind.as_str()
            ))
            .time(Utc::now())
            // Serialised straight from a struct: no intermediate JSON tree per reply.
            .data(
                "application/json",
                serde_json::to_vec(&self.data_fields()).unwrap_or_default(),
            );
        if let Some(subject) = self.subject() {
            builder = builder.subject(subject);
        }
        let event = builder.build()?;
        BinaryDeserializer::deserialize_binary(event, Serializer::new(ResponseBuilder::default()))
    }
}

/// The data of the reply CloudEvent: `{status, processed_id, pipeline_id, message, timestamp,
/// run_id? | run_ids?}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReplyData<'a> {
    /// `ok`, `accepted`, `duplicate` or `ignored` (the suffix of the reply's type).
    #[schema(value_type = String)]
    pub status: &'static str,
    /// The incoming event's id.
    #[schema(value_type = String)]
    pub processed_id: &'a str,
    pub pipeline_id: Option<i64>,
    #[schema(value_type = String)]
    pub message: &'a str,
    /// Unix time of the reply.
    pub timestamp: i64,
    /// The run a `pipeline.execute` event created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<i64>,
    /// The runs the triggers matching the event created.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<i64>>)]
    pub run_ids: Option<&'a Vec<i64>>,
}

/// Adapter from the SDK's HTTP serializer to an axum response.
#[derive(Default)]
struct ResponseBuilder {
    headers: HeaderMap,
    invalid: Option<String>,
}

/// The header names a reply carries, so they are not parsed again for every reply.
const KNOWN_HEADERS: [&str; 8] = [
    "ce-specversion",
    "ce-id",
    "ce-source",
    "ce-type",
    "ce-subject",
    "ce-time",
    "content-type",
    "ce-dataschema",
];

impl Builder<Response> for ResponseBuilder {
    fn header(&mut self, key: &str, value: HeaderValue) {
        let name = match KNOWN_HEADERS.iter().find(|k| **k == key) {
            Some(known) => HeaderName::from_static(known),
            None => match HeaderName::try_from(key) {
                Ok(name) => name,
                Err(_) => {
                    self.invalid = Some(key.to_owned());
                    return;
                }
            },
        };
        self.headers.append(name, value);
    }

    fn body(&mut self, bytes: Vec<u8>) -> Result<Response, CeError> {
        if let Some(key) = self.invalid.take() {
            return Err(CeError::Other {
                source: format!("invalid header name {key:?}").into(),
            });
        }
        let mut response = Response::new(Body::from(bytes));
        *response.headers_mut() = std::mem::take(&mut self.headers);
        Ok(response)
    }

    fn finish(&mut self) -> Result<Response, CeError> {
        self.body(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reply_is_a_binary_cloudevent() {
        let config = Config::from_iter(Vec::<(String, String)>::new()).unwrap();
        let mut reply = Reply::new(ReplyKind::Accepted, "abc", "Pipeline execution created.");
        reply.runs = Runs::One(7);
        reply.pipeline_id = Some(17);
        let r = reply.into_response_with(&config);
        assert_eq!(r.status(), axum::http::StatusCode::OK);
        let h = r.headers();
        assert_eq!(h["ce-id"], "abc");
        assert_eq!(h["ce-specversion"], "1.0");
        assert_eq!(h["ce-source"], "/eoepca/application-quality");
        assert_eq!(
            h["ce-type"],
            "org.eoepca.application-quality.response.accepted"
        );
        assert_eq!(h["ce-subject"], "7");
        assert_eq!(h["content-type"], "application/json");
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let data: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(data["status"], "accepted");
        assert_eq!(data["run_id"], 7);
        assert_eq!(data["pipeline_id"], 17);
        assert_eq!(data["processed_id"], "abc");
    }
}
