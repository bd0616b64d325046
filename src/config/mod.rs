//! Service configuration: read once from the environment (through `envy`), validated and
//! parsed at start-up into the types its users need, split by concern:
//!
//! | Module | Section of [`Config`] |
//! |---|---|
//! | [`server`] | the listener, `PUBLIC_URL`, allowed hosts and CORS origins, request bounds, logs |
//! | [`database`] | the store, its pool, migrations at start-up |
//! | [`auth`] | JWTs, login limits, per-instance caches, CI identities and their policies |
//! | [`oidc`] | browser sign-in through the IAM, sessions |
//! | [`events`] | CloudEvent sender authentication, replies |
//! | [`runs`] | the executor choice, per-user limits, repositories, callbacks |
//! | [`kubernetes`] | Calrissian Jobs |
//! | [`local`] | the local runner and its sandbox |
//! | [`statuses`] | commit statuses and the forges they go to |
//! | [`retention`] | the maintenance that deletes old rows |
//!
//! Every field of a section maps to an upper-case environment variable of the same name
//! (`public_url` is `PUBLIC_URL`), or of its `rename` when the field holds a parsed value
//! (`request_timeout`, a `Duration`, is `REQUEST_TIMEOUT_SECS`). Names shared with the
//! reference backend keep their meaning there. The table of docs/configuration.md lists them
//! all with their defaults; a test keeps the two in step. A problem is one line at start-up.

pub mod auth;
pub mod database;
pub mod events;
pub mod kubernetes;
pub mod local;
pub mod oidc;
pub mod retention;
pub mod runs;
pub mod server;
pub mod statuses;

pub use events::EventsAuth;
pub use kubernetes::KubernetesMode;
pub use local::{ContainerMode, SandboxMode};
pub use runs::{ExecutorMode, REPO_SCHEMES};
pub use server::LogFormat;
pub use statuses::ForgeTokens;

use serde::{Deserialize, de::DeserializeOwned};
use std::time::Duration;

/// The whole configuration of the service, one section per concern.
#[derive(Debug, Clone)]
pub struct Config {
    /// Serving.
    pub server: server::ServerConfig,
    /// The store.
    pub database: database::DatabaseConfig,
    /// Authentication.
    pub auth: auth::AuthConfig,
    /// Sign-in through the IAM.
    pub oidc: oidc::OidcConfig,
    /// CloudEvents.
    pub events: events::EventsConfig,
    /// Runs, whatever executes them.
    pub runs: runs::RunsConfig,
    /// The Kubernetes executor.
    pub kubernetes: kubernetes::KubernetesConfig,
    /// The local runner.
    pub local: local::LocalConfig,
    /// Commit statuses.
    pub statuses: statuses::StatusesConfig,
    /// Retention of old rows.
    pub retention: retention::RetentionConfig,
}

/// A configuration problem, reported as one line at start-up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Reads one section from the variables (envy ignores the others').
fn section<T: DeserializeOwned>(vars: &[(String, String)]) -> Result<T, ConfigError> {
    envy::from_iter(vars.iter().cloned()).map_err(|e| match e {
        envy::Error::MissingValue(name) => {
            ConfigError(format!("{} is required", name.to_uppercase()))
        }
        envy::Error::Custom(msg) => ConfigError(format!("invalid configuration: {msg}")),
    })
}

