//! Tokens: obtain and refresh in the reference's shapes, forged and misused tokens rejected,
//! imported Django password hashes upgraded to argon2id on login.

use crate::common::{Options, TestApp};
use application_quality_api::{
    auth::{
        jwt::{Claims, JwtKeys, TokenType},
        password,
    },
    db::{self, entities::user},
};
use base64::Engine;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};

fn now() -> u64 {
    chrono::Utc::now().timestamp() as u64
}

#[tokio::test]
async fn obtain_token_json_and_form() {
    let app = TestApp::spawn().await;
    app.user("alice", "s3cret-pw", false).await;
    let (status, body) = app
        .post(
            "/api/token/",
            None,
            &json!({"username": "alice", "password": "s3cret-pw"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let access = body["access"].as_str().unwrap();
    assert!(body["refresh"].is_string());
    let (status, me) = app.get("/api/users/me/", Some(access)).await;
    assert_eq!(status, 200);
    assert_eq!(me["username"], "alice");

    let (status, body) = app
        .send(
            app.client
                .post(app.url("/api/token/"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("username=alice&password=s3cret-pw"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access"].is_string());
}

#[tokio::test]
async fn obtain_token_errors() {
    let app = TestApp::spawn().await;
    let u = app.user("bob", "right-pw", false).await;
    let detail = json!({"detail": "No active account found with the given credentials"});
    for (who, pw) in [("bob", "wrong-pw"), ("nobody", "right-pw")] {
        let r = app
            .client
            .post(app.url("/api/token/"))
            .json(&json!({"username": who, "password": pw}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{who}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert_eq!(r.json::<Value>().await.unwrap(), detail);
    }
    app.deactivate(u).await;
    let (status, body) = app
        .post(
            "/api/token/",
            None,
            &json!({"username": "bob", "password": "right-pw"}),
        )
        .await;
    assert_eq!((status, body), (401, detail));

    let (status, body) = app
        .post("/api/token/", None, &json!({"username": "bob"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({"password": ["This field is required."]}));
    let (status, body) = app.post("/api/token/", None, &json!([1, 2])).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.get("/api/token/", None).await;
    assert_eq!(status, 405);
    assert!(body["detail"].is_string(), "JSON 405: {body}");
    let (status, _) = app
        .send(
            app.client
                .post(app.url("/api/token/"))
                .header("content-type", "text/plain")
                .body("username=bob"),
        )
        .await;
    assert_eq!(status, 415);
}

#[tokio::test]
async fn refresh_token_flow() {
    // Without the user cache, so deactivation takes effect at once (see the next test).
    let app = TestApp::spawn_with(Options {
        env: vec![("AUTH_USER_CACHE_SECS".into(), "0".into())],
        ..Options::default()
    })
    .await;
    let u = app.user("carol", "pw-carol-1", false).await;
    let (_, tokens) = app
        .post(
            "/api/token/",
            None,
            &json!({"username": "carol", "password": "pw-carol-1"}),
        )
        .await;
    let refresh = tokens["refresh"].as_str().unwrap();
    let access = tokens["access"].as_str().unwrap();

    let (status, body) = app
        .post("/api/token/refresh/", None, &json!({"refresh": refresh}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "only access: {body}");
    let (status, _) = app
        .get("/api/users/me/", Some(body["access"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200);

    let (status, body) = app
        .post("/api/token/refresh/", None, &json!({"refresh": access}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"detail": "Token has wrong type", "code": "token_not_valid"})
    );
    let (status, body) = app
        .post("/api/token/refresh/", None, &json!({"refresh": "garbage"}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"detail": "Token is invalid", "code": "token_not_valid"})
    );
    let (status, body) = app.post("/api/token/refresh/", None, &json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({"refresh": ["This field is required."]}));

    // A deactivated user's refresh token no longer yields access tokens.
    app.deactivate(u).await;
    let (status, _) = app
        .post("/api/token/refresh/", None, &json!({"refresh": refresh}))
        .await;
    assert_eq!(status, 401);
    let (status, _) = app.get("/api/users/me/", Some(access)).await;
    assert_eq!(status, 401, "inactive user's access token");
}

#[tokio::test]
async fn deactivation_reaches_cached_users_within_the_cache_time() {
    let app = TestApp::spawn_with(Options {
        env: vec![("AUTH_USER_CACHE_SECS".into(), "1".into())],
        ..Options::default()
    })
    .await;
    let (u, access) = app.user_with_token("erin", false).await;
    let (status, _) = app.get("/api/users/me/", Some(&access)).await;
    assert_eq!(status, 200);
    let user_id = u.id;
    app.deactivate(u).await;
    // Documented: the row read a moment ago is still trusted, for at most the cache time.
    let (status, _) = app.get("/api/users/me/", Some(&access)).await;
    assert_eq!(status, 200, "cached user");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body) = app.get("/api/users/me/", Some(&access)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["detail"], "User is inactive");
    // Refresh never trusts the cache.
    let refresh = app.state.jwt.issue(user_id, TokenType::Refresh);
    let (status, _) = app
        .post("/api/token/refresh/", None, &json!({"refresh": refresh}))
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn forged_and_misused_tokens_are_rejected() {
    let app = TestApp::spawn().await;
    let (u, good) = app.user_with_token("dave", true).await;
    let key = db::jwt_key(&app.state.config, &app.state.db).await.unwrap();
    let issuer = app.state.config.auth.jwt_issuer.clone();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let wrong_key = JwtKeys::new(b"not-the-key-not-the-key-not-the-key", &issuer, 60, 60)
        .issue(u.id, TokenType::Access);
    let alg_none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(format!(
            r#"{{"token_type":"access","exp":{},"iat":0,"jti":"x","user_id":"{}","iss":"{issuer}"}}"#,
            now() + 600,
            u.id
        ))
    );
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims {
            token_type: TokenType::Access,
            exp: now() - 5,
            iat: now() - 65,
            jti: "x".into(),
            user_id: u.id.to_string(),
            iss: issuer.clone(),
        },
        &jsonwebtoken::EncodingKey::from_secret(&key),
    )
    .unwrap();
    let other_issuer = JwtKeys::new(&key, "someone-else", 60, 60).issue(u.id, TokenType::Access);
    let refresh = JwtKeys::new(&key, &issuer, 60, 60).issue(u.id, TokenType::Refresh);
    let unknown_user = JwtKeys::new(&key, &issuer, 60, 60).issue(999_999, TokenType::Access);

    // Sanity: the real key signs tokens the server accepts.
    let control = JwtKeys::new(&key, &issuer, 60, 60).issue(u.id, TokenType::Access);
    assert_eq!(app.get("/api/users/me/", Some(&control)).await.0, 200);
    assert_eq!(app.get("/api/users/me/", Some(&good)).await.0, 200);

    for (what, token) in [
        ("wrong key", wrong_key.as_str()),
        ("alg none", alg_none.as_str()),
        ("expired", expired.as_str()),
        ("other issuer", other_issuer.as_str()),
        ("refresh as access", refresh.as_str()),
        ("unknown user", unknown_user.as_str()),
        ("garbage", "abc.def.ghi"),
    ] {
        for path in ["/api/users/me/", "/api/pipelines/", "/api/tools/"] {
            let r = app
                .client
                .get(app.url(path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{what} on {path}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer", "{what}");
            let body: Value = r.json().await.unwrap();
            assert!(body["detail"].is_string(), "{what}: {body}");
        }
    }
    let (status, body) = app.get("/api/users/me/", Some(&expired)).await;
    assert_eq!(
        (status, body["detail"].clone()),
        (401, json!("Token is expired"))
    );
}

#[tokio::test]
async fn imported_django_user_logs_in_and_is_rehashed() {
    let app = TestApp::spawn().await;
    let imported = user::ActiveModel {
        username: Set("legacy".into()),
        password: Set(password::django_pbkdf2("pw", "salt", 1000)),
        email: Set("legacy@example.org".into()),
        is_staff: Set(false),
        is_active: Set(true),
        date_joined: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(&app.state.db)
    .await
    .unwrap();
    let (status, _) = app
        .post(
            "/api/token/",
            None,
            &json!({"username": "legacy", "password": "nope"}),
        )
        .await;
    assert_eq!(status, 401);
    let stored = user::Entity::find_by_id(imported.id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.password.starts_with("pbkdf2_sha256$"),
        "unchanged after a failure"
    );

    let (status, body) = app
        .post(
            "/api/token/",
            None,
            &json!({"username": "legacy", "password": "pw"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let stored = user::Entity::find_by_id(imported.id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.password.starts_with("$argon2id$"),
        "{}",
        stored.password
    );
    // The new hash verifies the same password.
    let (status, _) = app
        .post(
            "/api/token/",
            None,
            &json!({"username": "legacy", "password": "pw"}),
        )
        .await;
    assert_eq!(status, 200);
}
