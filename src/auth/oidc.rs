//! Authentication of CloudEvent senders with OIDC tokens (`EVENTS_AUTH=oidc`).
//!
//! Knative Eventing's `authentication-oidc` feature makes every sender (a Trigger's delivery
//! from the broker, a source) attach `Authorization: Bearer <token>`: a Kubernetes service
//! account token of the sender's own identity, issued for the receiver's audience. Without it,
//! anyone who can reach the ingress can start runs as any user by naming them in `ce-user`.
//!
//! [`SenderVerifier`] checks such a token: signature against the issuer's published keys
//! (JWKS), `iss`, `aud`, `exp`/`nbf`, and a `sub`. The keys are fetched on the first
//! authenticated event, never at start-up (scale-to-zero cold starts stay free of network
//! calls), then cached: a token with an unknown key id triggers a refetch at most once per
//! `EVENTS_OIDC_REFRESH_INTERVAL_SECS`, the set is refreshed when older than an hour, and one
//! fetch runs at a time whatever the number of waiting requests. A request that cannot be
//! checked because the JWKS is unreachable gets 503 with `Retry-After` (Knative retries it).
//!
//! Policy: `EVENTS_ALLOWED_SENDERS` lists the subjects that may send at all (empty: any valid
//! token); `EVENTS_USER_SENDERS` those that may name a `user` in `pipeline.execute` events.
//! The [`EventSender`] extractor (in `crate::http::auth`) applies the first and carries the
//! second to the handler.
//!
//! With `EVENTS_AUTH=off` nobody is authenticated, so the extractor accepts events only from
//! this machine (a loopback peer that is not a proxy forwarding someone else), unless
//! `EVENTS_TRUST_NETWORK=true` declares every peer trusted; others get 403.

pub use crate::config::events::SenderList;
use crate::{
    config::{Config, EventsAuth},
    error::AppError,
};
use anyhow::{Context, anyhow, bail};
use axum::body::Bytes;
use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, Jwk, PublicKeyUse},
};
use serde::Deserialize;
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

/// The in-cluster service account's CA bundle (mounted by Kubernetes).
const IN_CLUSTER_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
/// The in-cluster service account's token (projected, rotated by the kubelet).
const IN_CLUSTER_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The key set is refetched (on the next authenticated event) when older than this.
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
/// After a failed fetch, the next attempt waits at least this long (or the refresh interval,
/// when shorter).
const FAILURE_BACKOFF: Duration = Duration::from_secs(2);
/// `Retry-After` of a 503 caused by an unreachable JWKS.
const RETRY_AFTER_SECS: u64 = 2;
/// Bound on one discovery or JWKS request, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest discovery document or JWKS read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;

/// Signature algorithms accepted in sender tokens: asymmetric only (a key published in a JWKS
/// must never be usable as an HMAC secret).
const ACCEPTED_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Who sent an event, as established by [`SenderVerifier`] (or not at all when
/// `EVENTS_AUTH=off`).
#[derive(Debug, Clone)]
pub struct EventSender {
    /// The verified `sub` of the sender's token; `None` when sender authentication is off.
    pub subject: Option<String>,
    /// Whether this sender may name a `user` in a `pipeline.execute` event.
    pub may_name_user: bool,
}

impl EventSender {
    /// The sender when authentication is off: anonymous and trusted (it is this machine, or a
    /// network the operator declared trusted with `EVENTS_TRUST_NETWORK`).
    pub fn unauthenticated() -> Self {
        EventSender {
            subject: None,
            may_name_user: true,
        }
    }
}

/// Which key family an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
    Ed,
}

fn family_of(alg: Algorithm) -> Option<Family> {
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => Some(Family::Rsa),
        Algorithm::ES256 | Algorithm::ES384 => Some(Family::Ec),
        Algorithm::EdDSA => Some(Family::Ed),
        // HMAC, and whatever a future version adds: not accepted.
        _ => None,
    }
}

/// One usable verification key of the JWKS.
#[derive(Clone)]
struct VerifyKey {
    kid: Option<String>,
    /// The JWK's `alg`, when it pins one.
    alg: Option<Algorithm>,
    family: Family,
    key: DecodingKey,
}

