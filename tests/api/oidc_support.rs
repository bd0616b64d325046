//! A real OpenID provider for the sign-in tests (panva's `oidc-provider` on Node.js, from
//! `tests/oidc-provider/`, installed by `scripts/test.sh` with `npm ci`), the service set up
//! as its client, and a browser's part of the sign-in at the HTTP level: redirects followed by
//! hand, cookies kept in a small jar per site.

use crate::common::{Options, TestApp};
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::OnceLock,
};

/// The service's public origin in these tests (registered at the provider as the redirect
/// URI's origin; requests go to the test server's address with this `Origin`).
pub const PUBLIC_URL: &str = "http://aq.test";
/// The service's client at the provider (see `tests/oidc-provider/provider.js`).
pub const CLIENT_ID: &str = "application-quality";
pub const CLIENT_SECRET: &str = "application-quality-test-secret";
/// The audience of the provider's JWT access tokens.
pub const API_AUDIENCE: &str = "application-quality-api";

/// The running provider of this test process.
pub struct Provider {
    pub issuer: String,
    _child: Child,
}

static PROVIDER: OnceLock<Provider> = OnceLock::new();

/// Starts the provider once per test process. It exits when this process ends (its stdin,
/// a pipe held here, closes).
pub fn provider() -> &'static Provider {
    PROVIDER.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc-provider");
        assert!(
            std::path::Path::new(dir).join("node_modules/oidc-provider").is_dir(),
            "the OpenID provider for the sign-in tests is not installed: run `npm ci` in tests/oidc-provider (scripts/test.sh does)"
        );
        let mut child = Command::new("node")
            .arg("provider.js")
            .current_dir(dir)
            .env("AQ_TEST_PUBLIC_URL", PUBLIC_URL)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node (Node.js 20 or later) for the OpenID provider");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the provider's first line {line:?}: {e}"));
        Provider {
            issuer: v["issuer"].as_str().unwrap().to_string(),
            _child: child,
        }
    })
}

/// The environment of a service signing in through the provider.
pub fn oidc_env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let issuer = &provider().issuer;
    let mut vars: Vec<(String, String)> = [
        ("PUBLIC_URL", PUBLIC_URL.to_string()),
        ("OIDC_ENABLED", "true".into()),
        (
            "OIDC_CONNECT_CONFIG_URL",
            format!("{issuer}/.well-known/openid-configuration"),
        ),
        ("OIDC_RP_CLIENT_ID", CLIENT_ID.into()),
        ("OIDC_RP_CLIENT_SECRET", CLIENT_SECRET.into()),
        ("OIDC_STAFF_VALUES", "aq-admins".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // Later settings replace earlier ones (envy refuses duplicates).
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push((k.to_string(), v.to_string()));
    }
    vars
}

/// The service, signing in through the provider.
pub async fn spawn(extra: &[(&str, &str)]) -> TestApp {
    TestApp::spawn_with(Options {
        env: oidc_env(extra),
        ..Default::default()
    })
    .await
}

/// A client that does not follow redirects (the tests follow them by hand).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The cookies one site set, with the attributes of the last `Set-Cookie` of each.
#[derive(Debug, Clone, Default)]
pub struct Jar {
    pub values: BTreeMap<String, String>,
    pub attributes: BTreeMap<String, String>,
}

impl Jar {
    /// Takes the `Set-Cookie` headers of a response (`Max-Age=0` deletes).
    pub fn absorb(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let deleted = attrs
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"))
                || value.is_empty();
            if deleted {
                self.values.remove(name.trim());
            } else {
                self.values
                    .insert(name.trim().to_string(), value.trim().to_string());
            }
            self.attributes
                .insert(name.trim().to_string(), attrs.trim().to_string());
        }
    }

    /// The `Cookie` header value.
    pub fn header(&self) -> String {
        self.values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
}

/// `Location` of a redirect, resolved against the request URL.
pub fn location(r: &reqwest::Response) -> url::Url {
    assert!(
        r.status().is_redirection(),
        "expected a redirect from {}, got {}",
        r.url(),
        r.status()
    );
    let loc = r.headers()["location"].to_str().unwrap();
    r.url().join(loc).unwrap()
}

/// The query parameters of a URL.
pub fn params(url: &url::Url) -> BTreeMap<String, String> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// GET on the service with a jar (cookies absorbed).
pub async fn app_get(app: &TestApp, jar: &mut Jar, path_and_query: &str) -> reqwest::Response {
    let r = client()
        .get(app.url(path_and_query))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    jar.absorb(&r);
    r
}

