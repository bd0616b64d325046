//! Browser sign-in through a real OpenID provider (issue 14), at the HTTP level: the calls the
//! reference's frontend makes (`/oidc/authenticate/`, the IAM's pages, `/oidc/callback/`,
//! `/oidc/user-details/`, `/oidc/logout/`), session cookies on the REST API with CSRF and origin
//! checks, refusals of callbacks that are not this browser's, IAM access tokens as Bearer.

use crate::common::{Options, TestApp};
use crate::oidc_support::{
    API_AUDIENCE, CLIENT_ID, Jar, PUBLIC_URL, app_get, authenticate, cli_access_token, client,
    location, on_app, params, provider, provider_login, sign_in, spawn, with_session,
};
use application_quality_api::auth::session::{PendingLogin, Session, now};
use serde_json::{Value, json};

async fn json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn sign_in_round_trip_and_session_on_the_api() {
    let app = spawn(&[]).await;
    let mut jar = Jar::default();

    // 1. The frontend's Login link.
    let auth = authenticate(&app, &mut jar).await;
    let issuer = &provider().issuer;
    assert!(
        auth.as_str().starts_with(&format!("{issuer}/auth?")),
        "{auth}"
    );
    let p = params(&auth);
    assert_eq!(p["response_type"], "code");
    assert_eq!(p["client_id"], CLIENT_ID);
    assert_eq!(p["redirect_uri"], format!("{PUBLIC_URL}/oidc/callback/"));
    assert_eq!(p["scope"], "openid profile email");
    assert_eq!(p["code_challenge_method"], "S256");
    for k in ["state", "nonce", "code_challenge"] {
        assert!(p[k].len() >= 43, "{k} has 256 bits");
    }
    let login_cookie = &jar.attributes["aq_oidc_login"];
    assert!(
        login_cookie.contains("HttpOnly")
            && login_cookie.contains("SameSite=Lax")
            && login_cookie.contains("Path=/oidc")
            && !login_cookie.contains("Secure"),
        "{login_cookie}"
    );

    // 2. The IAM's login and consent, then 3. the callback.
    let callback = provider_login(&auth, "alice", "aq-admins,other").await;
    let r = app_get(&app, &mut jar, &on_app(&callback)).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r).path(), "/");
    assert!(
        jar.get("aq_oidc_login").is_none(),
        "the pre-login cookie is cleared"
    );
    let session = &jar.attributes["aq_session"];
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    let csrf = &jar.attributes["csrftoken"];
    assert!(
        !csrf.contains("HttpOnly"),
        "the frontend reads csrftoken: {csrf}"
    );

    // 4. user-details, as the frontend's auth store reads it.
    let (status, me) = json(app_get(&app, &mut jar, "/oidc/user-details/").await).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["username"], "alice");
    assert_eq!(me["email"], "alice@example.org");
    assert_eq!(me["first_name"], "Alice");
    assert_eq!(me["last_name"], "Tester");
    assert_eq!(me["is_active"], true);
    assert_eq!(me["is_admin"], true, "member of aq-admins");
    assert_eq!(me["is_superuser"], true);
    assert!(me["id"].as_i64().is_some());
    // Without a session: 401 JSON.
    let (status, body) = json(
        client()
            .get(app.url("/oidc/user-details/"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(body["detail"].is_string());

    // The session on the REST API: reads need nothing more.
    let (status, _) = json(
        with_session(&app, &jar, "GET", "/api/pipelines/")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, me2) = json(
        with_session(&app, &jar, "GET", "/api/users/me/")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &me2["username"]), (200, &json!("alice")));

    // Writes need the CSRF header equal to the cookie and a same-origin Origin or Referer.
    let body = json!({"name": "from the browser"});
    let (status, created) = json(
        with_session(&app, &jar, "POST", "/api/pipelines/")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let refusals: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "no header",
            client()
                .post(app.url("/api/pipelines/"))
                .header("cookie", jar.header())
                .header("origin", PUBLIC_URL),
        ),
        (
            "header != cookie",
            client()
                .post(app.url("/api/pipelines/"))
                .header("cookie", jar.header())
                .header("x-csrftoken", "forged")
                .header("origin", PUBLIC_URL),
        ),
        (
            "cross-site origin",
            client()
                .post(app.url("/api/pipelines/"))
                .header("cookie", jar.header())
                .header("x-csrftoken", jar.get("csrftoken").unwrap())
                .header("origin", "https://evil.example"),
        ),
        (
            "no origin, no referer",
            client()
                .post(app.url("/api/pipelines/"))
                .header("cookie", jar.header())
                .header("x-csrftoken", jar.get("csrftoken").unwrap()),
        ),
        (
            "cookie and header both replaced by the attacker's own token",
            client()
                .post(app.url("/api/pipelines/"))
                .header(
                    "cookie",
                    format!(
                        "aq_session={}; csrftoken=attacker",
                        jar.get("aq_session").unwrap()
                    ),
                )
                .header("x-csrftoken", "attacker")
                .header("origin", PUBLIC_URL),
        ),
    ];
    for (what, req) in refusals {
        let (status, body) = json(req.json(&body).send().await.unwrap()).await;
        assert_eq!(status, 403, "{what}: {body}");
        assert!(
            body["detail"].as_str().unwrap().starts_with("CSRF Failed"),
            "{what}: {body}"
        );
    }
    // A Referer of the public origin instead of Origin.
    let r = client()
        .delete(app.url(&format!("/api/pipelines/{}/", created["id"])))
        .header("cookie", jar.header())
        .header("x-csrftoken", jar.get("csrftoken").unwrap())
        .header("referer", format!("{PUBLIC_URL}/pipelines"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // Bearer requests are unaffected by cookies and CSRF.
    let (_, token) = app.user_with_token("local", false).await;
    let r = client()
        .post(app.url("/api/pipelines/"))
        .header("cookie", jar.header())
        .bearer_auth(&token)
        .json(&json!({"name": "from CI"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Staff follows the IAM's groups at each sign-in; another user is not staff.
    let bob = sign_in(&app, "bob", "").await;
    let (_, me) = json(app_get(&app, &mut bob.clone(), "/oidc/user-details/").await).await;
    assert_eq!(
        (me["username"].as_str(), me["is_admin"].as_bool()),
        (Some("bob"), Some(false))
    );
    let alice_again = sign_in(&app, "alice", "").await;
    let (_, me) = json(app_get(&app, &mut alice_again.clone(), "/oidc/user-details/").await).await;
    assert_eq!(me["is_admin"], false, "removed from aq-admins at the IAM");
    // Staff-only routes follow it.
    let (status, _) = json(
        with_session(&app, &alice_again, "GET", "/api/events/")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
}

/// A copy of the pre-login cookie with some fields changed, sealed with the service's key (as
/// only the service could): isolates one check at a time.
fn reseal(app: &TestApp, jar: &Jar, change: impl FnOnce(&mut PendingLogin)) -> Jar {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let value = jar.get("aq_oidc_login").unwrap();
    let body = value.split('.').next().unwrap();
    let mut pending: PendingLogin =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
    change(&mut pending);
    let mut jar = jar.clone();
    jar.values.insert(
        "aq_oidc_login".into(),
        app.state.sessions.seal("login", &pending),
    );
    jar
}

#[tokio::test]
async fn callbacks_that_are_not_this_browsers_are_refused() {
    let app = spawn(&[]).await;

    // No pre-login cookie (e.g. a callback URL sent to someone else): 400.
    let mut jar = Jar::default();
    let auth = authenticate(&app, &mut jar).await;
    let callback = provider_login(&auth, "carol", "").await;
    let (status, body) = json(app_get(&app, &mut Jar::default(), &on_app(&callback)).await).await;
    assert_eq!(status, 400, "{body}");

    // Another sign-in's state: 400.
    let mut other = Jar::default();
    authenticate(&app, &mut other).await;
    let (status, body) = json(app_get(&app, &mut other.clone(), &on_app(&callback)).await).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("state"), "{body}");

    // A tampered cookie: 400.
    let mut tampered = jar.clone();
    tampered.values.insert(
        "aq_oidc_login".into(),
        format!("{}x", jar.get("aq_oidc_login").unwrap()),
    );
    let (status, _) = json(app_get(&app, &mut tampered, &on_app(&callback)).await).await;
    assert_eq!(status, 400);

    // The right state but another nonce: the ID token does not verify (401).
    let wrong_nonce = reseal(&app, &jar, |p| p.nonce = "another-nonce".into());
    let (status, body) =
        json(app_get(&app, &mut wrong_nonce.clone(), &on_app(&callback)).await).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("nonce"), "{body}");
    // That attempt used the code up: replaying it, even with the right cookie, is refused by
    // the provider (invalid_grant), and no session is set.
    let mut replay = jar.clone();
    let r = app_get(&app, &mut replay, &on_app(&callback)).await;
    assert!(replay.get("aq_session").is_none());
    let (status, body) = json(r).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("invalid_grant"),
        "{body}"
    );

    // A fresh sign-in succeeds once; its code replayed fails.
    let mut jar = Jar::default();
    let auth = authenticate(&app, &mut jar).await;
    let callback = provider_login(&auth, "carol", "").await;
    let saved = jar.clone();
    let r = app_get(&app, &mut jar, &on_app(&callback)).await;
    assert_eq!(r.status(), 302);
    let (status, _) = json(app_get(&app, &mut saved.clone(), &on_app(&callback)).await).await;
    assert_eq!(status, 401);

    // A wrong PKCE verifier: the provider refuses the code.
    let mut jar = Jar::default();
    let auth = authenticate(&app, &mut jar).await;
    let callback = provider_login(&auth, "carol", "").await;
    let wrong_verifier = reseal(&app, &jar, |p| p.verifier = "x".repeat(43));
    let (status, _) =
        json(app_get(&app, &mut wrong_verifier.clone(), &on_app(&callback)).await).await;
    assert_eq!(status, 401);

    // A sign-in that took too long: 400.
    let expired = reseal(&app, &jar, |p| p.exp = now() - 1);
    let (status, body) = json(app_get(&app, &mut expired.clone(), &on_app(&callback)).await).await;
    assert_eq!(status, 400);
    assert!(
        body["detail"].as_str().unwrap().contains("too long"),
        "{body}"
    );

    // The IAM's own refusal (the user denied consent): 401 with its error.
    let state = params(&auth)["state"].clone();
    let (status, body) = json(
        app_get(
            &app,
            &mut jar.clone(),
            &format!("/oidc/callback/?error=access_denied&state={state}"),
        )
        .await,
    )
    .await;
    assert_eq!(status, 401);
    assert!(body["detail"].as_str().unwrap().contains("access_denied"));
}

#[tokio::test]
async fn sessions_expire_and_logout_clears_them() {
    let app = spawn(&[]).await;
    let mut jar = sign_in(&app, "dave", "").await;
    let uid = {
        let (_, me) = json(app_get(&app, &mut jar, "/oidc/user-details/").await).await;
        me["id"].as_i64().unwrap()
    };

    // An expired session (sealed by the service, so only the expiry is wrong).
    let expired = app.state.sessions.seal(
        "session",
        &Session {
            sid: "expired-session".into(),
            uid,
            exp: now() - 1,
            csrf: "c".into(),
            first_name: String::new(),
            last_name: String::new(),
        },
    );
    let r = client()
        .get(app.url("/api/pipelines/"))
        .header("cookie", format!("aq_session={expired}"))
        .send()
        .await
        .unwrap();
    let (status, body) = json(r).await;
    assert_eq!(status, 401);
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    // Where anonymous callers are welcome, a stale cookie counts as anonymous.
    let r = client()
        .get(app.url("/api/tools/"))
        .header("cookie", format!("aq_session={expired}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A forged one.
    let r = client()
        .get(app.url("/api/pipelines/"))
        .header(
            "cookie",
            format!("aq_session={}x", jar.get("aq_session").unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A deactivated user's session stops working.
    let mut other = sign_in(&app, "erin", "").await;
    let erin = {
        use application_quality_api::db::entities::user;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        user::Entity::find()
            .filter(user::Column::Username.eq("erin"))
            .one(&app.state.db)
            .await
            .unwrap()
            .unwrap()
    };
    app.deactivate(erin.clone()).await;
    app.state.users.evict(erin.id);
    let r = app_get(&app, &mut other, "/oidc/user-details/").await;
    assert_eq!(r.status(), 401);

    // Logout, as the frontend's Logout link and the page's button do it: cookies cleared, on
    // to the provider's end-session endpoint.
    let r = app_get(&app, &mut jar, "/oidc/logout/").await;
    assert_eq!(r.status(), 200);
    assert!(jar.get("aq_session").is_some(), "a GET ends nothing");
    let r = client()
        .post(app.url("/oidc/logout/"))
        .header("cookie", jar.header())
        .header("origin", PUBLIC_URL)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrfmiddlewaretoken={}",
            jar.get("csrftoken").unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    jar.absorb(&r);
    let to = location(&r);
    assert!(
        to.as_str()
            .starts_with(&format!("{}/session/end?", provider().issuer)),
        "{to}"
    );
    let p = params(&to);
    assert_eq!(p["client_id"], CLIENT_ID);
    assert_eq!(p["post_logout_redirect_uri"], format!("{PUBLIC_URL}/"));
    assert!(jar.get("aq_session").is_none() && jar.get("csrftoken").is_none());
    let r = app_get(&app, &mut jar, "/oidc/user-details/").await;
    assert_eq!(r.status(), 401);
    // The provider accepts that logout request (its confirmation page).
    let r = client().get(to).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn two_replicas_accept_one_session_without_contacting_the_iam() {
    let first = spawn(&[]).await;
    let jar = sign_in(&first, "frank", "aq-admins").await;
    // A second replica on the same database, started after the sign-in, whose IAM is not
    // even reachable: the session needs neither server-side state nor the IAM.
    let second = TestApp::spawn_with(Options {
        env: crate::oidc_support::oidc_env(&[(
            "OIDC_CONNECT_CONFIG_URL",
            "http://127.0.0.1:9/.well-known/openid-configuration",
        )]),
        database_url: Some(first.database_url.clone()),
        ..Default::default()
    })
    .await;
    let (status, me) = json(app_get(&second, &mut jar.clone(), "/oidc/user-details/").await).await;
    assert_eq!((status, me["username"].as_str()), (200, Some("frank")));
    let r = with_session(&second, &jar, "POST", "/api/pipelines/")
        .json(&json!({"name": "made on the second replica"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = with_session(&first, &jar, "GET", "/api/events/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "staff from the IAM group");
    // Only signing in needs the IAM: 503 with Retry-After when it is unreachable.
    let r = client()
        .get(second.url("/oidc/authenticate/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn iam_access_tokens_work_as_bearer() {
    let app = spawn(&[("OIDC_API_AUDIENCES", API_AUDIENCE)]).await;
    let token = cli_access_token("grace").await;
    let (status, me) = app.get("/api/users/me/", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["username"], "grace");
    let (status, created) = app
        .post(
            "/api/pipelines/",
            Some(&token),
            &json!({"name": "from an IAM token"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["owner"], me["id"]);

    // Tampered, or for another audience (the default: only our own client id): 401.
    let (status, _) = app.get("/api/users/me/", Some(&format!("{token}x"))).await;
    assert_eq!(status, 401);
    let strict = spawn(&[]).await;
    let (status, body) = strict.get("/api/users/me/", Some(&token)).await;
    assert_eq!(status, 401);
    assert!(
        body["detail"].as_str().unwrap().contains("audience"),
        "{body}"
    );

    // Without OIDC_ENABLED the IAM's tokens are from an unknown issuer.
    let plain = TestApp::spawn().await;
    let (status, body) = plain.get("/api/users/me/", Some(&token)).await;
    assert_eq!(status, 401);
    assert!(
        body["detail"].as_str().unwrap().contains("not accepted"),
        "{body}"
    );
    let r = client()
        .get(plain.url("/oidc/authenticate/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn oidc_paths_never_reach_the_event_route() {
    let app = spawn(&[]).await;
    for (method, path) in [
        ("POST", "/oidc/anything"),
        ("GET", "/oidc/anything/"),
        ("POST", "/oidc/callback/"),
    ] {
        let r = client()
            .request(method.parse().unwrap(), app.url(path))
            .header("ce-specversion", "1.0")
            .header("ce-id", "1")
            .header("ce-source", "/x")
            .header("ce-type", "org.eoepca.application-quality.probes.health")
            .send()
            .await
            .unwrap();
        assert!(
            r.status() == 404 || r.status() == 405,
            "{method} {path}: {}",
            r.status()
        );
        assert!(
            r.headers().get("ce-id").is_none(),
            "{method} {path} answered as an event"
        );
    }
}
