//! Creating local users.

pub use crate::db::entities::user::{MAX_USERNAME_LEN, valid_username};
use crate::{auth::password, db::entities::user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
};

/// Creates a user with an argon2id password hash; fails if the username is taken or invalid.
pub async fn add_user<C: ConnectionTrait>(
    db: &C,
    username: &str,
    plain_password: &str,
    staff: bool,
) -> anyhow::Result<user::Model> {
    if !valid_username(username) {
        anyhow::bail!("invalid username {username:?}: use up to 150 letters, digits and @.+-_");
    }
    if user::Entity::find()
        .filter(user::Column::Username.eq(username))
        .one(db)
        .await?
        .is_some()
    {
        anyhow::bail!("user {username:?} already exists");
    }
    let hash = password::hash_blocking(plain_password.to_string()).await?;
    let model = user::ActiveModel {
        username: Set(username.to_string()),
        password: Set(hash),
        email: Set(String::new()),
        is_staff: Set(staff),
        is_active: Set(true),
        date_joined: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .map_err(|e| {
        if crate::db::is_unique_violation(&e) {
            anyhow::anyhow!("user {username:?} already exists")
        } else {
            e.into()
        }
    })?;
    Ok(model)
}