impl VerifyKey {
    /// Keys of a JWK that can verify signatures; others (encryption keys, symmetric keys,
    /// unknown types) are skipped.
    fn from_jwk(value: Value) -> Option<Self> {
        let jwk: Jwk = serde_json::from_value(value).ok()?;
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            return None;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Family::Rsa,
            AlgorithmParameters::EllipticCurve(_) => Family::Ec,
            AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
            // Symmetric keys and unknown key types.
            _ => return None,
        };
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(ka) => {
                // An encryption algorithm (no `Algorithm`) or another family: not a key for us.
                let alg = Algorithm::from_str(&ka.to_string()).ok()?;
                if family_of(alg) != Some(family) {
                    return None;
                }
                Some(alg)
            }
        };
        let key = DecodingKey::from_jwk(&jwk).ok()?;
        Some(VerifyKey {
            kid: jwk.common.key_id,
            alg,
            family,
            key,
        })
    }

    fn fits(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        family_of(alg) == Some(self.family)
            && self.alg.is_none_or(|a| a == alg)
            && kid.is_none_or(|k| self.kid.as_deref() == Some(k))
    }
}

/// The cached key set.
#[derive(Default)]
struct KeySet {
    keys: Vec<VerifyKey>,
    fetched_at: Option<Instant>,
}

impl KeySet {
    fn matching(&self, alg: Algorithm, kid: Option<&str>) -> Vec<VerifyKey> {
        self.keys
            .iter()
            .filter(|k| k.fits(alg, kid))
            .cloned()
            .collect()
    }

