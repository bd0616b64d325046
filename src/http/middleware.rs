//! Cross-cutting layers: `Host` allow-list, CORS, request log, request metrics and trace span,
//! and turning every non-JSON error response (404 fallback, 405, 408, 413 from the body limit)
//! into the `{"detail"}` shape.

use crate::{config::Config, error::AppError, http::extract::TraceParent, state::AppState};
use axum::{
    body::Body,
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::time::Instant;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

/// Loopback names are always accepted so local tools and port-forwards work.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Whether `host` (no port, lower case) is allowed by the list (Django's rules: exact match,
/// `.example.org` for the domain and its subdomains, `*` for any).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    LOOPBACK_HOSTS.contains(&host)
        || allowed.iter().any(|pattern| {
            pattern == "*"
                || pattern == host
                || pattern
                    .strip_prefix('.')
                    .is_some_and(|domain| host == domain || host.ends_with(pattern.as_str()))
        })
}

/// Strips the port from a `Host` header value (IPv6 literals keep their brackets).
fn host_without_port(value: &str) -> String {
    let v = value.trim().to_ascii_lowercase();
    if v.starts_with('[') {
        return v.split_once(']').map(|(h, _)| format!("{h}]")).unwrap_or(v);
    }
    v.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or(v)
}

/// CloudEvents ingress is exempt from the host check: brokers deliver with whatever `Host`
/// their subscriber URI has, senders replaying broker scripts keep the broker's `Host`, and a
/// browser cannot send `ce-*` headers or CloudEvents content types cross-origin without a CORS
/// preflight, which we do not grant to unknown origins.
pub fn is_event_ingress(method: &Method, path: &str) -> bool {
    if method != Method::POST {
        return false;
    }
    let path = path.trim_end_matches('/');
    if path.is_empty() || path == "/api/events" {
        return true;
    }
    // Broker-ingress shaped paths `/<namespace>/<broker>` (the seed scripts post there).
    let mut segments = path.trim_start_matches('/').split('/');
    matches!((segments.next(), segments.next(), segments.next()), (Some(ns), Some(b), None) if ns != "api" && ns != "oidc" && !ns.is_empty() && !b.is_empty())
}

/// Rejects requests whose `Host` is not allowed (400, JSON). Only the REST routes carry this
/// layer, and event deliveries among them ([`is_event_ingress`]: `POST /api/events/`) pass.
pub async fn check_host(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if is_event_ingress(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(host_without_port)
        .or_else(|| req.uri().host().map(str::to_ascii_lowercase));
    match host {
        Some(h) if host_allowed(&h, &state.config.server.allowed_hosts) => next.run(req).await,
        Some(h) => AppError::BadRequest(format!(
            "Invalid HTTP_HOST header: {h:?}. You may need to add it to ADDITIONAL_ALLOWED_HOSTS."
        ))
        .into_response(),
        None => AppError::BadRequest("Missing Host header.".into()).into_response(),
    }
}

/// CORS for the `PUBLIC_URL` origin and `CORS_ALLOWED_ORIGINS`, never `*`.
pub fn cors(config: &Config) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(config.server.cors_origins.clone()))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            http::HeaderName::from_static(crate::auth::session::CSRF_HEADER),
        ])
        .max_age(std::time::Duration::from_secs(86400))
}

/// Fallback for unknown routes.
pub async fn not_found() -> AppError {
    AppError::NotFound("Not found.".into())
}

