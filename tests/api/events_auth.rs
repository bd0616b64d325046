//! Sender authentication of the CloudEvents ingress (`EVENTS_AUTH=oidc`, issue 7): tokens signed
//! with keys generated here, served by a small OIDC issuer (discovery document + JWKS) on a
//! loopback port that counts its requests.

use crate::events::support::{
    EventApp, binary, deliver, execute, execute_payload, run_count, spawn, spawn_with_env,
};
use application_quality_api::db::entities::received_event;
use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use std::{
    net::SocketAddr,
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

/// The audience Knative requests tokens for when it delivers to the service.
const AUDIENCE: &str = "serving.knative.dev/service/application-quality/application-quality-api";
/// The Trigger's OIDC identity (Knative names it `<trigger>oidc-eventing.knative.dev-trigger`).
const TRIGGER: &str = "system:serviceaccount:application-quality:application-quality-apioidc-eventing.knative.dev-trigger";
/// Another workload of the cluster, able to get a token for our audience.
const STRANGER: &str = "system:serviceaccount:default:default";
const HEALTH: &str = "org.eoepca.application-quality.probes.health";

/// A signing key and its public JWK.
pub(crate) struct Signer {
    pub(crate) alg: Algorithm,
    pub(crate) kid: String,
    pub(crate) key: EncodingKey,
    pub(crate) jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn rsa_signer(kid: &str) -> Signer {
    use rsa::{pkcs1::EncodeRsaPrivateKey, rand_core::OsRng, traits::PublicKeyParts};
    let private = rsa::RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let der = private.to_pkcs1_der().unwrap();
    Signer {
        alg: Algorithm::RS256,
        kid: kid.into(),
        key: EncodingKey::from_rsa_der(der.as_bytes()),
        jwk: json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": b64(&private.n().to_bytes_be()),
            "e": b64(&private.e().to_bytes_be()),
        }),
    }
}

pub(crate) fn ec_signer(kid: &str) -> Signer {
    use p256::{
        elliptic_curve::{rand_core::OsRng, sec1::ToEncodedPoint},
        pkcs8::EncodePrivateKey,
    };
    let secret = p256::SecretKey::random(&mut OsRng);
    let point = secret.public_key().to_encoded_point(false);
    Signer {
        alg: Algorithm::ES256,
        kid: kid.into(),
        key: EncodingKey::from_ec_der(secret.to_pkcs8_der().unwrap().as_bytes()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": b64(point.x().unwrap()),
            "y": b64(point.y().unwrap()),
        }),
    }
}

/// The cluster's signing key (RSA, as Kubernetes' service account keys usually are), and an
/// attacker's key that claims the same key id. Generated once per test process.
static CLUSTER_KEY: LazyLock<Signer> = LazyLock::new(|| rsa_signer("cluster-1"));
static FORGED_KEY: LazyLock<Signer> = LazyLock::new(|| rsa_signer("cluster-1"));

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A token with these claims, signed by `signer` (its kid in the header).
pub(crate) fn sign(signer: &Signer, claims: &Value) -> String {
    let mut header = Header::new(signer.alg);
    header.kid = Some(signer.kid.clone());
    jsonwebtoken::encode(&header, claims, &signer.key).unwrap()
}

/// A Kubernetes-shaped service account token of `sub`, valid for ten minutes.
fn claims(issuer: &str, sub: &str) -> Value {
    let (namespace, name) = sub
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
        .unwrap_or(("", ""));
    json!({
        "iss": issuer, "aud": [AUDIENCE], "sub": sub,
        "iat": now(), "nbf": now(), "exp": now() + 600,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name}},
    })
}

/// An OIDC issuer on a loopback port: discovery at `/.well-known/openid-configuration`, the
/// JWKS at `/keys`. Counts requests; `fail` makes it answer 500.
#[derive(Clone)]
pub(crate) struct Issuer {
    pub(crate) url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    discovery_hits: Arc<AtomicUsize>,
    jwks_hits: Arc<AtomicUsize>,
    fail: Arc<AtomicBool>,
}

