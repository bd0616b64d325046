//! Brute-force protection for `POST /api/token/`: failed logins are counted per username and
//! per client address in fixed windows, and a key that reached its limit is refused (429 with
//! `Retry-After`) *before* its password is checked, so a locked-out attacker costs no argon2 work.
//!
//! **Per instance.** The counters live in this process's memory. Knative may run several pods
//! of the service, each with its own counters, and scaling to zero forgets them all. That is
//! acceptable here: the limiter exists to turn an online guessing attack from "as fast as the
//! pods can hash" into a handful of guesses per window per pod, which together with argon2id
//! and a bounded pod count still leaves a guess rate far too low to matter, while needing no
//! shared store on the cold-start path. An attacker cannot make a pod forget (only idleness
//! scales to zero, and an attack is not idle). A deployment that needs a global limit puts one
//! in front of the service (an ingress rate limit) as well.
//!
//! **Bounded.** Each table holds at most [`MAX_TRACKED_KEYS`] entries; when one is full,
//! expired entries are dropped and then the entry with the oldest window is evicted, so a flood
//! of invented usernames or addresses cannot grow memory without limit. Usernames are kept as
//! keyed 64-bit hashes (the key is random per process), never as the attacker's strings. IPv6
//! clients are counted per /64, the block one subscriber usually gets.
//!
//! **Concurrent guesses.** An attempt reserves a place in both counters until it is settled, so
//! firing many requests at once for one username cannot get more guesses verified than the limit
//! allows. A reservation dropped unsettled (the request was cancelled) is simply released.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, RandomState},
    net::IpAddr,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

/// Most keys tracked per table (usernames, addresses).
pub const MAX_TRACKED_KEYS: usize = 10_000;

/// Counters of one key.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Failures recorded in the current window.
    failures: u32,
    /// Attempts reserved but not settled yet.
    pending: u32,
    /// When the current window started (at its first failure); `None` before any failure.
    window_start: Option<Instant>,
}

/// One table of counters with a size bound.
#[derive(Debug)]
struct Table<K> {
    max_failures: u32,
    capacity: usize,
    entries: HashMap<K, Entry>,
}

impl<K: Copy + Eq + Hash> Table<K> {
    fn new(max_failures: u32, capacity: usize) -> Self {
        Self {
            max_failures,
            capacity,
            entries: HashMap::new(),
        }
    }

    fn enabled(&self) -> bool {
        self.max_failures > 0
    }

    /// Resets the window of `e` if it is over.
    fn refresh(e: &mut Entry, now: Instant, window: Duration) {
        if e.window_start.is_some_and(|s| now >= s + window) {
            e.failures = 0;
            e.window_start = None;
        }
    }

    /// Seconds until `key` may try again, or `None` when it may try now.
    fn blocked_for(&mut self, key: K, now: Instant, window: Duration) -> Option<u64> {
        if !self.enabled() {
            return None;
        }
        let e = self.entries.get_mut(&key)?;
        Self::refresh(e, now, window);
        if e.failures + e.pending < self.max_failures {
            return None;
        }
        // Blocked by reservations alone: they settle within one request's time.
        let remaining = e
            .window_start
            .map_or(Duration::from_secs(1), |s| (s + window) - now);
        Some(ceil_secs(remaining))
    }