impl Config {
    /// Reads and validates the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_iter(std::env::vars())
    }

    /// Reads and validates the configuration from the given variables (tests use this).
    // Not `FromIterator`: building a config can fail, and the name mirrors `envy::from_iter`.
    #[allow(clippy::should_implement_trait)]
    pub fn from_iter<I: IntoIterator<Item = (String, String)>>(
        vars: I,
    ) -> Result<Self, ConfigError> {
        // envy fails on empty strings for typed fields; an empty variable means "unset" here.
        let vars: Vec<(String, String)> = vars.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let mut config = Config {
            server: section(&vars)?,
            database: section(&vars)?,
            auth: section(&vars)?,
            oidc: section(&vars)?,
            events: section(&vars)?,
            runs: section(&vars)?,
            kubernetes: section(&vars)?,
            local: section(&vars)?,
            statuses: section(&vars)?,
            retention: section(&vars)?,
        };
        config.statuses.forge_tokens =
            ForgeTokens::from_vars(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        config.server.check()?;
        config.database.check()?;
        config.auth.check()?;
        config.retention.check()?;
        config.kubernetes.check()?;
        config.events.check()?;
        config.oidc.check()?;
        config.local.check()?;
        config.statuses.check()?;
        config.runs.check()?;
        Ok(config)
    }

    /// The serving address check of `serve`: with unauthenticated events (`EVENTS_AUTH=off`),
    /// a listener on a non-loopback address would let anyone who reaches the port start runs
    /// as any user, so it is refused unless `EVENTS_TRUST_NETWORK=true` says that network is
    /// trusted. Checked on the address actually bound, so host names resolve as they bind.
    pub fn check_listener(&self, bound: std::net::SocketAddr) -> Result<(), ConfigError> {
        if self.events.events_auth == EventsAuth::Oidc
            || self.events.events_trust_network
            || is_loopback_ip(bound.ip())
        {
            return Ok(());
        }
        Err(ConfigError(format!(
            "BIND_ADDRESS={} listens on {bound}, beyond this machine, while CloudEvents are unauthenticated (EVENTS_AUTH=off): anyone reaching it could start runs as any user; set EVENTS_AUTH=oidc (docs/events.md), bind 127.0.0.1, or set EVENTS_TRUST_NETWORK=true if every sender on that network is trusted",
            self.server.bind_address
        )))
    }

    /// The `redirect_uri` of the sign-in.
    pub fn oidc_redirect_uri(&self) -> String {
        self.oidc
            .oidc_rp_redirect_uri
            .clone()
            .unwrap_or_else(|| format!("{}/oidc/callback/", self.server.public_url))
    }

    /// The executor choice, with an unset `EXECUTOR` following `KUBERNETES`.
    pub fn executor_mode(&self) -> ExecutorMode {
        self.runs.executor.unwrap_or(match self.kubernetes.mode {
            KubernetesMode::On => ExecutorMode::Kubernetes,
            KubernetesMode::Off => ExecutorMode::Off,
            KubernetesMode::Auto => ExecutorMode::Auto,
        })
    }

    /// Base URL pipeline pods use to call back (`server_url` in the CWL parameters).
    pub fn callback_base_url(&self) -> String {
        self.server.callback_base_url()
    }
}

/// `true`/`false` as Django settings read them (`True`, `1`, `yes`, `on` count as true).
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" | "t" => Ok(true),
        "false" | "0" | "no" | "n" | "off" | "f" | "" => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "expected true or false, got {other:?}"
        ))),
    }
}

/// The reference's reading of a boolean variable: `yes`, `y`, `true`, `1`, `t` (any case) are
/// true, anything else false.
fn reference_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = String::deserialize(d)?;
    Ok(matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "yes" | "y" | "true" | "1" | "t"
    ))
}

/// A number of seconds (`*_SECS`) as a duration.
fn secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

/// A number of milliseconds (`*_MS`) as a duration.
fn millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

/// Refuses a URL that is not https (http only to a loopback address).
fn check_url(name: &str, value: Option<&str>) -> Result<(), ConfigError> {
    match value {
        Some(value) if !url::Url::parse(value).is_ok_and(|u| is_secure_or_loopback(&u)) => {
            Err(ConfigError(format!(
                "{name} must be an https:// URL (http:// only to a loopback address), got {value:?}"
            )))
        }
        _ => Ok(()),
    }
}

/// Splits a comma-separated list, trimming blanks.
pub fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty())
}

/// `scheme://host[:port]` with an optional trailing slash, returned without it; anything with a
/// path, query, credentials or a non-http scheme is refused.
fn normalize_origin(s: &str) -> Option<String> {
    let url = url::Url::parse(s).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && !s.trim_end_matches('/').ends_with('?');
    plain.then(|| url.origin().ascii_serialization())
}

