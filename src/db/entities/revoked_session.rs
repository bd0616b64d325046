//! `aq_revoked_session`: browser sessions ended by signing out, kept until the session's own
//! expiry (then the retention pass deletes them), so every replica refuses a copied cookie.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "aq_revoked_session")]
pub struct Model {
    /// The session's random id (`sid` in the cookie).
    #[sea_orm(primary_key, auto_increment = false)]
    pub session_id: String,
    /// When the session would have expired anyway.
    pub expires_at: DateTimeUtc,
    pub revoked_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