    fn is_stale(&self) -> bool {
        self.fetched_at.is_none_or(|t| t.elapsed() >= KEYS_MAX_AGE)
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Fetch bookkeeping, behind the lock that lets one fetch run at a time.
#[derive(Default)]
struct FetchState {
    /// Built on the first fetch (reading CA files is no cold-start work).
    clients: Vec<(Option<PathBuf>, HttpClient)>,
    last_attempt: Option<Instant>,
    last_failed: bool,
    /// When a discovery fetch of its own (not one for the keys) last failed.
    discovery_failed_at: Option<Instant>,
}

/// The parts of an issuer's discovery document this service uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    /// Must equal the configured issuer.
    pub issuer: String,
    /// Where the signing keys are.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Where browsers are sent to sign in.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Where authorization codes are exchanged.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// RP-initiated logout.
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Value>,
}

/// How the audience of a token is checked.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// `aud` must contain this value.
    Exactly(&'a str),
    /// `aud` must contain one of these values, or `azp` (the client the token was issued to)
    /// must be one of them: an IAM's access tokens often carry a generic `aud` (Keycloak:
    /// `account`) and name the requesting client in `azp`.
    AnyOrAuthorizedParty(&'a [String]),
}

/// Settings of one [`Issuer`].
#[derive(Debug, Clone)]
pub struct IssuerOptions {
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// What its tokens are called in error messages ("sender token", "ID token", ...).
    pub label: &'static str,
    /// A configured JWKS URL; default: the discovery document's `jwks_uri`.
    pub jwks_url: Option<url::Url>,
    /// Discovery document; default: `<issuer>/.well-known/openid-configuration`.
    pub discovery_url: Option<url::Url>,
    /// PEM CA file trusted for its requests (only these then).
    pub ca_file: Option<PathBuf>,
    /// File with a bearer token sent with discovery and JWKS requests.
    pub bearer_token_file: Option<PathBuf>,
    /// Shortest time between two key fetches caused by unknown key ids.
    pub refresh_interval: Duration,
    /// Pins one signature algorithm (e.g. `OIDC_RP_SIGN_ALGO`); default: every asymmetric one.
    pub algorithm: Option<Algorithm>,
}

/// An OpenID issuer whose tokens this service verifies: its discovery document and signing
/// keys are fetched lazily (never at start-up) and cached, as described in the module
/// documentation. One type for every issuer: Knative's event senders, the IAM (ID tokens of the
/// browser sign-in, access tokens on the REST API), and CI workload identities.
pub struct Issuer {
    options: IssuerOptions,
    discovery_url: url::Url,
    keys: RwLock<KeySet>,
    discovery: RwLock<Option<Arc<Discovery>>>,
    fetch: tokio::sync::Mutex<FetchState>,
}

impl Issuer {
    /// An issuer; does no I/O. Fails only on an issuer that cannot make a discovery URL.
    pub fn new(options: IssuerOptions) -> anyhow::Result<Self> {
        let discovery_url = match &options.discovery_url {
            Some(u) => u.clone(),
            None => url::Url::parse(&format!(
                "{}/.well-known/openid-configuration",
                options.issuer.trim_end_matches('/')
            ))
            .with_context(|| format!("the issuer {:?} is not a URL", options.issuer))?,
        };
        Ok(Issuer {
            options,
            discovery_url,
            keys: RwLock::new(KeySet::default()),
            discovery: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
        })
    }

    /// The `iss` of its tokens.
    pub fn issuer(&self) -> &str {
        &self.options.issuer
    }

    /// Whether a token's (unverified) `iss` names this issuer.
    pub fn is_issuer(&self, iss: &str) -> bool {
        iss.trim_end_matches('/') == self.options.issuer.trim_end_matches('/')
    }

    /// Checks a token (signature, `iss`, the audience, `exp`/`nbf`, a non-empty `sub`) and
    /// returns its claims: 401 with the reason when it is not valid, 503 when the keys cannot
    /// be fetched.
    pub async fn verify(
        &self,
        token: &str,
        audience: Audience<'_>,
    ) -> Result<serde_json::Map<String, Value>, AppError> {
        let label = self.options.label;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| unauthorized(format!("The {label} is not a well-formed JWT.")))?;
        let accepted = match self.options.algorithm {
            Some(pinned) => header.alg == pinned,
            None => ACCEPTED_ALGORITHMS.contains(&header.alg),
        };
        if !accepted {
            return Err(unauthorized(format!(
                "The {label}'s algorithm {:?} is not accepted (asymmetric signatures only{}).",
                header.alg,
                match self.options.algorithm {
                    Some(a) => format!(", {a:?} configured"),
                    None => String::new(),
                }
            )));
        }
        let keys = self.keys_for(header.alg, header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.options.issuer]);
        // Checked below, with the `azp` rule.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        let mut last = None;
        for key in &keys {
            match jsonwebtoken::decode::<serde_json::Map<String, Value>>(
                token,
                &key.key,
                &validation,
            ) {
                Ok(data) => {
                    let claims = data.claims;
                    if claims
                        .get("sub")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        return Err(token_error(
                            &ErrorKind::MissingRequiredClaim("sub".into()),
                            label,
                        ));
                    }
                    if !audience_matches(&claims, audience) {
                        return Err(token_error(&ErrorKind::InvalidAudience, label));
                    }
                    return Ok(claims);
                }
                // Another key (without a kid to pick it) may still fit.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => last = Some(e),
                Err(e) => return Err(token_error(e.kind(), label)),
            }
        }
        Err(match last {
            Some(e) => token_error(e.kind(), label),
            None => unknown_key(label),
        })
    }

    /// The discovery document, fetched on first use and cached (refreshed with the keys).
    pub async fn discovery(&self) -> Result<Arc<Discovery>, AppError> {
        if let Some(doc) = self.discovery.read().expect("discovery lock").clone() {
            return Ok(doc);
        }
        let mut fetch = self.fetch.lock().await;
        if let Some(doc) = self.discovery.read().expect("discovery lock").clone() {
            return Ok(doc);
        }
        if fetch
            .discovery_failed_at
            .is_some_and(|at| at.elapsed() < FAILURE_BACKOFF)
        {
            return Err(self.unavailable());
        }
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch_discovery(&mut fetch)).await {
            Ok(Ok(doc)) => {
                fetch.discovery_failed_at = None;
                Ok(doc)
            }
            outcome => {
                fetch.discovery_failed_at = Some(Instant::now());
                let error = match outcome {
                    Ok(Err(e)) => format!("{e:#}"),
                    _ => format!("no answer within {} s", FETCH_TIMEOUT.as_secs()),
                };
                tracing::error!(issuer = %self.options.issuer, %error, "cannot fetch the issuer's discovery document");
                Err(self.unavailable())
            }
        }
    }

    /// POSTs a form (the token endpoint's code exchange) with optional HTTP Basic client
    /// credentials; returns the status and the (bounded) body.
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> anyhow::Result<(http::StatusCode, Bytes)> {
        let url = url::Url::parse(url).with_context(|| format!("{url:?} is not a URL"))?;
        let client = {
            let mut fetch = self.fetch.lock().await;
            self.client(&mut fetch, &url)?.0
        };
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = http::Request::post(url.as_str())
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from(body)))
            .context("building the request")?;
        if let Some((user, password)) = basic {
            // RFC 6749 2.3.1: both parts form-encoded before the Basic encoding.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(user),
                enc(password)
            ));
            req.headers_mut().insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_str(&format!("Basic {credentials}"))
                    .context("client credentials")?,
            );
        }
        let response = tokio::time::timeout(FETCH_TIMEOUT, client.request(req))
            .await
            .map_err(|_| anyhow!("POST {url}: no answer within {} s", FETCH_TIMEOUT.as_secs()))?
            .map_err(|e| anyhow!("POST {url}: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow!("POST {url}: reading the answer: {e}"))?
            .to_bytes();
        Ok((status, body))
    }

    fn unavailable(&self) -> AppError {
        AppError::Unavailable {
            detail: format!(
                "The identity provider {} cannot be reached right now; retry later.",
                self.options.issuer
            ),
            retry_after: RETRY_AFTER_SECS,
        }
    }

    /// The cached keys that fit the token, fetching the key set when there is none yet, when
    /// it is stale, or when the token names an unknown key (rate-limited).
    async fn keys_for(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Vec<VerifyKey>, AppError> {
        let label = self.options.label;
        if let Some(keys) = self.cached(alg, kid) {
            return Ok(keys);
        }
        // One fetch at a time; requests that waited for it find its result in the cache.
        let mut fetch = self.fetch.lock().await;
        if let Some(keys) = self.cached(alg, kid) {
            return Ok(keys);
        }
        let (have_keys, stale_keys) = {
            let set = self.keys.read().expect("key cache lock");
            (set.fetched_at.is_some(), set.matching(alg, kid))
        };
        let wait = if fetch.last_failed {
            FAILURE_BACKOFF.min(self.options.refresh_interval)
        } else {
            self.options.refresh_interval
        };
        if let Some(at) = fetch.last_attempt
            && at.elapsed() < wait
        {
            return if !stale_keys.is_empty() {
                Ok(stale_keys)
            } else if fetch.last_failed || !have_keys {
                Err(jwks_unavailable(label))
            } else {
                Err(unknown_key(label))
            };
        }
        fetch.last_attempt = Some(Instant::now());
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch_keys(&mut fetch)).await {
            Ok(Ok(keys)) => {
                fetch.last_failed = false;
                tracing::info!(issuer = %self.options.issuer, keys = keys.len(), "fetched the signing keys of an issuer");
                let mut set = self.keys.write().expect("key cache lock");
                *set = KeySet {
                    keys,
                    fetched_at: Some(Instant::now()),
                };
                let keys = set.matching(alg, kid);
                if keys.is_empty() {
                    Err(unknown_key(label))
                } else {
                    Ok(keys)
                }
            }
            outcome => {
                fetch.last_failed = true;
                let error = match outcome {
                    Ok(Err(e)) => format!("{e:#}"),
                    _ => format!("no answer within {} s", FETCH_TIMEOUT.as_secs()),
                };
                // Keys of a stale set still verify what they signed; only new keys wait.
                if !stale_keys.is_empty() {
                    tracing::warn!(issuer = %self.options.issuer, %error, "refreshing the signing keys failed; keeping the old ones");
                    return Ok(stale_keys);
                }
                tracing::error!(issuer = %self.options.issuer, %error, "cannot fetch the signing keys");
                Err(jwks_unavailable(label))
            }
        }
    }

    /// Fresh keys from the cache that fit, if any.
    fn cached(&self, alg: Algorithm, kid: Option<&str>) -> Option<Vec<VerifyKey>> {
        let set = self.keys.read().expect("key cache lock");
        if set.is_stale() {
            return None;
        }
        let keys = set.matching(alg, kid);
        (!keys.is_empty()).then_some(keys)
    }

    /// Fetches the discovery document, checks its issuer and caches it.
    async fn fetch_discovery(&self, fetch: &mut FetchState) -> anyhow::Result<Arc<Discovery>> {
        let url = &self.discovery_url;
        let doc: Discovery = serde_json::from_slice(&self.get(fetch, url).await?)
            .with_context(|| format!("{url} is not an OpenID discovery document"))?;
        if !self.is_issuer(&doc.issuer) {
            bail!(
                "{url} names the issuer {:?}, not the configured {:?}",
                doc.issuer,
                self.options.issuer
            );
        }
        let doc = Arc::new(doc);
        *self.discovery.write().expect("discovery lock") = Some(doc.clone());
        Ok(doc)
    }

    /// Fetches the JWKS (through discovery when no JWKS URL is configured).
    async fn fetch_keys(&self, fetch: &mut FetchState) -> anyhow::Result<Vec<VerifyKey>> {
        let jwks_url = match &self.options.jwks_url {
            Some(url) => url.clone(),
            None => {
                let doc = self.fetch_discovery(fetch).await?;
                let url = &self.discovery_url;
                let jwks_uri = doc.jwks_uri.as_deref().unwrap_or("");
                url::Url::parse(jwks_uri)
                    .ok()
                    .filter(crate::config::is_secure_or_loopback)
                    .with_context(|| format!("{url}: jwks_uri {jwks_uri:?} is not an https URL"))?
            }
        };
        let set: JwkSet = serde_json::from_slice(&self.get(fetch, &jwks_url).await?)
            .with_context(|| format!("{jwks_url} is not a JWK set"))?;
        let keys: Vec<VerifyKey> = set
            .keys
            .into_iter()
            .filter_map(VerifyKey::from_jwk)
            .collect();
        if keys.is_empty() {
            bail!("{jwks_url} has no usable signature verification key");
        }
        Ok(keys)
    }

    /// The client for a URL (the configured CA, or the in-cluster one for the cluster's API
    /// server) and the bearer token file to use with it.
    fn client(
        &self,
        fetch: &mut FetchState,
        url: &url::Url,
    ) -> anyhow::Result<(HttpClient, Option<PathBuf>)> {
        let in_cluster = is_cluster_api(url);
        let ca = self
            .options
            .ca_file
            .clone()
            .or_else(|| in_cluster_file(in_cluster, IN_CLUSTER_CA));
        let token_file = self
            .options
            .bearer_token_file
            .clone()
            .or_else(|| in_cluster_file(in_cluster, IN_CLUSTER_TOKEN));
        let client = match fetch.clients.iter().find(|(c, _)| *c == ca) {
            Some((_, client)) => client.clone(),
            None => {
                let client = http_client(ca.as_deref())?;
                fetch.clients.push((ca, client.clone()));
                client
            }
        };
        Ok((client, token_file))
    }

    /// GET a JSON document, with the configured (or in-cluster) CA and bearer token.
    async fn get(&self, fetch: &mut FetchState, url: &url::Url) -> anyhow::Result<Bytes> {
        let (client, token_file) = self.client(fetch, url)?;
        let mut req = http::Request::get(url.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .context("building the request")?;
        if let Some(path) = token_file {
            let token = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the bearer token file {}", path.display()))?;
            let value = http::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .context("the bearer token is not a valid header value")?;
            req.headers_mut().insert(http::header::AUTHORIZATION, value);
        }
        let response = client
            .request(req)
            .await
            .map_err(|e| anyhow!("GET {url}: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow!("GET {url}: reading the answer: {e}"))?
            .to_bytes();
        if !status.is_success() {
            bail!("GET {url}: HTTP {}", status.as_u16());
        }
        Ok(body)
    }
}

/// Whether the claims' `aud` (a string or an array) satisfies the rule.
fn audience_matches(claims: &serde_json::Map<String, Value>, audience: Audience<'_>) -> bool {
    let auds: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    match audience {
        Audience::Exactly(want) => auds.contains(&want),
        Audience::AnyOrAuthorizedParty(list) => {
            auds.iter().any(|a| list.iter().any(|w| w == a))
                || claims
                    .get("azp")
                    .and_then(Value::as_str)
                    .is_some_and(|azp| list.iter().any(|w| w == azp))
        }
    }
}

/// The `iss` of a JWT, read without verifying anything (to pick the issuer that must verify
/// it); `None` for anything that is not a JWT with a string `iss`.
pub fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    if payload.len() > 16 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}

/// Verifies sender tokens and holds the sender policy (see the module documentation).
pub struct SenderVerifier {
    issuer: Issuer,
    audience: String,
    /// Subjects that may send events.
    pub allowed: SenderList,
    /// Subjects that may name a `user` in `pipeline.execute` events.
    pub user_senders: SenderList,
}

impl SenderVerifier {
    /// The verifier of a configuration with `EVENTS_AUTH=oidc` (`None` when off). Does no I/O:
    /// the keys are fetched on the first authenticated event.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Self>> {
        if config.events.events_auth == EventsAuth::Off {
            return Ok(None);
        }
        let issuer = config
            .events
            .events_oidc_issuer
            .clone()
            .context("EVENTS_OIDC_ISSUER is required")?;
        let audience = config
            .events
            .events_oidc_audience
            .clone()
            .context("EVENTS_OIDC_AUDIENCE is required")?;
        let jwks_url = match &config.events.events_oidc_jwks_url {
            Some(u) => Some(url::Url::parse(u).context("EVENTS_OIDC_JWKS_URL")?),
            None => None,
        };
        let issuer = Issuer::new(IssuerOptions {
            issuer,
            label: "sender token",
            jwks_url,
            discovery_url: None,
            ca_file: config
                .events
                .events_oidc_ca_file
                .as_ref()
                .map(PathBuf::from),
            bearer_token_file: config
                .events
                .events_oidc_bearer_token_file
                .as_ref()
                .map(PathBuf::from),
            refresh_interval: config.events.events_oidc_refresh_interval,
            algorithm: None,
        })
        .context("EVENTS_OIDC_ISSUER")?;
        Ok(Some(SenderVerifier {
            issuer,
            audience,
            allowed: config.events.allowed_senders.clone(),
            user_senders: config.events.user_senders.clone(),
        }))
    }

    /// Checks a token and returns its subject: 401 when it is not a valid token of the issuer
    /// for our audience, 503 when the keys cannot be fetched.
    pub async fn verify(&self, token: &str) -> Result<String, AppError> {
        let claims = self
            .issuer
            .verify(token, Audience::Exactly(&self.audience))
            .await?;
        Ok(claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }
}

/// Whether a URL is the cluster's API server as seen from a pod, whose CA and service account
/// token are the in-cluster defaults (they are never sent anywhere else).
fn is_cluster_api(url: &url::Url) -> bool {
    url.scheme() == "https"
        && url.host_str().is_some_and(|h| {
            let h = h.to_ascii_lowercase();
            h == "kubernetes"
                || h == "kubernetes.default"
                || h == "kubernetes.default.svc"
                || h.starts_with("kubernetes.default.svc.")
        })
}

fn in_cluster_file(in_cluster: bool, path: &str) -> Option<PathBuf> {
    (in_cluster && Path::new(path).is_file()).then(|| PathBuf::from(path))
}

/// An HTTP/1.1 client for http and https URLs: TLS through the ring provider (no process-wide
/// default needed), trusting only the CA file when there is one, else the system roots.
fn http_client(ca_file: Option<&Path>) -> anyhow::Result<HttpClient> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS configuration")
    };
    let tls = match ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading the CA file {}", path.display()))?
            {
                let cert =
                    cert.with_context(|| format!("parsing the CA file {}", path.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("a certificate of {}", path.display()))?;
            }
            builder()?
                .with_root_certificates(roots)
                .with_no_client_auth()
        }
        // No system roots (e.g. a scratch image): only plain http to loopback works then.
        None => match builder()?.with_native_roots() {
            Ok(b) => b.with_no_client_auth(),
            Err(_) => builder()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        },
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(FETCH_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

fn unauthorized(msg: impl Into<String>) -> AppError {
    AppError::Unauthorized(msg.into())
}

fn unknown_key(label: &str) -> AppError {
    unauthorized(format!("The {label} is signed with an unknown key."))
}

fn jwks_unavailable(label: &str) -> AppError {
    AppError::Unavailable {
        detail: format!(
            "The signing keys of the {label}'s issuer cannot be fetched right now; retry later."
        ),
        retry_after: RETRY_AFTER_SECS,
    }
}

/// What a caller is told about a token that does not verify.
fn token_error(kind: &ErrorKind, label: &str) -> AppError {
    unauthorized(match kind {
        ErrorKind::ExpiredSignature => format!("The {label} is expired."),
        ErrorKind::ImmatureSignature => format!("The {label} is not valid yet."),
        ErrorKind::InvalidAudience => format!("The {label} is not for this service (audience)."),
        ErrorKind::InvalidIssuer => format!("The {label} is from another issuer."),
        ErrorKind::InvalidSignature => format!("The {label}'s signature is invalid."),
        ErrorKind::MissingRequiredClaim(_) => {
            format!("The {label} lacks a required claim (exp, iss, aud, sub).")
        }
        _ => format!("The {label} is invalid."),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sender_lists() {
        assert_eq!(SenderList::parse("", true), SenderList::Any);
        assert!(!SenderList::parse("", false).contains("a"));
        assert!(SenderList::parse("a, *", false).contains("b"));
        let l = SenderList::parse(" a , system:serviceaccount:ns:b ", false);
        assert!(l.contains("a") && l.contains("system:serviceaccount:ns:b"));
        assert!(!l.contains("system:serviceaccount:ns:c"));
    }

    #[test]
    fn only_the_cluster_api_gets_in_cluster_credentials() {
        for (url, expected) in [
            ("https://kubernetes.default.svc.cluster.local", true),
            ("https://kubernetes.default.svc/openid/v1/jwks", true),
            ("https://KUBERNETES.default.svc:443", true),
            ("http://kubernetes.default.svc", false),
            ("https://kubernetes.default.evil.example", false),
            ("https://oidc.eks.eu-west-1.amazonaws.com/id/X", false),
        ] {
            assert_eq!(
                is_cluster_api(&url::Url::parse(url).unwrap()),
                expected,
                "{url}"
            );
        }
    }

    #[test]
    fn jwks_keys_are_filtered() {
        let rsa = json!({"kty": "RSA", "kid": "r", "alg": "RS256", "use": "sig",
                         "n": "sXch", "e": "AQAB"});
        let k = VerifyKey::from_jwk(rsa).unwrap();
        assert!(k.fits(Algorithm::RS256, Some("r")));
        assert!(!k.fits(Algorithm::RS384, Some("r")), "the JWK pins RS256");
        assert!(!k.fits(Algorithm::RS256, Some("other")));
        assert!(!k.fits(Algorithm::ES256, None));
        assert!(k.fits(Algorithm::RS256, None));
        // Symmetric keys, encryption keys and mismatched algorithms are never used.
        assert!(VerifyKey::from_jwk(json!({"kty": "oct", "k": "c2VjcmV0"})).is_none());
        assert!(
            VerifyKey::from_jwk(json!({"kty": "RSA", "use": "enc", "n": "sXch", "e": "AQAB"}))
                .is_none()
        );
        assert!(
            VerifyKey::from_jwk(json!({"kty": "RSA", "alg": "HS256", "n": "sXch", "e": "AQAB"}))
                .is_none()
        );
        assert!(VerifyKey::from_jwk(json!({"kty": "weird"})).is_none());
    }

    #[test]
    fn token_errors_are_401() {
        for kind in [
            ErrorKind::ExpiredSignature,
            ErrorKind::InvalidAudience,
            ErrorKind::InvalidIssuer,
            ErrorKind::InvalidToken,
        ] {
            assert_eq!(
                token_error(&kind, "sender token").status(),
                http::StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(
            jwks_unavailable("sender token").status(),
            http::StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
