//! A short-lived cache of the users behind access tokens.
//!
//! Every authenticated request needs the token's user (is it still active? staff?). Reading
//! that row costs a database round trip, which on SQLite is most of a simple request's time.
//! The cache keeps each row for `AUTH_USER_CACHE_SECS` (default 5 s, 0 turns it off), so a
//! user deactivated or demoted directly in the database loses access within that time instead
//! of at once; changes this process makes itself (password re-hash) evict the row. Token
//! refresh and login always read the database.

use crate::db::entities::user;
use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};

/// Most users kept; the map is emptied when full (a burst of that many distinct users within
/// one TTL is already unusual, so a smarter eviction is not worth its cost).
const MAX_ENTRIES: usize = 10_000;

/// Users by id with the time they were read.
#[derive(Debug)]
pub struct UserCache {
    ttl: Duration,
    entries: RwLock<HashMap<i64, (Instant, user::Model)>>,
}

impl UserCache {
    /// A cache keeping rows for `ttl` (zero: never cached).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The cached row of `id` if it was read less than the TTL ago.
    pub fn get(&self, id: i64) -> Option<user::Model> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&id)
            .filter(|(read_at, _)| read_at.elapsed() < self.ttl)
            .map(|(_, u)| u.clone())
    }

    /// Remembers a row just read from the database.
    pub fn insert(&self, user: &user::Model) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&user.id) {
            entries.clear();
        }
        entries.insert(user.id, (Instant::now(), user.clone()));
    }

    /// Forgets a row this process has changed.
    pub fn evict(&self, id: i64) {
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> user::Model {
        user::Model {
            id,
            username: format!("u{id}"),
            password: String::new(),
            email: String::new(),
            is_staff: false,
            is_active: true,
            date_joined: chrono::Utc::now(),
        }
    }

    #[test]
    fn rows_expire_and_can_be_evicted() {
        let cache = UserCache::new(Duration::from_millis(50));
        cache.insert(&user(1));
        assert_eq!(cache.get(1).map(|u| u.id), Some(1));
        cache.evict(1);
        assert!(cache.get(1).is_none());
        cache.insert(&user(2));
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get(2).is_none(), "expired");
        let off = UserCache::new(Duration::ZERO);
        off.insert(&user(3));
        assert!(off.get(3).is_none());
    }
}