impl Issuer {
    pub(crate) async fn start(keys: Vec<Value>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, keys)
    }

    /// Serves on `listener` (a port chosen before, e.g. one the app already failed to reach).
    fn serve(listener: tokio::net::TcpListener, keys: Vec<Value>) -> Self {
        let addr: SocketAddr = listener.local_addr().unwrap();
        let issuer = Issuer {
            url: format!("http://{addr}"),
            keys: Arc::new(Mutex::new(keys)),
            discovery_hits: Arc::default(),
            jwks_hits: Arc::default(),
            fail: Arc::default(),
        };
        let router = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(i): State<Issuer>| async move {
                    i.discovery_hits.fetch_add(1, Ordering::SeqCst);
                    Json(json!({
                        "issuer": i.url,
                        "jwks_uri": format!("{}/keys", i.url),
                        "response_types_supported": ["id_token"],
                        "subject_types_supported": ["public"],
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }))
                }),
            )
            .route(
                "/keys",
                get(|State(i): State<Issuer>| async move {
                    i.jwks_hits.fetch_add(1, Ordering::SeqCst);
                    if i.fail.load(Ordering::SeqCst) {
                        return Err(StatusCode::INTERNAL_SERVER_ERROR);
                    }
                    Ok(Json(json!({"keys": *i.keys.lock().unwrap()})))
                }),
            )
            .with_state(issuer.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        issuer
    }

    pub(crate) fn hits(&self) -> (usize, usize) {
        (
            self.discovery_hits.load(Ordering::SeqCst),
            self.jwks_hits.load(Ordering::SeqCst),
        )
    }

    fn token(&self, sub: &str) -> String {
        sign(&CLUSTER_KEY, &claims(&self.url, sub))
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A seeded app verifying senders against `issuer_url`, with extra settings.
async fn spawn_oidc(issuer_url: &str, extra: &[(&str, &str)]) -> EventApp {
    let mut vars = env(&[
        ("EVENTS_AUTH", "oidc"),
        ("EVENTS_OIDC_ISSUER", issuer_url),
        ("EVENTS_OIDC_AUDIENCE", AUDIENCE),
    ]);
    vars.extend(env(extra));
    spawn_with_env(vars).await
}

fn health(t: &EventApp, id: &str, token: Option<&str>) -> reqwest::RequestBuilder {
    let req = binary(
        &t.app,
        "/api/events/",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", id),
            ("ce-source", "/tests/auth"),
            ("ce-type", HEALTH),
        ],
        "{}",
    );
    match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}

fn execute_as(t: &EventApp, id: &str, token: &str) -> reqwest::RequestBuilder {
    execute(
        &t.app,
        "/api/events/",
        id,
        "event",
        t.pipeline_id,
        &execute_payload(),
    )
    .bearer_auth(token)
}

async fn stored_events(t: &EventApp) -> u64 {
    received_event::Entity::find()
        .count(&t.app.state.db)
        .await
        .unwrap()
}

/// A refused delivery: the status, a JSON `detail`, and no `ce-*` header (never a reply event).
async fn assert_refused(req: reqwest::RequestBuilder, status: u16, detail_part: &str) {
    let r = deliver(req).await;
    assert_eq!(r.status, status, "{:?}", r.body);
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(detail_part),
        "{detail:?} lacks {detail_part:?}"
    );
    assert!(
        r.headers.keys().all(|k| !k.as_str().starts_with("ce-")),
        "{:?}",
        r.headers
    );
    if status == 401 {
        assert_eq!(r.header("www-authenticate"), "Bearer");
    }
}