/// Starts a sign-in: `GET /oidc/authenticate/`; returns the authorization URL.
pub async fn authenticate(app: &TestApp, jar: &mut Jar) -> url::Url {
    let r = app_get(app, jar, "/oidc/authenticate/").await;
    assert_eq!(r.status(), 302);
    location(&r)
}

/// The browser at the provider: from the authorization URL, through the login interaction
/// (as `login`, member of `groups`), to the service's callback URL (not called).
pub async fn provider_login(authorization: &url::Url, login: &str, groups: &str) -> url::Url {
    provider_login_as(authorization, login, login, groups).await
}

/// [`provider_login`] for the account `login` (its `sub`) going by `username` (its
/// `preferred_username`) at the provider.
pub async fn provider_login_as(
    authorization: &url::Url,
    login: &str,
    username: &str,
    groups: &str,
) -> url::Url {
    let c = client();
    let mut jar = Jar::default();
    let mut url = authorization.clone();
    // authorize -> interaction
    let r = c
        .get(url.clone())
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    jar.absorb(&r);
    url = location(&r);
    assert!(url.path().starts_with("/interaction/"), "{url}");
    // The login form of provider.js (login and consent in one step).
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("login", login)
        .append_pair("username", username)
        .append_pair("groups", groups)
        .append_pair("given_name", &capitalised(login))
        .append_pair("family_name", "Tester")
        .finish();
    let r = c
        .post(format!("{url}/login"))
        .header("cookie", jar.header())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    jar.absorb(&r);
    url = location(&r);
    // resume -> the client's redirect URI with the code
    let r = c
        .get(url.clone())
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    jar.absorb(&r);
    let callback = location(&r);
    assert!(
        callback.as_str().starts_with(PUBLIC_URL),
        "the provider redirects to {callback}"
    );
    callback
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// The path and query of the callback URL, to send to the test server.
pub fn on_app(callback: &url::Url) -> String {
    format!("{}?{}", callback.path(), callback.query().unwrap_or(""))
}

/// A whole sign-in; returns the service's cookies.
pub async fn sign_in(app: &TestApp, login: &str, groups: &str) -> Jar {
    sign_in_as(app, login, login, groups).await
}

/// A whole sign-in of the provider's account `login` going by `username` there.
pub async fn sign_in_as(app: &TestApp, login: &str, username: &str, groups: &str) -> Jar {
    let mut jar = Jar::default();
    let auth = authenticate(app, &mut jar).await;
    let callback = provider_login_as(&auth, login, username, groups).await;
    let r = app_get(app, &mut jar, &on_app(&callback)).await;
    assert_eq!(r.status(), 302, "callback: {}", r.text().await.unwrap());
    assert!(jar.get("aq_session").is_some() && jar.get("csrftoken").is_some());
    jar
}

/// A request to the service authenticated by the jar's session, with the CSRF header and the
/// public origin (what the frontend's axios sends).
pub fn with_session(app: &TestApp, jar: &Jar, method: &str, path: &str) -> reqwest::RequestBuilder {
    client()
        .request(method.parse().unwrap(), app.url(path))
        .header("cookie", jar.header())
        .header("x-csrftoken", jar.get("csrftoken").unwrap_or(""))
        .header("origin", PUBLIC_URL)
}

/// An access token of the provider's command-line client (`aq-cli`, public, PKCE) for
/// `login`: the token an IAM user's script would send as Bearer.
pub async fn cli_access_token(login: &str) -> String {
    cli_access_token_as(login, login).await
}

/// [`cli_access_token`] for the account `login` going by `username` at the provider.
pub async fn cli_access_token_as(login: &str, username: &str) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use sha2::Digest;
    let issuer = &provider().issuer;
    let verifier = "cli-verifier-0123456789-0123456789-0123456789-abcdef";
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut auth = url::Url::parse(&format!("{issuer}/auth")).unwrap();
    auth.query_pairs_mut()
        .append_pair("client_id", "aq-cli")
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile email")
        .append_pair("redirect_uri", "http://127.0.0.1/cli-callback")
        .append_pair("state", "cli-state")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let c = client();
    let mut jar = Jar::default();
    let r = c.get(auth).send().await.unwrap();
    jar.absorb(&r);
    let interaction = location(&r);
    let r = c
        .post(format!("{interaction}/login"))
        .header("cookie", jar.header())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("login", login)
                .append_pair("username", username)
                .finish(),
        )
        .send()
        .await
        .unwrap();
    jar.absorb(&r);
    let resume = location(&r);
    let r = c
        .get(resume)
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    let code = params(&location(&r))["code"].clone();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("redirect_uri", "http://127.0.0.1/cli-callback")
        .append_pair("client_id", "aq-cli")
        .append_pair("code_verifier", verifier)
        .finish();
    let r = c
        .post(format!("{issuer}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}
