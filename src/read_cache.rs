//! A one-value read cache for data that is read on every request but rarely written (the
//! pipeline catalogue behind `GET /api/pipelines/`).
//!
//! A database round trip costs more than the rest of such a request (on SQLite, two thread
//! hand-offs per query), so the value is kept for a short time. Two rules keep it honest:
//! - writes made by this process call [`ReadCache::invalidate`] after they commit, so a client
//!   always reads its own writes through the same instance;
//! - a value is trusted for at most the TTL (`PIPELINE_LIST_CACHE_MS`, default 1 s), which
//!   bounds how long a change made elsewhere (another replica on PostgreSQL, the CLI on the
//!   same SQLite file) stays invisible. A TTL of zero turns the cache off.
//!
//! A value read while a write was committing is never stored over the newer generation: the
//! reader notes the generation before it queries and stores only if it is still current.

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

struct Entry<T> {
    generation: u64,
    read_at: Instant,
    value: Arc<T>,
}

/// One cached value with a write generation and a TTL.
pub struct ReadCache<T> {
    ttl: Duration,
    generation: AtomicU64,
    slot: RwLock<Option<Entry<T>>>,
}

impl<T> std::fmt::Debug for ReadCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("ttl", &self.ttl)
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T> ReadCache<T> {
    /// An empty cache whose values live at most `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            generation: AtomicU64::new(0),
            slot: RwLock::new(None),
        }
    }

    /// The cached value if it is of the current generation and younger than the TTL.
    pub fn get(&self) -> Option<Arc<T>> {
        let slot = self.slot.read().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .filter(|e| {
                e.generation == self.generation.load(Ordering::Acquire)
                    && e.read_at.elapsed() < self.ttl
            })
            .map(|e| e.value.clone())
    }

    /// The generation to pass to [`ReadCache::store`]; read it BEFORE querying.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps `value`, read at `generation`, unless a write has happened since.
    pub fn store(&self, generation: u64, value: Arc<T>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut slot = self.slot.write().unwrap_or_else(|e| e.into_inner());
        if generation == self.generation.load(Ordering::Acquire) {
            *slot = Some(Entry {
                generation,
                read_at: Instant::now(),
                value,
            });
        }
    }

    /// Marks the cached value stale: call after committing a write that changes it.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_time_invalidate() {
        let cache = ReadCache::new(Duration::from_millis(50));
        assert!(cache.get().is_none());
        let g = cache.generation();
        cache.store(g, Arc::new(1));
        assert_eq!(cache.get().as_deref(), Some(&1));
        cache.invalidate();
        assert!(cache.get().is_none(), "a write makes it stale");

        // A read that started before a write must not be stored after it.
        let before = cache.generation();
        cache.invalidate();
        cache.store(before, Arc::new(2));
        assert!(cache.get().is_none());

        cache.store(cache.generation(), Arc::new(3));
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get().is_none(), "expired");

        let off = ReadCache::new(Duration::ZERO);
        off.store(off.generation(), Arc::new(4));
        assert!(off.get().is_none());
    }
}