#[tokio::test]
async fn auth_is_off_by_default_and_tokens_are_then_ignored() {
    let t = spawn().await;
    assert!(t.app.state.event_senders.is_none());
    let r = deliver(execute(
        &t.app,
        "/api/events/",
        "off-1",
        "event",
        t.pipeline_id,
        &execute_payload(),
    ))
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Knative with its OIDC feature on attaches a token even to a receiver that does not check.
    let r = deliver(execute_as(&t, "off-2", "not-a-jwt")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(run_count(&t.app).await, 2);
}

#[tokio::test]
async fn missing_and_invalid_tokens_are_401_and_fetch_the_keys_once() {
    let issuer = Issuer::start(vec![CLUSTER_KEY.jwk.clone()]).await;
    let t = spawn_oidc(&issuer.url, &[("EVENTS_USER_SENDERS", TRIGGER)]).await;
    // Nothing is fetched at start-up, nor for requests without a token.
    let (status, _) = t.app.get("/health/readiness", None).await;
    assert_eq!(status, 200);
    for path in ["/api/events/", "/", "/default/default"] {
        let req = binary(
            &t.app,
            path,
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "anon"),
                ("ce-source", "/tests/auth"),
                ("ce-type", HEALTH),
            ],
            "{}",
        );
        assert_refused(req, 401, "Sender authentication is required").await;
    }
    assert_refused(
        execute(
            &t.app,
            "/api/events/",
            "anon-exec",
            "event",
            t.pipeline_id,
            &execute_payload(),
        ),
        401,
        "Sender authentication is required",
    )
    .await;
    assert_eq!(issuer.hits(), (0, 0), "no fetch without a token");

    let iss = issuer.url.as_str();
    let cases: Vec<(&str, String, &str)> = vec![
        ("garbage", "abc.def".into(), "not a well-formed JWT"),
        (
            "forged: another key claiming the cluster's key id",
            sign(&FORGED_KEY, &claims(iss, TRIGGER)),
            "signature is invalid",
        ),
        (
            "expired",
            sign(
                &CLUSTER_KEY,
                &json!({"iss": iss, "aud": AUDIENCE, "sub": TRIGGER, "exp": now() - 600}),
            ),
            "expired",
        ),
        (
            "not valid yet",
            sign(
                &CLUSTER_KEY,
                &json!({"iss": iss, "aud": AUDIENCE, "sub": TRIGGER,
                        "nbf": now() + 600, "exp": now() + 1200}),
            ),
            "not valid yet",
        ),
        (
            "wrong audience",
            sign(
                &CLUSTER_KEY,
                &json!({"iss": iss, "aud": ["https://kubernetes.default.svc"], "sub": TRIGGER,
                        "exp": now() + 600}),
            ),
            "audience",
        ),
        (
            "wrong issuer",
            sign(
                &CLUSTER_KEY,
                &json!({"iss": "https://issuer.example.org", "aud": AUDIENCE, "sub": TRIGGER,
                        "exp": now() + 600}),
            ),
            "another issuer",
        ),
        (
            "no subject",
            sign(
                &CLUSTER_KEY,
                &json!({"iss": iss, "aud": AUDIENCE, "exp": now() + 600}),
            ),
            "required claim",
        ),
        (
            "no expiry",
            sign(
                &CLUSTER_KEY,
                &json!({"iss": iss, "aud": AUDIENCE, "sub": TRIGGER}),
            ),
            "required claim",
        ),
        (
            "unknown key id (no refetch within the refresh interval)",
            sign(&ec_signer("rotated-2"), &claims(iss, TRIGGER)),
            "unknown key",
        ),
        (
            "HMAC with the public modulus as the secret",
            {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = Some(CLUSTER_KEY.kid.clone());
                let secret = CLUSTER_KEY.jwk["n"].as_str().unwrap().as_bytes().to_vec();
                jsonwebtoken::encode(
                    &header,
                    &claims(iss, TRIGGER),
                    &EncodingKey::from_secret(&secret),
                )
                .unwrap()
            },
            "not accepted",
        ),
    ];
    for (name, token, detail) in &cases {
        println!("case: {name}");
        assert_refused(health(&t, name, Some(token)), 401, detail).await;
        assert_refused(execute_as(&t, name, token), 401, detail).await;
    }
    let r = deliver(health(&t, "basic", None).header("authorization", "Basic dXNlcjpwdw==")).await;
    assert_eq!(r.status, 401);

    assert_eq!(run_count(&t.app).await, 0);
    assert_eq!(
        stored_events(&t).await,
        0,
        "refused events are not recorded"
    );
    assert_eq!(t.launcher.total(), 0);
    // The keys were fetched once, on the first token, through the discovery document.
    assert_eq!(issuer.hits(), (1, 1));

    // The real cluster key still works with the same cached set.
    let r = deliver(execute_as(&t, "ok-1", &issuer.token(TRIGGER))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(issuer.hits(), (1, 1));
}

