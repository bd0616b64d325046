//! Signing out ends the session on every replica: two servers on one database, a copy of the
//! session cookie taken before signing out, refused by both after. Only a POST with the CSRF
//! token signs out; `GET /oidc/logout/` (the frontend's Logout link) shows the button. Expired
//! records are deleted by the retention pass.

use crate::common::{Options, TestApp};
use crate::oidc_support::{
    CLIENT_ID, Jar, PUBLIC_URL, app_get, client, location, oidc_env, params, provider, sign_in,
    spawn,
};
use application_quality_api::{db::entities::revoked_session, maintenance};
use chrono::{Duration as Days, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, PaginatorTrait};
use std::time::{Duration, Instant};

/// `GET /oidc/user-details/` with exactly these cookies (a copy, nothing absorbed).
async fn details_status(app: &TestApp, cookies: &str) -> u16 {
    client()
        .get(app.url("/oidc/user-details/"))
        .header("cookie", cookies)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The sign-out form's POST, as the browser sends it from the page.
fn sign_out(app: &TestApp, jar: &Jar, token: &str) -> reqwest::RequestBuilder {
    sign_out_from(app, jar, token, PUBLIC_URL)
}

/// [`sign_out`] from a page of `origin`.
fn sign_out_from(app: &TestApp, jar: &Jar, token: &str, origin: &str) -> reqwest::RequestBuilder {
    client()
        .post(app.url("/oidc/logout/"))
        .header("cookie", jar.header())
        .header("origin", origin)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrfmiddlewaretoken={token}"))
}

#[tokio::test]
async fn a_copied_cookie_is_refused_after_logout_on_a_second_replica() {
    let first = spawn(&[]).await;
    let second = TestApp::spawn_with(Options {
        env: oidc_env(&[]),
        database_url: Some(first.database_url.clone()),
        ..Default::default()
    })
    .await;
    let mut jar = sign_in(&first, "henry", "").await;
    let copy = jar.header();
    // Both replicas accept it (the second now remembers it as live for a while).
    assert_eq!(details_status(&first, &copy).await, 200);
    assert_eq!(details_status(&second, &copy).await, 200);

    // The frontend's Logout link: a page with the button, and nothing ended.
    let r = app_get(&first, &mut jar, "/oidc/logout/").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let page = r.text().await.unwrap();
    let csrf = jar.get("csrftoken").unwrap().to_string();
    assert!(
        page.contains(r#"<form method="post" action="/oidc/logout/">"#)
            && page.contains(&format!(r#"name="csrfmiddlewaretoken" value="{csrf}""#)),
        "{page}"
    );
    assert_eq!(details_status(&first, &copy).await, 200);

    // A forged sign-out (no token, a wrong one, another origin): 403, nothing ended.
    for req in [
        sign_out(&first, &jar, ""),
        sign_out(&first, &jar, "not-the-token"),
        sign_out_from(&first, &jar, &csrf, "https://evil.example"),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.headers().get("set-cookie").is_none());
    }
    assert_eq!(details_status(&second, &copy).await, 200);

    // The button: recorded, cookies cleared, on to the provider's end-session endpoint.
    let r = sign_out(&first, &jar, &csrf).send().await.unwrap();
    assert_eq!(r.status(), 303);
    jar.absorb(&r);
    assert!(jar.get("aq_session").is_none() && jar.get("csrftoken").is_none());
    let to = location(&r);
    assert!(
        to.as_str()
            .starts_with(&format!("{}/session/end?", provider().issuer)),
        "{to}"
    );
    assert_eq!(params(&to)["client_id"], CLIENT_ID);
    assert_eq!(
        revoked_session::Entity::find()
            .count(&first.state.db)
            .await
            .unwrap(),
        1
    );

    // The copy: refused at once where it was signed out, and on the other replica within
    // AUTH_USER_CACHE_SECS (5 s) of its last look.
    assert_eq!(details_status(&first, &copy).await, 401);
    let signed_out = Instant::now();
    loop {
        if details_status(&second, &copy).await == 401 {
            break;
        }
        assert!(
            signed_out.elapsed() < Duration::from_secs(7),
            "the second replica still accepts a signed-out session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // REST with the copy (CSRF header and all): 401 too, and anonymous where that is allowed.
    let r = client()
        .get(second.url("/api/pipelines/"))
        .header("cookie", &copy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(second.url("/api/tools/"))
        .header("cookie", &copy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Signing in again works (a new session).
    let again = sign_in(&second, "henry", "").await;
    assert_eq!(details_status(&first, &again.header()).await, 200);
    // The page without a session, and a POST without one: nothing to end, cookies cleared.
    let r = client()
        .get(first.url("/oidc/logout/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("not signed in"));
    let r = client()
        .post(first.url("/oidc/logout/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn the_retention_pass_deletes_expired_sign_out_records() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    for (sid, expires) in [
        ("expired-long-ago", now - Days::hours(2)),
        ("expired-just-now", now - Days::minutes(5)),
        ("still-live", now + Days::hours(3)),
    ] {
        revoked_session::ActiveModel {
            session_id: Set(sid.into()),
            expires_at: Set(expires),
            revoked_at: Set(now - Days::hours(4)),
        }
        .insert(&app.state.db)
        .await
        .unwrap();
    }
    let report = maintenance::run(&app.state.db, &app.state.config, now)
        .await
        .unwrap();
    assert_eq!(report.sessions, 1, "an hour of grace for replicas' clocks");
    let left: Vec<String> = revoked_session::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.session_id)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&"expired-long-ago".to_string()));
}