/// A loopback address, IPv4-mapped IPv6 included (`::ffff:127.0.0.1`, what a dual-stack
/// listener reports for an IPv4 loopback peer).
pub fn is_loopback_ip(ip: std::net::IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// An https URL, or an http one to a loopback address (nothing on the wire to tamper with).
pub fn is_secure_or_loopback(url: &url::Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_iter(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_are_valid() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.server.port, 8080);
        assert!(c.database.is_sqlite() && c.database.auto_migrate());
        assert_eq!(c.server.public_url, "http://localhost:8080");
        assert_eq!(c.kubernetes.mode, KubernetesMode::Auto);
    }

    #[test]
    fn run_isolation_defaults_are_the_safe_ones() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.runs.repo_url_schemes, ["https"]);
        assert!(c.runs.repo_file_roots.is_empty());
        assert_eq!(
            (
                c.kubernetes.aqbb_run_as_user,
                c.kubernetes.aqbb_run_as_group
            ),
            (1000, 1000)
        );
        assert!(!c.kubernetes.aqbb_workdir_chown);
        assert_eq!(
            (
                c.runs.repo_low_speed_limit,
                c.runs.repo_low_speed_time_secs,
                c.runs.repo_connect_timeout_secs
            ),
            (1000, 30, 30)
        );
        assert_eq!(c.runs.callback_grace_secs, 300);
        assert_eq!(c.runs.callback_max_reports_per_run, 1000);
        assert_eq!(c.runs.callback_max_report_bytes_per_run, 64 * 1024 * 1024);
        for (name, bad) in [
            ("AQBB_RUN_AS_USER", "0"),
            ("AQBB_RUN_AS_GROUP", "-1"),
            ("REPO_URL_SCHEMES", "https,gopher"),
            ("REPO_LOW_SPEED_TIME_SECS", "0"),
            ("CALLBACK_MAX_REPORTS_PER_RUN", "0"),
        ] {
            let err = cfg(&[(name, bad)]).unwrap_err().to_string();
            assert!(err.contains(name), "{name}={bad}: {err}");
        }
    }

    #[test]
    fn executor_follows_kubernetes_unless_set() {
        let mode = |vars: &[(&str, &str)]| cfg(vars).unwrap().executor_mode();
        assert_eq!(mode(&[]), ExecutorMode::Auto);
        assert_eq!(mode(&[("KUBERNETES", "on")]), ExecutorMode::Kubernetes);
        assert_eq!(mode(&[("KUBERNETES", "off")]), ExecutorMode::Off);
        assert_eq!(
            mode(&[("KUBERNETES", "off"), ("EXECUTOR", "local")]),
            ExecutorMode::Local
        );
        let c = cfg(&[("LOCAL_CONCURRENCY", "3")]).unwrap();
        assert_eq!(c.local.local_concurrency(), 3);
        assert!(cfg(&[]).unwrap().local.local_concurrency() >= 1);
        assert_eq!(
            cfg(&[]).unwrap().local.local_containers,
            ContainerMode::Auto
        );
        assert!(cfg(&[("LOCAL_CALLBACK_URL", "not a url")]).is_err());
        assert!(cfg(&[("EXECUTOR", "maybe")]).is_err());
    }

    #[test]
    fn login_limits() {
        let c = cfg(&[]).unwrap();
        assert_eq!(
            (
                c.auth.login_max_failures_per_user,
                c.auth.login_max_failures_per_address,
                c.auth.login_failure_window.as_secs(),
                c.server.trusted_proxy_headers,
            ),
            (5, 20, 300, false)
        );
        let c = cfg(&[
            ("TRUSTED_PROXY_HEADERS", "true"),
            ("LOGIN_MAX_FAILURES_PER_USER", "0"),
        ])
        .unwrap();
        assert!(c.server.trusted_proxy_headers);
        assert_eq!(c.auth.login_max_failures_per_user, 0);
        let err = cfg(&[("LOGIN_FAILURE_WINDOW_SECS", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("LOGIN_FAILURE_WINDOW_SECS"), "{err}");
    }

    #[test]
    fn events_auth() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.events.events_auth, EventsAuth::Off);
        assert_eq!(c.events.events_oidc_refresh_interval.as_secs(), 30);
        let err = cfg(&[("EVENTS_AUTH", "oidc")]).unwrap_err().to_string();
        assert!(err.contains("EVENTS_OIDC_ISSUER"), "{err}");
        let issuer = (
            "EVENTS_OIDC_ISSUER",
            "https://kubernetes.default.svc.cluster.local",
        );
        let err = cfg(&[("EVENTS_AUTH", "oidc"), issuer])
            .unwrap_err()
            .to_string();
        assert!(err.contains("EVENTS_OIDC_AUDIENCE"), "{err}");
        let audience = ("EVENTS_OIDC_AUDIENCE", "aq");
        let c = cfg(&[("EVENTS_AUTH", "oidc"), issuer, audience]).unwrap();
        assert_eq!(c.events.events_auth, EventsAuth::Oidc);
        for (name, bad) in [
            ("EVENTS_OIDC_ISSUER", "http://issuer.example.org"),
            ("EVENTS_OIDC_ISSUER", "not a url"),
            ("EVENTS_OIDC_JWKS_URL", "ftp://127.0.0.1/keys"),
            ("EVENTS_OIDC_JWKS_URL", "http://10.0.0.1/keys"),
        ] {
            let mut vars = vec![("EVENTS_AUTH", "oidc"), issuer, audience];
            vars.retain(|(k, _)| *k != name);
            vars.push((name, bad));
            let err = cfg(&vars).unwrap_err().to_string();
            assert!(err.starts_with(name), "{bad}: {err}");
        }
        let c = cfg(&[
            ("EVENTS_AUTH", "oidc"),
            ("EVENTS_OIDC_ISSUER", "http://127.0.0.1:8443"),
            ("EVENTS_OIDC_JWKS_URL", "http://[::1]:8443/keys"),
            audience,
        ]);
        assert!(c.is_ok());
        let err = cfg(&[("EVENTS_AUTH", "basic")]).unwrap_err().to_string();
        assert!(err.contains("basic"), "{err}");
    }

    #[test]
    fn unauthenticated_events_stay_on_loopback_unless_trusted() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.server.bind_address, "127.0.0.1");
        assert!(!c.events.events_trust_network && !c.events.from_any_peer());
        let addr = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        for ok in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",
            "127.0.0.2:1",
        ] {
            assert!(c.check_listener(addr(ok)).is_ok(), "{ok}");
        }
        for bad in ["0.0.0.0:8080", "[::]:8080", "192.0.2.2:8080"] {
            let err = c.check_listener(addr(bad)).unwrap_err().to_string();
            assert!(
                err.contains("EVENTS_AUTH=oidc") && err.contains("EVENTS_TRUST_NETWORK=true"),
                "{err}"
            );
        }
        let trusted = cfg(&[("EVENTS_TRUST_NETWORK", "true")]).unwrap();
        assert!(trusted.events.from_any_peer());
        assert!(trusted.check_listener(addr("0.0.0.0:8080")).is_ok());
        let oidc = cfg(&[
            ("EVENTS_AUTH", "oidc"),
            (
                "EVENTS_OIDC_ISSUER",
                "https://kubernetes.default.svc.cluster.local",
            ),
            ("EVENTS_OIDC_AUDIENCE", "aq"),
            ("EVENTS_TRUST_NETWORK", "true"),
        ])
        .unwrap();
        assert!(!oidc.events.from_any_peer(), "authentication still applies");
        assert!(oidc.check_listener(addr("0.0.0.0:8080")).is_ok());
        assert!(cfg(&[("EVENTS_TRUST_NETWORK", "sometimes")]).is_err());
    }

    #[test]
    fn fair_share_defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(
            (
                c.runs.runs_max_active_per_user,
                c.runs.runs_max_queued_per_user,
                c.runs.aqbb_active_deadline_secs
            ),
            (4, 20, 3600)
        );
        assert!(!c.oidc.oidc_link_by_username);
    }

    #[test]
    fn oidc_settings() {
        let c = cfg(&[]).unwrap();
        assert!(!c.oidc.oidc_enabled);
        assert_eq!(c.oidc.oidc_rp_scopes, "openid profile email");
        assert_eq!(
            c.oidc_redirect_uri(),
            "http://localhost:8080/oidc/callback/"
        );
        let discovery = (
            "OIDC_CONNECT_CONFIG_URL",
            "https://iam.example.org/realms/eoepca/.well-known/openid-configuration",
        );
        let err = cfg(&[("OIDC_ENABLED", "true"), discovery])
            .unwrap_err()
            .to_string();
        assert!(err.contains("OIDC_RP_CLIENT_ID"), "{err}");
        let client = [("OIDC_RP_CLIENT_ID", "aq"), ("OIDC_RP_CLIENT_SECRET", "s")];
        let err = cfg(&[("OIDC_ENABLED", "True"), client[0], client[1]])
            .unwrap_err()
            .to_string();
        assert!(err.contains("OIDC_CONNECT_CONFIG_URL"), "{err}");
        let c = cfg(&[("OIDC_ENABLED", "True"), client[0], client[1], discovery]).unwrap();
        assert!(c.oidc.oidc_enabled);
        assert_eq!(
            c.oidc.oidc_issuer().as_deref(),
            Some("https://iam.example.org/realms/eoepca")
        );
        for (name, bad) in [
            ("OIDC_ENABLED", "maybe"),
            ("OIDC_CONNECT_CONFIG_URL", "http://iam.example.org/x"),
            ("OIDC_RP_SIGN_ALGO", "HS256"),
            ("OIDC_RP_SIGN_ALGO", "nonsense"),
            ("OIDC_RP_SCOPES", "profile email"),
            ("SESSION_LIFETIME_SECS", "0"),
            ("CI_GITHUB_ISSUER", "http://github.example"),
            ("CI_OIDC_POLICIES", "[{}]"),
        ] {
            let mut vars = vec![("OIDC_ENABLED", "true"), client[0], client[1], discovery];
            vars.retain(|(k, _)| *k != name);
            vars.push((name, bad));
            let err = cfg(&vars).unwrap_err().to_string();
            assert!(
                err.contains(name) || err.contains(bad),
                "{name}={bad}: {err}"
            );
        }
        assert!(cfg(&[("OIDC_RP_SIGN_ALGO", "ES256")]).is_ok());
    }

    #[test]
    fn public_url_must_be_an_origin() {
        for bad in [
            "example.org",
            "http://x.org/api",
            "ftp://x.org",
            "http://",
            "http://x.org?a=1",
        ] {
            let err = cfg(&[("PUBLIC_URL", bad)]).unwrap_err().to_string();
            assert!(
                err.starts_with("PUBLIC_URL must look like scheme://host[:port]"),
                "{bad}: {err}"
            );
        }
        let c = cfg(&[("PUBLIC_URL", "https://AQ.example.org:8443/")]).unwrap();
        assert_eq!(c.server.public_url, "https://aq.example.org:8443");
    }

    #[test]
    fn typed_errors_name_the_variable() {
        let err = cfg(&[("PORT", "eighty")]).unwrap_err().to_string();
        assert!(err.contains("PORT"), "{err}");
        let err = cfg(&[("JWT_SECRET", "short")]).unwrap_err().to_string();
        assert!(err.contains("JWT_SECRET"), "{err}");
        let err = cfg(&[("DATABASE_URL", "mysql://x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn allowed_hosts_and_callback() {
        let c = cfg(&[
            ("PUBLIC_URL", "https://aq.example.org"),
            ("BACKEND_SERVICE_HOST", "aq-api.ns.svc.cluster.local"),
            ("ADDITIONAL_ALLOWED_HOSTS", " .example.net , ci.local"),
        ])
        .unwrap();
        assert_eq!(
            c.server.allowed_hosts,
            [
                "aq.example.org",
                "aq-api.ns.svc.cluster.local",
                ".example.net",
                "ci.local"
            ]
        );
        assert_eq!(
            c.callback_base_url(),
            "http://aq-api.ns.svc.cluster.local:80"
        );
    }
}