#[tokio::test]
async fn allowed_sender_starts_runs_and_concurrent_events_share_one_fetch() {
    let issuer = Issuer::start(vec![CLUSTER_KEY.jwk.clone()]).await;
    let t = spawn_oidc(
        &issuer.url,
        &[
            ("EVENTS_ALLOWED_SENDERS", TRIGGER),
            ("EVENTS_USER_SENDERS", TRIGGER),
        ],
    )
    .await;
    let token = issuer.token(TRIGGER);
    // 30 deliveries at once on a cold cache: one discovery and one JWKS request in all.
    let replies = futures::future::join_all(
        (0..30).map(|i| deliver(execute_as(&t, &format!("burst-{i}"), &token))),
    )
    .await;
    for r in &replies {
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(
            r.header("ce-type"),
            "org.eoepca.application-quality.response.accepted"
        );
    }
    assert_eq!(run_count(&t.app).await, 30);
    assert_eq!(t.launcher.total(), 30);
    assert_eq!(issuer.hits(), (1, 1));
    // And 20 more, one after the other (health and redeliveries): still no fetch.
    for i in 0..10 {
        let r = deliver(health(&t, &format!("h-{i}"), Some(&token))).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let r = deliver(execute_as(&t, &format!("burst-{i}"), &token)).await;
        assert_eq!(
            r.header("ce-type"),
            "org.eoepca.application-quality.response.duplicate"
        );
    }
    assert_eq!(issuer.hits(), (1, 1));
    assert_eq!(run_count(&t.app).await, 30);
}

