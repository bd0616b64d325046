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
    http::{HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use cloudevents::{
    EventBuilder, EventBuilderV10,
    binding::http::{Builder, Serializer},
    message::{BinaryDeserializer, Error as CeError},
};
use serde_json::{Value, json};

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
        let mut data = json!({
            "status": self.kind.as_str(),
            "processed_id": self.processed_id,
            "pipeline_id": self.pipeline_id,
            "message": self.message,
            "timestamp": Utc::now().timestamp(),
        });
        match &self.runs {
            Runs::None => {}
            Runs::One(id) => data["run_id"] = json!(id),
            Runs::Many(ids) => data["run_ids"] = json!(ids),
        }
        data
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
            .source(config.notif_response_source.clone())
            .ty(format!(
                "{}.{}",
                config.notif_response_type_prefix,
                self.kind.as_str()
            ))
            .time(Utc::now())
            .data("application/json", self.data());
        if let Some(subject) = self.subject() {
            builder = builder.subject(subject);
        }
        let event = builder.build()?;
        BinaryDeserializer::deserialize_binary(event, Serializer::new(ResponseBuilder::default()))
    }
}

/// Adapter from the SDK's HTTP serializer to an axum response.
#[derive(Default)]
struct ResponseBuilder {
    headers: Vec<(String, HeaderValue)>,
}

impl Builder<Response> for ResponseBuilder {
    fn header(&mut self, key: &str, value: HeaderValue) {
        self.headers.push((key.to_owned(), value));
    }

    fn body(&mut self, bytes: Vec<u8>) -> Result<Response, CeError> {
        let mut response = Response::builder().status(StatusCode::OK);
        for (k, v) in self.headers.drain(..) {
            response = response.header(k, v);
        }
        response
            .body(Body::from(bytes))
            .map_err(|e| CeError::Other {
                source: Box::new(e),
            })
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
        assert_eq!(r.status(), StatusCode::OK);
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
