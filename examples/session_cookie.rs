//! Prints a `Cookie` header value with a browser session of a user (`aq_session=...;
//! csrftoken=...`), sealed with the key of the database in `DATABASE_URL`, exactly as
//! `/oidc/callback/` seals it. `scripts/bench.sh` uses it to measure cookie authentication
//! beside Bearer without an identity provider. A benchmark tool: it holds a session key.
//!
//! Usage: `DATABASE_URL=... session_cookie <username>`

use application_quality_api::{
    auth::session::{CSRF_COOKIE, SESSION_COOKIE, Session, SessionKeys, now, random_token},
    config::Config,
    db::{self, entities::user},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let username = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: session_cookie <username>"))?;
    let config = Config::from_env()?;
    let conn = db::connect(&config).await?;
    let key = db::jwt_key(&config, &conn).await?;
    let u = user::Entity::find()
        .filter(user::Column::Username.eq(username.as_str()))
        .one(&conn)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user {username:?}"))?;
    let csrf = random_token();
    let sealed = SessionKeys::new(&key).seal(
        "session",
        &Session {
            sid: application_quality_api::auth::session::random_token(),
            uid: u.id,
            exp: now() + 3600,
            csrf: csrf.clone(),
            first_name: String::new(),
            last_name: String::new(),
        },
    );
    println!("{SESSION_COOKIE}={sealed}; {CSRF_COOKIE}={csrf}");
    Ok(())
}