#[tokio::test]
async fn sender_policy_allowed_senders_and_user_naming() {
    let issuer = Issuer::start(vec![CLUSTER_KEY.jwk.clone()]).await;
    let source = "system:serviceaccount:application-quality-runs:job-events";
    let t = spawn_oidc(
        &issuer.url,
        &[
            ("EVENTS_ALLOWED_SENDERS", &format!("{TRIGGER}, {source}")),
            ("EVENTS_USER_SENDERS", TRIGGER),
        ],
    )
    .await;
    // A valid token of a workload that is not an allowed sender: 403 for anything.
    let stranger = issuer.token(STRANGER);
    assert_refused(
        health(&t, "s-1", Some(&stranger)),
        403,
        "may not send events",
    )
    .await;
    assert_refused(execute_as(&t, "s-2", &stranger), 403, "may not send events").await;
    // An allowed sender that may not name users: its health probe passes, its execute event
    // naming a user does not, and nothing is stored or run.
    let src = issuer.token(source);
    let r = deliver(health(&t, "src-1", Some(&src))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_refused(execute_as(&t, "src-2", &src), 403, "may not name a user").await;
    for path in ["/", "/application-quality/default"] {
        let req = execute(
            &t.app,
            path,
            "src-3",
            "event",
            t.pipeline_id,
            &execute_payload(),
        )
        .bearer_auth(&src);
        assert_refused(req, 403, "may not name a user").await;
    }
    assert_eq!(run_count(&t.app).await, 0);
    assert_eq!(stored_events(&t).await, 0);
    // The trusted identity may.
    let r = deliver(execute_as(&t, "trig-1", &issuer.token(TRIGGER))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(run_count(&t.app).await, 1);

    // With EVENTS_USER_SENDERS unset nobody may name a user; `*` lets every allowed sender.
    let strict = spawn_oidc(&issuer.url, &[]).await;
    let r = deliver(health(&strict, "h", Some(&stranger))).await;
    assert_eq!(r.status, 200, "any valid token may send: {:?}", r.body);
    assert_refused(
        execute_as(&strict, "x-1", &issuer.token(TRIGGER)),
        403,
        "may not name a user",
    )
    .await;
    let open = spawn_oidc(&issuer.url, &[("EVENTS_USER_SENDERS", "*")]).await;
    let r = deliver(execute_as(&open, "x-1", &stranger)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn unreachable_keys_are_503_with_retry_after_and_the_service_recovers() {
    // A port nobody listens on yet.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}");
    // Interval 0: retry the fetch on the next event (the default waits 2 s after a failure).
    let t = spawn_oidc(
        &url,
        &[
            ("EVENTS_USER_SENDERS", TRIGGER),
            ("EVENTS_OIDC_REFRESH_INTERVAL_SECS", "0"),
        ],
    )
    .await;
    let token = sign(&CLUSTER_KEY, &claims(&url, TRIGGER));
    for id in ["down-1", "down-2"] {
        let r = deliver(execute_as(&t, id, &token)).await;
        assert_eq!(r.status, 503, "{:?}", r.body);
        assert_eq!(r.header("retry-after"), "2");
        assert!(r.body["detail"].as_str().unwrap().contains("retry later"));
        assert!(r.header("ce-type").is_empty());
    }
    assert_eq!(run_count(&t.app).await, 0);

    // The issuer comes up, but its JWKS endpoint fails: still 503.
    let issuer = Issuer::serve(
        tokio::net::TcpListener::bind(addr).await.unwrap(),
        vec![CLUSTER_KEY.jwk.clone()],
    );
    issuer.fail.store(true, Ordering::SeqCst);
    let r = deliver(execute_as(&t, "down-1", &token)).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(issuer.hits(), (1, 1));

    // Redelivery once it works: the run is made, once.
    issuer.fail.store(false, Ordering::SeqCst);
    let r = deliver(execute_as(&t, "down-1", &token)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = deliver(execute_as(&t, "down-1", &token)).await;
    assert_eq!(
        r.header("ce-type"),
        "org.eoepca.application-quality.response.duplicate"
    );
    assert_eq!(run_count(&t.app).await, 1);
    assert_eq!(issuer.hits(), (2, 2));
}

#[tokio::test]
async fn failed_fetches_are_rate_limited() {
    let issuer = Issuer::start(vec![CLUSTER_KEY.jwk.clone()]).await;
    issuer.fail.store(true, Ordering::SeqCst);
    let t = spawn_oidc(&issuer.url, &[]).await;
    let token = issuer.token(TRIGGER);
    for i in 0..10 {
        let r = deliver(health(&t, &format!("f-{i}"), Some(&token))).await;
        assert_eq!(r.status, 503, "{:?}", r.body);
        assert_eq!(r.header("retry-after"), "2");
    }
    // Ten refused events, one fetch attempt: the next is allowed 2 s after the failure.
    assert_eq!(issuer.hits(), (1, 1));
}

#[tokio::test]
async fn rotated_keys_are_fetched_on_an_unknown_key_id() {
    let issuer = Issuer::start(vec![CLUSTER_KEY.jwk.clone()]).await;
    let t = spawn_oidc(
        &issuer.url,
        &[
            ("EVENTS_USER_SENDERS", TRIGGER),
            ("EVENTS_OIDC_JWKS_URL", &format!("{}/keys", issuer.url)),
            ("EVENTS_OIDC_REFRESH_INTERVAL_SECS", "0"),
        ],
    )
    .await;
    let r = deliver(execute_as(&t, "rot-1", &issuer.token(TRIGGER))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // A configured JWKS URL: no discovery request.
    assert_eq!(issuer.hits(), (0, 1));

    // The cluster rotates to an ES256 key: a token with the new key id triggers one refetch.
    let next = ec_signer("cluster-2");
    issuer.keys.lock().unwrap().push(next.jwk.clone());
    let token = sign(&next, &claims(&issuer.url, TRIGGER));
    let r = deliver(execute_as(&t, "rot-2", &token)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = deliver(execute_as(&t, "rot-3", &token)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(issuer.hits(), (0, 2));
    // The old key is withdrawn: its next token misses the cache (the set changed), the
    // refetched set lacks it, and it is refused.
    issuer.keys.lock().unwrap().remove(0);
    let r = deliver(execute_as(
        &t,
        "rot-4",
        &sign(&ec_signer("cluster-3"), &claims(&issuer.url, TRIGGER)),
    ))
    .await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(issuer.hits(), (0, 3));
    let r = deliver(execute_as(&t, "rot-5", &issuer.token(TRIGGER))).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(run_count(&t.app).await, 3);
}
