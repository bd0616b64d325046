//! Signed-out browser sessions, so that signing out ends a session on every replica.
//!
//! `POST /oidc/logout/` records the session's id with its expiry in `aq_revoked_session`; every
//! request authenticated by a session cookie asks [`Revocations::is_revoked`], which reads that
//! table once per session per `AUTH_USER_CACHE_SECS` (the user cache's lifetime, 5 s by
//! default; 0 reads it on every request). So the replica that signed a session out refuses it
//! at once, and the others within that time. Records are deleted by the retention pass
//! (`crate::maintenance`) once the session would have expired anyway.

use crate::db::entities::revoked_session;
use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, DatabaseConnection, DbErr, EntityTrait};
use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};

/// Most answers remembered; the map is emptied when full (as the user cache is).
const MAX_ENTRIES: usize = 10_000;

/// The per-instance cache of "is this session signed out?".
#[derive(Debug)]
pub struct Revocations {
    ttl: Duration,
    entries: RwLock<HashMap<String, (Instant, bool)>>,
}

impl Revocations {
    /// A cache keeping answers for `ttl` (zero: the database is asked every time).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    fn cached(&self, sid: &str) -> Option<bool> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(sid)
            .filter(|(at, revoked)| *revoked || at.elapsed() < self.ttl)
            .map(|(_, revoked)| *revoked)
    }

    fn remember(&self, sid: &str, revoked: bool) {
        // A revocation is forever, so it is remembered even without a TTL.
        if self.ttl.is_zero() && !revoked {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(sid) {
            entries.clear();
        }
        entries.insert(sid.to_owned(), (Instant::now(), revoked));
    }

    /// Whether the session `sid` was signed out (here or on any replica).
    pub async fn is_revoked(&self, db: &DatabaseConnection, sid: &str) -> Result<bool, DbErr> {
        if let Some(revoked) = self.cached(sid) {
            return Ok(revoked);
        }
        let revoked = revoked_session::Entity::find_by_id(sid.to_owned())
            .one(db)
            .await?
            .is_some();
        self.remember(sid, revoked);
        Ok(revoked)
    }

    /// Records that session `sid`, valid until `expires_at`, is signed out. Idempotent.
    pub async fn revoke(
        &self,
        db: &DatabaseConnection,
        sid: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        revoked_session::Entity::insert(revoked_session::ActiveModel {
            session_id: Set(sid.to_owned()),
            expires_at: Set(expires_at),
            revoked_at: Set(Utc::now()),
        })
        .on_conflict_do_nothing_on([revoked_session::Column::SessionId])
        .exec_without_returning(db)
        .await?;
        self.remember(sid, true);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_expire_but_revocations_stay() {
        let r = Revocations::new(Duration::from_secs(5));
        r.remember("a", false);
        r.remember("b", true);
        assert_eq!((r.cached("a"), r.cached("b")), (Some(false), Some(true)));
        // Answers read longer ago than the TTL.
        let long_ago = Instant::now() - Duration::from_secs(6);
        for (sid, revoked) in [("a", false), ("b", true)] {
            r.entries
                .write()
                .unwrap()
                .insert(sid.into(), (long_ago, revoked));
        }
        assert_eq!((r.cached("a"), r.cached("b")), (None, Some(true)));
        let off = Revocations::new(Duration::ZERO);
        off.remember("a", false);
        off.remember("b", true);
        assert_eq!((off.cached("a"), off.cached("b")), (None, Some(true)));
    }
}
