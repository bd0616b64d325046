//! `auth_user`: local accounts that can obtain tokens and own pipelines and triggers.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "auth_user")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub username: String,
    /// PHC string (`$argon2id$...`) or an imported Django `pbkdf2_sha256$...` hash.
    #[serde(skip)]
    pub password: String,
    pub email: String,
    pub is_staff: bool,
    pub is_active: bool,
    pub date_joined: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Longest accepted username (Django's limit).
pub const MAX_USERNAME_LEN: usize = 150;

/// Whether a username is acceptable: 1 to 150 of letters, digits and `@.+-_` (Django's rule).
pub fn valid_username(username: &str) -> bool {
    !username.is_empty()
        && username.len() <= MAX_USERNAME_LEN
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@.+-_".contains(c))
}