/// Gives error responses that carry no JSON body the standard `{"detail"}` body.
fn json_error_body(state: &AppState, response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if is_json {
        return response;
    }
    let err = match status {
        StatusCode::METHOD_NOT_ALLOWED => AppError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => {
            AppError::PayloadTooLarge(state.config.server.max_body_bytes)
        }
        StatusCode::NOT_FOUND => AppError::NotFound("Not found.".into()),
        StatusCode::REQUEST_TIMEOUT => {
            let mut r = (
                status,
                axum::Json(serde_json::json!({"detail": "Request timed out."})),
            )
                .into_response();
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        s => {
            let reason = s.canonical_reason().unwrap_or("Error").to_string();
            return (s, axum::Json(serde_json::json!({"detail": reason}))).into_response();
        }
    };
    let (mut parts, _) = response.into_parts();
    let fresh = err.into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let (_, body) = fresh.into_parts();
    Response::from_parts(parts, Body::new(body))
}

/// Response extension of requests that are not worth a log line at `info` (health-probe
/// CloudEvents, sent every few seconds by probes, like the unlogged `/health/*` routes).
/// They are still counted in the metrics and logged at `debug`.
#[derive(Debug, Clone, Copy)]
pub struct QuietRequest;

/// The outermost layer (one function rather than three, as it runs on every request): runs
/// the request inside a `request` span whose `trace_id` field holds the trace id of a valid W3C
/// `traceparent` header (event dispatch may fill it later from the CloudEvent's `traceparent`
/// extension); gives non-JSON error responses (404 fallback, 405, 408, 413) the `{"detail"}`
/// body; writes one log line (method, path, route, status, latency); and counts the answer in
/// the metrics by matched route template and status.
pub async fn observe_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let span = tracing::info_span!("request", trace_id = tracing::field::Empty);
    if let Some(id) = TraceParent::from_headers(req.headers()).trace_id() {
        span.record("trace_id", id);
    }
    let method = req.method().clone();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    // The path is only needed for the log line: skip the copy when it is filtered out.
    let path = tracing::enabled!(tracing::Level::INFO).then(|| req.uri().path().to_owned());
    let started = Instant::now();
    // Retention runs in the background, started by traffic at most once per interval.
    crate::maintenance::maybe_start(&state.db, &state.config, &state.maintenance);
    let response = json_error_body(&state, next.run(req).instrument(span.clone()).await);
    let elapsed = started.elapsed();
    // Commit statuses waiting for a retry go out after a request (a spawned task; one atomic
    // read when none is due).
    crate::statuses::poke(&state.runs.notifier);
    let route = matched.as_ref().map(MatchedPath::as_str);
    let quiet = response.extensions().get::<QuietRequest>().is_some();
    if let Some(path) = path {
        let status = response.status().as_u16();
        let latency_us = elapsed.as_micros() as u64;
        let route = route.unwrap_or("");
        // One line per request; probes only at `debug`.
        macro_rules! request_line {
            ($level:ident) => {
                tracing::$level!(method = %method, path = %path, route, status, latency_us, "request")
            };
        }
        span.in_scope(|| {
            if quiet {
                request_line!(debug)
            } else {
                request_line!(info)
            }
        });
    }
    state
        .runs
        .metrics
        .record_request(&method, route, response.status(), elapsed);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_rules() {
        let allowed = vec!["aq.example.org".to_string(), ".example.net".to_string()];
        assert!(host_allowed("aq.example.org", &allowed));
        assert!(host_allowed("example.net", &allowed));
        assert!(host_allowed("ci.example.net", &allowed));
        assert!(!host_allowed("evil.org", &allowed));
        assert!(!host_allowed("badexample.net", &allowed));
        assert!(host_allowed("localhost", &allowed));
        assert_eq!(host_without_port("AQ.example.org:8443"), "aq.example.org");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
    }

    #[test]
    fn event_ingress_paths() {
        assert!(is_event_ingress(&Method::POST, "/"));
        assert!(is_event_ingress(&Method::POST, "/api/events"));
        assert!(is_event_ingress(&Method::POST, "/default/primary"));
        assert!(!is_event_ingress(&Method::GET, "/api/events"));
        assert!(!is_event_ingress(&Method::POST, "/api/pipelines"));
        assert!(!is_event_ingress(&Method::POST, "/api/pipelines/1/runs"));
        assert!(!is_event_ingress(&Method::POST, "/oidc/logout"));
    }
}
