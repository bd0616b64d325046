//! `aq_identity`: an identity of the identity provider (`iss`, `sub`) and the local account it
//! signs in as. Unique both ways: one account per identity, one identity per account.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "aq_identity")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The provider's `iss`.
    pub issuer: String,
    /// The provider's stable `sub` of the person (usernames may change; this does not).
    pub subject: String,
    pub user_id: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
