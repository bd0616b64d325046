//! Serving: the listener, the public origin with the hosts and origins it answers, request
//! bounds, logging, and what the API serves from memory or from files.

use super::{ConfigError, normalize_origin, split_list};
use axum::http::HeaderValue;
use serde::Deserialize;
use std::time::Duration;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable lines, for a terminal.
    Pretty,
}

/// How the service is served.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerConfig {
    /// TCP port to listen on (Knative injects `PORT`).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Address to bind: loopback by default, so a fresh start is reachable from this machine
    /// only; `0.0.0.0` in a container (set by the image and the manifests). A non-loopback
    /// address needs authenticated events (`EVENTS_AUTH=oidc`) or `EVENTS_TRUST_NETWORK`
    /// ([`super::Config::check_listener`]).
    #[serde(default = "default_bind_address")]
    pub bind_address: String,
    /// The public origin of the service (`scheme://host[:port]`): allowed host, CORS origin,
    /// and callback base when `BACKEND_SERVICE_HOST` is unset.
    #[serde(default = "default_public_url")]
    pub public_url: String,
    /// Extra allowed `Host` values, comma-separated; `.example.org` matches subdomains, `*` any host.
    #[serde(default)]
    additional_allowed_hosts: String,
    /// Extra CORS origins, comma-separated (the `PUBLIC_URL` origin is always allowed).
    #[serde(default)]
    cors_allowed_origins: String,
    /// In-cluster host name of this service: an allowed host and the callback host pipeline pods use.
    #[serde(default)]
    pub backend_service_host: Option<String>,
    /// Port for `BACKEND_SERVICE_HOST` callbacks.
    #[serde(default = "default_backend_port")]
    pub backend_service_port: u16,
    /// Largest accepted request body in bytes; larger bodies get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Whole-request timeout in seconds.
    #[serde(
        rename = "request_timeout_secs",
        default = "default_request_timeout",
        deserialize_with = "super::secs"
    )]
    pub request_timeout: Duration,
    /// `json` (default) or `pretty`.
    #[serde(default = "default_log_format")]
    pub log_format: LogFormat,
    /// YAML file served (as JSON) by `/api/settings/`; `{}` when absent.
    #[serde(default = "default_settings_file")]
    pub settings_file: String,
    /// Whether the client address is taken from the first `X-Forwarded-For` hop (instead of the
    /// TCP peer) for per-address limits. Enable it only behind a proxy that sets this header
    /// itself, as Knative's ingress and queue-proxy do, and whose outermost hop overwrites rather
    /// than appends to what clients send; otherwise a client could name any address it likes.
    /// Off by default.
    #[serde(default)]
    pub trusted_proxy_headers: bool,
    /// How long the pipeline list is served from memory (milliseconds; 0 = query every time).
    /// This instance's own writes show at once; other writers' within this time.
    #[serde(
        rename = "pipeline_list_cache_ms",
        default = "default_pipeline_list_cache",
        deserialize_with = "super::millis"
    )]
    pub pipeline_list_cache: Duration,
    /// `Host` values accepted, lower case, ports stripped: the host of `PUBLIC_URL`,
    /// `BACKEND_SERVICE_HOST` and `ADDITIONAL_ALLOWED_HOSTS`.
    #[serde(skip)]
    pub allowed_hosts: Vec<String>,
    /// Origins allowed by CORS: `PUBLIC_URL` plus `CORS_ALLOWED_ORIGINS`, normalised.
    #[serde(skip)]
    pub cors_origins: Vec<HeaderValue>,
}

impl ServerConfig {
    /// Normalises `PUBLIC_URL`, checks the bounds, and derives the allowed hosts and origins.
    pub(super) fn check(&mut self) -> Result<(), ConfigError> {
        self.public_url = normalize_origin(&self.public_url).ok_or_else(|| {
            ConfigError(format!(
                "PUBLIC_URL must look like scheme://host[:port], got {:?}",
                self.public_url
            ))
        })?;
        let mut origins = vec![self.public_url.clone()];
        for origin in split_list(&self.cors_allowed_origins) {
            match normalize_origin(origin) {
                Some(o) => origins.push(o),
                None => {
                    return Err(ConfigError(format!(
                        "CORS_ALLOWED_ORIGINS entries must look like scheme://host[:port], got {origin:?}"
                    )));
                }
            }
        }
        // A normalised origin is ASCII, so it is always a valid header value.
        self.cors_origins = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        if self.max_body_bytes < 1024 {
            return Err(ConfigError("MAX_BODY_BYTES must be at least 1024".into()));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError("REQUEST_TIMEOUT_SECS must be positive".into()));
        }
        let mut hosts = Vec::new();
        if let Ok(url) = url::Url::parse(&self.public_url)
            && let Some(host) = url.host_str()
        {
            hosts.push(host.to_ascii_lowercase());
        }
        if let Some(host) = &self.backend_service_host {
            hosts.push(host.to_ascii_lowercase());
        }
        hosts.extend(split_list(&self.additional_allowed_hosts).map(|h| h.to_ascii_lowercase()));
        self.allowed_hosts = hosts;
        Ok(())
    }

    /// Base URL pipeline pods use to call back (`server_url` in the CWL parameters).
    pub fn callback_base_url(&self) -> String {
        match &self.backend_service_host {
            Some(host) => format!("http://{host}:{}", self.backend_service_port),
            None => self.public_url.clone(),
        }
    }

    /// Whether cookies get the `Secure` attribute.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

fn default_port() -> u16 {
    8080
}

fn default_bind_address() -> String {
    "127.0.0.1".into()
}

fn default_public_url() -> String {
    "http://localhost:8080".into()
}

fn default_backend_port() -> u16 {
    80
}

fn default_max_body() -> usize {
    1024 * 1024
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_log_format() -> LogFormat {
    LogFormat::Json
}

fn default_settings_file() -> String {
    "settings.yaml".into()
}

fn default_pipeline_list_cache() -> Duration {
    Duration::from_millis(1000)
}
