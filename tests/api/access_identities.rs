//! Identities linked by `(issuer, subject)`, through the real OpenID provider of the sign-in
//! tests: a provider user named like a local staff account does not become it (browser or
//! access token), a renamed user keeps their account, accounts the provider path made before
//! are adopted once (staff only by the staff rule), and linking by username is explicit.

use crate::oidc_support::{
    API_AUDIENCE, Jar, app_get, cli_access_token_as, sign_in_as, spawn, with_session,
};
use application_quality_api::db::entities::{identity, user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
};
use serde_json::{Value, json};

async fn me(app: &crate::common::TestApp, jar: &Jar) -> Value {
    let r = app_get(app, &mut jar.clone(), "/oidc/user-details/").await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn account(app: &crate::common::TestApp, username: &str) -> Option<user::Model> {
    user::Entity::find()
        .filter(user::Column::Username.eq(username))
        .one(&app.state.db)
        .await
        .unwrap()
}

/// An account as an earlier release's sign-in made it: unusable password, no link.
async fn made_by_the_provider_before(
    app: &crate::common::TestApp,
    username: &str,
    staff: bool,
) -> user::Model {
    user::ActiveModel {
        username: Set(username.into()),
        password: Set("!".into()),
        email: Set(format!("{username}@old.example.org")),
        is_staff: Set(staff),
        is_active: Set(true),
        date_joined: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(&app.state.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_provider_user_named_like_a_local_staff_account_does_not_become_it() {
    let app = spawn(&[("OIDC_API_AUDIENCES", API_AUDIENCE)]).await;
    let admin = app.user("admin", "admin-password-1", true).await;
    // Someone at the provider (another subject) calls themselves "admin".
    let jar = sign_in_as(&app, "mallory-sub", "admin", "").await;
    let details = me(&app, &jar).await;
    assert_eq!(details["username"], "admin-2", "{details}");
    assert_ne!(details["id"], admin.id);
    assert_eq!(details["is_admin"], false);
    let r = with_session(&app, &jar, "GET", "/api/events/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no staff rights");
    // Their access token on the REST API: the same account, still not the local admin.
    let token = cli_access_token_as("mallory-sub", "admin").await;
    let (status, body) = app.get("/api/users/me/", Some(&token)).await;
    assert_eq!((status, &body["username"]), (200, &json!("admin-2")));
    assert_eq!(body["is_staff"], false);
    // The local admin is untouched, and still signs in with its password.
    assert_eq!(account(&app, "admin").await.unwrap(), admin);
    app.token("admin", "admin-password-1").await;
    // Another identity calling itself "admin" gets yet another account.
    let other = sign_in_as(&app, "eve-sub", "admin", "").await;
    assert_eq!(me(&app, &other).await["username"], "admin-3");
    assert_eq!(
        identity::Entity::find().count(&app.state.db).await.unwrap(),
        2
    );
}

#[tokio::test]
async fn a_returning_user_keeps_their_account_after_renaming_at_the_provider() {
    let app = spawn(&[]).await;
    let jar = sign_in_as(&app, "person-123", "carol", "").await;
    let first = me(&app, &jar).await;
    assert_eq!(first["username"], "carol");
    let r = with_session(&app, &jar, "POST", "/api/pipelines/")
        .json(&json!({"name": "carol's pipeline"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let pipeline: Value = r.json().await.unwrap();

    // Renamed at the provider: the same account, its pipeline, its local name (which events
    // and CI policies refer to).
    let renamed = sign_in_as(&app, "person-123", "caroline", "").await;
    let again = me(&app, &renamed).await;
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["username"], "carol");
    let r = with_session(
        &app,
        &renamed,
        "GET",
        &format!("/api/pipelines/{}/", pipeline["id"]),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(account(&app, "caroline").await.is_none());
    // Someone new taking the old name at the provider does not get carol's account.
    let newcomer = sign_in_as(&app, "person-456", "carol", "").await;
    let theirs = me(&app, &newcomer).await;
    assert_eq!(theirs["username"], "carol-2");
    assert_ne!(theirs["id"], first["id"]);
}

#[tokio::test]
async fn accounts_the_provider_made_before_are_adopted_once_and_never_keep_staff_by_name() {
    // The staff rule of these tests: group aq-admins.
    let app = spawn(&[]).await;
    let dora = made_by_the_provider_before(&app, "dora", false).await;
    let jar = sign_in_as(&app, "dora-sub", "dora", "").await;
    let details = me(&app, &jar).await;
    assert_eq!(
        details["id"], dora.id,
        "adopted: runs and pipelines stay hers"
    );
    assert_eq!(
        details["email"], "dora-sub@example.org",
        "updated from the claims"
    );
    // Once: another identity with that name now gets its own account.
    let other = sign_in_as(&app, "not-dora", "dora", "").await;
    assert_eq!(me(&app, &other).await["username"], "dora-2");

    // A staff account made by the provider path: staff only when the rule says so now.
    let boss = made_by_the_provider_before(&app, "boss", true).await;
    let jar = sign_in_as(&app, "boss-sub", "boss", "").await;
    let details = me(&app, &jar).await;
    assert_eq!(
        (details["id"].as_i64(), &details["is_admin"]),
        (Some(boss.id), &json!(false))
    );
    let chief = made_by_the_provider_before(&app, "chief", true).await;
    let jar = sign_in_as(&app, "chief-sub", "chief", "aq-admins").await;
    let details = me(&app, &jar).await;
    assert_eq!(
        (details["id"].as_i64(), &details["is_admin"]),
        (Some(chief.id), &json!(true))
    );

    // Without a staff rule, an adopted staff account loses staff status (it came by name).
    let plain = spawn(&[("OIDC_STAFF_VALUES", "")]).await;
    let old = made_by_the_provider_before(&plain, "olga", true).await;
    let jar = sign_in_as(&plain, "olga-sub", "olga", "aq-admins").await;
    let details = me(&plain, &jar).await;
    assert_eq!(
        (details["id"].as_i64(), &details["is_admin"]),
        (Some(old.id), &json!(false))
    );
    // A local account with a password is never adopted.
    plain.user("pat", "pat-password-1", false).await;
    let jar = sign_in_as(&plain, "pat-sub", "pat", "").await;
    assert_eq!(me(&plain, &jar).await["username"], "pat-2");
}

#[tokio::test]
async fn linking_by_username_is_explicit_and_never_grants_staff_by_name() {
    let app = spawn(&[("OIDC_LINK_BY_USERNAME", "true")]).await;
    let erin = app.user("erin", "erin-password-1", false).await;
    let jar = sign_in_as(&app, "erin-sub", "erin", "").await;
    assert_eq!(me(&app, &jar).await["id"], erin.id);
    // Linked once: the name no longer leads there.
    let other = sign_in_as(&app, "erin-other", "erin", "").await;
    assert_eq!(me(&app, &other).await["username"], "erin-2");

    // A local staff account: not by name alone...
    let root = app.user("root", "root-password-1", true).await;
    let jar = sign_in_as(&app, "root-sub", "root", "").await;
    let details = me(&app, &jar).await;
    assert_eq!(details["username"], "root-2");
    assert_eq!(details["is_admin"], false);
    // ...only for an identity the staff rule makes staff.
    let ops = app.user("ops", "ops-password-1", true).await;
    let jar = sign_in_as(&app, "ops-sub", "ops", "aq-admins").await;
    let details = me(&app, &jar).await;
    assert_eq!(
        (details["id"].as_i64(), &details["is_admin"]),
        (Some(ops.id), &json!(true))
    );
    assert_eq!(account(&app, "root").await.unwrap(), root);
}
