//! An in-memory cache for the hottest reads: bearer-token lookups and pages
//! of an environment's services.
//!
//! Correctness rests on one rule, which the store already follows: every
//! change to the data behind a cached read is written in an
//! [`AuditTx`](crate::audit::AuditTx) (the audit log demands it), and every
//! `AuditTx` commit bumps a change generation. An entry remembers the
//! generation it was read at and counts only while that is still current, so
//! a reader racing a writer can at worst store an entry that is already dead.
//!
//! - SQLite is one process's store: a commit bumps the generation in that
//!   process ([`changed`]), so the cache is exact.
//! - PostgreSQL can have several replicas: every `AuditTx` also sends
//!   `NOTIFY slipway_changes` inside its transaction (delivered at commit), and
//!   each replica listens on a dedicated connection ([`listen_postgres`]).
//!   While that connection is down the cache is bypassed, and the generation
//!   is bumped when it comes back, so notifications lost meanwhile cannot
//!   leave stale entries. Another replica's change is seen as soon as its
//!   notification arrives (milliseconds).
//!
//! Every entry also expires after [`MAX_AGE`], a bound for changes that do not
//! go through the API (a direct edit of the database).
//!
//! The cache holds plain data only: stored rows and encoded bytes. What they
//! mean (a principal, a page of services) is decided by their readers
//! (`auth::tokens`, `api::services`); this module knows neither auth nor HTTP.
use super::entities::api_token;
use bytes::Bytes;
use sea_orm::DatabaseConnection;
use std::{
    collections::HashMap,
    hash::Hash,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

/// The PostgreSQL channel every audited commit notifies.
pub const CHANNEL: &str = "slipway_changes";
/// The statement an audited transaction runs before it commits.
pub const NOTIFY: &str = "NOTIFY slipway_changes";

/// How long an entry may be served at most, whatever the generation says.
pub const MAX_AGE: Duration = Duration::from_secs(10);

/// Entries per shelf; a full shelf is emptied (simple, and the hot set refills
/// it at once).
const CAPACITY: usize = 4096;

/// Bumped by every audited commit of this process. Global because an
/// `AuditTx` is begun from a bare connection in over a hundred places; a
/// second server in the same process (tests) only sees extra invalidations.
static LOCAL_CHANGES: AtomicU64 = AtomicU64::new(0);

/// Records that this process committed a change.
pub fn changed() {
    LOCAL_CHANGES.fetch_add(1, Ordering::AcqRel);
}

/// The change generation a read starts at, or `None` when the cache must be
/// bypassed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation {
    local: u64,
    remote: u64,
}

pub struct ReadCache {
    /// Changes heard from other replicas (and listener restarts).
    remote: AtomicU64,
    /// False while changes from other replicas could go unheard.
    live: AtomicBool,
    /// Unrevoked API token rows by the SHA-256 of their secret.
    pub tokens: Shelf<String, api_token::Model>,
    /// Encoded pages of an environment's services by (environment, limit, offset).
    pub service_pages: Shelf<(uuid::Uuid, u64, u64), Bytes>,
}

impl ReadCache {
    /// A cache that is live from the start: the store has no other writers.
    pub fn single_process() -> Self {
        Self::new(true)
    }

    /// A cache that stays bypassed until [`listen_postgres`] is listening.
    pub fn replicated() -> Self {
        Self::new(false)
    }

    fn new(live: bool) -> Self {
        Self {
            remote: AtomicU64::new(0),
            live: AtomicBool::new(live),
            tokens: Shelf::default(),
            service_pages: Shelf::default(),
        }
    }

    /// The generation to read at, `None` to bypass the cache.
    pub fn generation(&self) -> Option<Generation> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        Some(Generation {
            local: LOCAL_CHANGES.load(Ordering::Acquire),
            remote: self.remote.load(Ordering::Acquire),
        })
    }

    fn remote_changed(&self) {
        self.remote.fetch_add(1, Ordering::AcqRel);
    }

    fn set_live(&self, live: bool) {
        self.remote_changed();
        self.live.store(live, Ordering::Release);
    }
}

/// One kind of cached value.
pub struct Shelf<K, V> {
    entries: Mutex<HashMap<K, Entry<V>>>,
}

struct Entry<V> {
    generation: Generation,
    at: Instant,
    value: V,
}

impl<K, V> Default for Shelf<K, V> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V: Clone> Shelf<K, V> {
    /// The value stored at `current`, if not older than [`MAX_AGE`].
    pub fn get(&self, current: Generation, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|e| e.generation == current && e.at.elapsed() < MAX_AGE)
            .map(|e| e.value.clone())
    }

    /// Stores a value read after `read_at` was taken.
    pub fn put(&self, read_at: Generation, key: K, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(
            key,
            Entry {
                generation: read_at,
                at: Instant::now(),
                value,
            },
        );
    }
}

/// Keeps `cache` in step with the other replicas: listens for
/// [`CHANNEL`] on its own connection, bypassing the cache while it cannot.
pub fn listen_postgres(db: &DatabaseConnection, cache: std::sync::Arc<ReadCache>) {
    let pool = db.get_postgres_connection_pool().clone();
    tokio::spawn(async move {
        use sea_orm::sqlx::postgres::PgListener;
        let mut backoff = Duration::from_millis(200);
        loop {
            let listener = async {
                let mut l = PgListener::connect_with(&pool).await?;
                l.listen(CHANNEL).await?;
                Ok::<_, sea_orm::sqlx::Error>(l)
            }
            .await;
            let mut listener = match listener {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "read cache: cannot listen for changes; bypassing the cache");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            cache.set_live(true);
            while let Ok(Some(_)) = listener.try_recv().await {
                cache.remote_changed();
            }
            tracing::warn!("read cache: change listener disconnected; bypassing the cache");
            cache.set_live(false);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_counts_only_at_its_generation() {
        let cache = ReadCache::single_process();
        let g = cache.generation().expect("live");
        cache
            .service_pages
            .put(g, (uuid::Uuid::nil(), 50, 0), "a".into());
        assert_eq!(
            cache.service_pages.get(g, &(uuid::Uuid::nil(), 50, 0)),
            Some("a".into())
        );
        changed();
        let now = cache.generation().expect("live");
        assert_ne!(now, g);
        assert_eq!(
            cache.service_pages.get(now, &(uuid::Uuid::nil(), 50, 0)),
            None
        );
    }

    #[test]
    fn a_replicated_cache_is_bypassed_until_listening() {
        let cache = ReadCache::replicated();
        assert_eq!(cache.generation(), None);
        cache.set_live(true);
        let g = cache.generation().expect("live");
        cache.remote_changed();
        assert_ne!(cache.generation(), Some(g));
        cache.set_live(false);
        assert_eq!(cache.generation(), None);
    }
}