    /// The entry of `key`, created when missing (evicting when the table is full).
    fn entry(&mut self, key: K, now: Instant, window: Duration) -> &mut Entry {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.make_room(now, window);
        }
        self.entries.entry(key).or_insert(Entry {
            failures: 0,
            pending: 0,
            window_start: None,
        })
    }

    /// Drops settled entries whose window is over; if none was, evicts the oldest window.
    fn make_room(&mut self, now: Instant, window: Duration) {
        self.entries.retain(|_, e| {
            Self::refresh(e, now, window);
            e.failures > 0 || e.pending > 0
        });
        if self.entries.len() < self.capacity {
            return;
        }
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, e)| (e.pending > 0, e.window_start))
            .map(|(k, _)| *k);
        if let Some(k) = oldest {
            self.entries.remove(&k);
        }
    }

    fn reserve(&mut self, key: K, now: Instant, window: Duration) {
        if self.enabled() {
            let e = self.entry(key, now, window);
            e.pending = e.pending.saturating_add(1);
        }
    }

    fn release(&mut self, key: K) {
        if let Some(e) = self.entries.get_mut(&key) {
            e.pending = e.pending.saturating_sub(1);
        }
    }

    fn fail(&mut self, key: K, now: Instant, window: Duration) {
        if !self.enabled() {
            return;
        }
        let e = self.entry(key, now, window);
        Self::refresh(e, now, window);
        e.pending = e.pending.saturating_sub(1);
        e.failures = e.failures.saturating_add(1);
        e.window_start.get_or_insert(now);
    }

    /// Forgets `key`'s failures (kept while other attempts are still pending).
    fn clear(&mut self, key: K) {
        if let Some(e) = self.entries.get_mut(&key) {
            e.pending = e.pending.saturating_sub(1);
            if e.pending == 0 {
                self.entries.remove(&key);
            } else {
                e.failures = 0;
                e.window_start = None;
            }
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// The part of a client address that is counted: IPv4 whole, IPv6 by its /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AddrKey {
    V4(u32),
    V6Prefix(u64),
}

impl From<IpAddr> for AddrKey {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => AddrKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => AddrKey::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
}

struct Tables {
    users: Table<u64>,
    addresses: Table<AddrKey>,
}

/// Counts failed logins per username and per client address; see the module docs.
pub struct LoginLimiter {
    window: Duration,
    hasher: RandomState,
    tables: Mutex<Tables>,
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimiter")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// A refused attempt: how long the client should wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Seconds until the blocking window ends (at least 1).
    pub retry_after: u64,
}

impl LoginLimiter {
    /// A limiter allowing `per_user` failures per username and `per_address` per client address
    /// in each `window`; a limit of 0 turns that limit off.
    pub fn new(per_user: u32, per_address: u32, window: Duration) -> Self {
        Self::with_capacity(per_user, per_address, window, MAX_TRACKED_KEYS)
    }

    /// Like [`LoginLimiter::new`] with another table size (tests).
    pub fn with_capacity(per_user: u32, per_address: u32, window: Duration, cap: usize) -> Self {
        Self {
            window,
            hasher: RandomState::new(),
            tables: Mutex::new(Tables {
                users: Table::new(per_user, cap),
                addresses: Table::new(per_address, cap),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // The tables stay consistent whatever panicked while holding the lock.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a login attempt for `username` from `addr` (unknown address: only the username is
    /// counted), or says how long to wait when either has too many recent failures.
    pub fn begin(&self, username: &str, addr: Option<IpAddr>) -> Result<Attempt<'_>, Limited> {
        self.begin_at(username, addr, Instant::now())
    }

    fn begin_at(
        &self,
        username: &str,
        addr: Option<IpAddr>,
        now: Instant,
    ) -> Result<Attempt<'_>, Limited> {
        let user = self.hasher.hash_one(username);
        let addr = addr.map(AddrKey::from);
        let mut t = self.lock();
        let wait = [
            t.users.blocked_for(user, now, self.window),
            addr.and_then(|a| t.addresses.blocked_for(a, now, self.window)),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(retry_after) = wait {
            return Err(Limited { retry_after });
        }
        t.users.reserve(user, now, self.window);
        if let Some(a) = addr {
            t.addresses.reserve(a, now, self.window);
        }
        Ok(Attempt {
            limiter: self,
            user,
            addr,
            settled: false,
        })
    }

    /// Number of tracked (usernames, addresses), for tests and diagnostics.
    pub fn tracked(&self) -> (usize, usize) {
        let t = self.lock();
        (t.users.entries.len(), t.addresses.entries.len())
    }
}

/// An attempt admitted by [`LoginLimiter::begin`]; settle it with [`Attempt::failed`] or
/// [`Attempt::succeeded`]. Dropping it unsettled releases its reservation without counting.
#[derive(Debug)]
#[must_use = "settle the attempt with failed() or succeeded()"]
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    user: u64,
    addr: Option<AddrKey>,
    settled: bool,
}

impl Attempt<'_> {
    /// Wrong credentials: counts one failure for the username and the address.
    pub fn failed(self) {
        self.failed_at(Instant::now());
    }

    fn failed_at(mut self, now: Instant) {
        let window = self.limiter.window;
        let mut t = self.limiter.lock();
        t.users.fail(self.user, now, window);
        if let Some(a) = self.addr {
            t.addresses.fail(a, now, window);
        }
        self.settled = true;
    }

    /// Right credentials: nothing is counted, and the username's earlier failures are forgotten
    /// (the address's are not, so one known account cannot unlock guessing at others).
    pub fn succeeded(mut self) {
        let mut t = self.limiter.lock();
        t.users.clear(self.user);
        if let Some(a) = self.addr {
            t.addresses.release(a);
        }
        self.settled = true;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let mut t = self.limiter.lock();
            t.users.release(self.user);
            if let Some(a) = self.addr {
                t.addresses.release(a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(300);

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn username_locks_after_max_failures_until_the_window_ends() {
        let l = LoginLimiter::new(3, 100, W);
        let t0 = Instant::now();
        for _ in 0..3 {
            l.begin_at("alice", ip("10.0.0.1"), t0)
                .unwrap()
                .failed_at(t0);
        }
        let later = t0 + Duration::from_secs(100);
        let e = l.begin_at("alice", ip("10.0.0.2"), later).unwrap_err();
        assert_eq!(e.retry_after, 200);
        assert!(l.begin_at("bob", ip("10.0.0.1"), later).is_ok());
        assert!(l.begin_at("alice", ip("10.0.0.1"), t0 + W).is_ok());
    }

    #[test]
    fn address_limit_spans_usernames_and_ipv6_counts_per_64() {
        let l = LoginLimiter::new(100, 2, W);
        let t0 = Instant::now();
        l.begin_at("a", ip("2001:db8::1"), t0)
            .unwrap()
            .failed_at(t0);
        l.begin_at("b", ip("2001:db8::ffff"), t0)
            .unwrap()
            .failed_at(t0);
        assert!(l.begin_at("c", ip("2001:db8::2"), t0).is_err());
        assert!(l.begin_at("c", ip("2001:db8:0:1::2"), t0).is_ok());
        // Without an address only the username counts.
        assert!(l.begin_at("c", None, t0).is_ok());
    }

    #[test]
    fn success_does_not_count_and_clears_the_username() {
        let l = LoginLimiter::new(2, 3, W);
        let t0 = Instant::now();
        for _ in 0..10 {
            l.begin_at("ok", ip("10.0.0.1"), t0).unwrap().succeeded();
        }
        l.begin_at("u", ip("10.0.0.1"), t0).unwrap().failed_at(t0);
        l.begin_at("u", ip("10.0.0.1"), t0).unwrap().succeeded();
        l.begin_at("u", ip("10.0.0.1"), t0).unwrap().failed_at(t0);
        // The username was cleared by the success; the address keeps its two failures.
        assert!(l.begin_at("u", ip("10.0.0.2"), t0).is_ok());
        l.begin_at("v", ip("10.0.0.1"), t0).unwrap().failed_at(t0);
        assert!(l.begin_at("w", ip("10.0.0.1"), t0).is_err());
    }

    #[test]
    fn pending_attempts_reserve_guesses() {
        let l = LoginLimiter::new(2, 100, W);
        let t0 = Instant::now();
        let a = l.begin_at("x", None, t0).unwrap();
        let b = l.begin_at("x", None, t0).unwrap();
        assert_eq!(l.begin_at("x", None, t0).unwrap_err().retry_after, 1);
        drop(a);
        b.failed_at(t0);
        let c = l.begin_at("x", None, t0).unwrap();
        c.failed_at(t0);
        assert_eq!(l.begin_at("x", None, t0).unwrap_err().retry_after, 300);
    }

    #[test]
    fn tables_stay_bounded() {
        let l = LoginLimiter::with_capacity(5, 5, W, 50);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(i));
            l.begin_at(&format!("user{i}"), Some(addr), t0)
                .unwrap()
                .failed_at(t0);
        }
        let (users, addresses) = l.tracked();
        assert!(users <= 50 && addresses <= 50, "{users} {addresses}");
        // Unsettled-then-dropped attempts leave nothing counted.
        let l = LoginLimiter::new(1, 1, W);
        drop(l.begin("y", ip("10.0.0.9")).unwrap());
        assert!(l.begin("y", ip("10.0.0.9")).is_ok());
    }

    #[test]
    fn zero_disables_a_limit() {
        let l = LoginLimiter::new(0, 0, W);
        let t0 = Instant::now();
        for _ in 0..20 {
            l.begin_at("z", ip("10.0.0.1"), t0).unwrap().failed_at(t0);
        }
        assert_eq!(l.tracked(), (0, 0));
    }
}
