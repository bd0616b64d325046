//! CloudEvents: who may send them (`EVENTS_AUTH`, the OIDC issuer of sender tokens, the
//! senders allowed) and what the replies say.

use super::{ConfigError, check_url, split_list};
use serde::Deserialize;
use std::{collections::HashSet, time::Duration};

/// Whether CloudEvent senders must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventsAuth {
    /// Anyone who can reach the ingress may send events (the embedded default).
    Off,
    /// Every event needs `Authorization: Bearer <OIDC token>` of an allowed sender, as Knative's
    /// `authentication-oidc` feature attaches (see `auth::oidc`).
    Oidc,
}

/// A list of token subjects, or everyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderList {
    /// Any subject.
    Any,
    /// Only these subjects (possibly none).
    Only(HashSet<String>),
}

impl Default for SenderList {
    fn default() -> Self {
        SenderList::Only(HashSet::new())
    }
}

impl SenderList {
    /// Parses a comma-separated list; `*` anywhere means everyone, and so does an empty list
    /// when `empty_means_any`.
    pub fn parse(list: &str, empty_means_any: bool) -> Self {
        let items: HashSet<String> = split_list(list).map(str::to_owned).collect();
        if items.contains("*") || (items.is_empty() && empty_means_any) {
            SenderList::Any
        } else {
            SenderList::Only(items)
        }
    }

    /// Whether the subject is in the list.
    pub fn contains(&self, subject: &str) -> bool {
        match self {
            SenderList::Any => true,
            SenderList::Only(items) => items.contains(subject),
        }
    }
}

/// How CloudEvents are received and answered.
#[derive(Debug, Clone, Deserialize)]
pub struct EventsConfig {
    /// Authentication of CloudEvent senders: `off` (default: events only from loopback peers,
    /// unless `EVENTS_TRUST_NETWORK`) or `oidc` (a verified OIDC token of an allowed sender).
    #[serde(default = "default_events_auth")]
    pub events_auth: EventsAuth,
    /// With `EVENTS_AUTH=off`: accept unauthenticated events from any peer (and allow binding a
    /// non-loopback address), so whoever reaches the port may start runs as any user. Only for
    /// a network where every sender is trusted; a warning is logged at every start.
    #[serde(default, deserialize_with = "super::lenient_bool")]
    pub events_trust_network: bool,
    /// Required `iss` of sender tokens, e.g. `https://kubernetes.default.svc.cluster.local`
    /// (the cluster's service account issuer). Required with `EVENTS_AUTH=oidc`.
    #[serde(default)]
    pub events_oidc_issuer: Option<String>,
    /// Required `aud` of sender tokens: the audience Knative requests tokens for when it
    /// delivers to this service. Required with `EVENTS_AUTH=oidc`.
    #[serde(default)]
    pub events_oidc_audience: Option<String>,
    /// Where the issuer's signing keys (JWKS) are fetched. Default: the `jwks_uri` of
    /// `<issuer>/.well-known/openid-configuration`.
    #[serde(default)]
    pub events_oidc_jwks_url: Option<String>,
    /// PEM file of the CA certificates trusted for the discovery and JWKS requests (only these
    /// then). Default: the in-cluster service account's `ca.crt` for URLs of the cluster's API
    /// server, the system roots otherwise.
    #[serde(default)]
    pub events_oidc_ca_file: Option<String>,
    /// File holding a bearer token sent with the discovery and JWKS requests (re-read on each
    /// fetch, since projected tokens rotate). Default: the in-cluster service account token, and
    /// only to the cluster's API server.
    #[serde(default)]
    pub events_oidc_bearer_token_file: Option<String>,
    /// Shortest time in seconds between two JWKS fetches: a token with an unknown key id
    /// triggers a refetch at most this often.
    #[serde(
        rename = "events_oidc_refresh_interval_secs",
        default = "default_events_oidc_refresh",
        deserialize_with = "super::secs"
    )]
    pub events_oidc_refresh_interval: Duration,
    /// Token subjects (`sub`, e.g. `system:serviceaccount:<namespace>:<name>`) allowed to send
    /// events at all, comma-separated; empty or `*`: any valid token.
    #[serde(default)]
    events_allowed_senders: String,
    /// Token subjects allowed to name a `user` in `pipeline.execute` events (to start runs as
    /// that user), comma-separated; `*`: every allowed sender. Empty: none (such events get 403).
    #[serde(default)]
    events_user_senders: String,
    /// `source` of reply CloudEvents.
    #[serde(default = "default_notif_source")]
    pub notif_response_source: String,
    /// Prefix of reply CloudEvent types (`.ok`, `.accepted`, `.duplicate`, `.ignored` appended).
    #[serde(default = "default_notif_prefix")]
    pub notif_response_type_prefix: String,
    /// `EVENTS_ALLOWED_SENDERS`, parsed (empty: any valid token).
    #[serde(skip)]
    pub allowed_senders: SenderList,
    /// `EVENTS_USER_SENDERS`, parsed (empty: none).
    #[serde(skip)]
    pub user_senders: SenderList,
}

impl EventsConfig {
    /// `EVENTS_AUTH=oidc` needs an issuer and an audience; the issuer and JWKS URLs must be
    /// https (plain http only to a loopback address, for tests and port-forwards).
    pub(super) fn check(&mut self) -> Result<(), ConfigError> {
        self.allowed_senders = SenderList::parse(&self.events_allowed_senders, true);
        self.user_senders = SenderList::parse(&self.events_user_senders, false);
        if self.events_auth == EventsAuth::Off {
            return Ok(());
        }
        if self.events_oidc_issuer.is_none() {
            return Err(ConfigError(
                "EVENTS_OIDC_ISSUER is required with EVENTS_AUTH=oidc".into(),
            ));
        }
        if self.events_oidc_audience.is_none() {
            return Err(ConfigError(
                "EVENTS_OIDC_AUDIENCE is required with EVENTS_AUTH=oidc".into(),
            ));
        }
        check_url("EVENTS_OIDC_ISSUER", self.events_oidc_issuer.as_deref())?;
        check_url("EVENTS_OIDC_JWKS_URL", self.events_oidc_jwks_url.as_deref())
    }

    /// Whether unauthenticated events are accepted from any peer: `EVENTS_AUTH=off` with
    /// `EVENTS_TRUST_NETWORK=true`. Otherwise, with `EVENTS_AUTH=off`, only from loopback.
    pub fn from_any_peer(&self) -> bool {
        self.events_auth == EventsAuth::Off && self.events_trust_network
    }
}

fn default_events_auth() -> EventsAuth {
    EventsAuth::Off
}

fn default_events_oidc_refresh() -> Duration {
    Duration::from_secs(30)
}

fn default_notif_source() -> String {
    "/eoepca/application-quality".into()
}

fn default_notif_prefix() -> String {
    "org.eoepca.application-quality.response".into()
}
