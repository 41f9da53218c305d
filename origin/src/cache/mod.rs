//! Cache-aside per domain, with the platform's TTLs: an in-process moka cache always,
//! plus Redis as a shared second level when configured.
//!
//! Entry point: [`Caches::get_or_load`]. A cold key under concurrency reaches the loader
//! once (moka coalesces concurrent initialisations of a key). Eviction has one door,
//! [`Caches::evict`] (by key, tag, domain or everything), called by the invalidator.
//!
//! **A load never re-inserts what an eviction removed.** Every eviction takes the next
//! number of an epoch and is remembered (a bounded log); a load notes the epoch before
//! it starts and, when it completes, is discarded and retried if an eviction since then
//! covers its key, its domain or one of its tags. Redis does the same across instances
//! (see [`redis`]): its put is refused when the key or a tag was evicted after the load
//! began.

pub mod keys;
pub mod redis;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use protocol::CacheTag;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use keys::CacheKey;
pub use redis::RedisL2;

use crate::storage::StoreError;

/// The cached API domains and their TTLs (the platform's per-domain strategy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    Catalog,
    Course,
    Search,
    Video,
    Feed,
}

impl Domain {
    pub const ALL: [Domain; 5] = [
        Domain::Catalog,
        Domain::Course,
        Domain::Search,
        Domain::Video,
        Domain::Feed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Catalog => "catalog",
            Self::Course => "course",
            Self::Search => "search",
            Self::Video => "video",
            Self::Feed => "feed",
        }
    }

    /// Catalog and course pages 5 min, search 1 min, video metadata 30 min, feed 10 min.
    pub const fn ttl(self) -> Duration {
        match self {
            Self::Catalog | Self::Course => Duration::from_secs(300),
            Self::Search => Duration::from_secs(60),
            Self::Video => Duration::from_secs(1800),
            Self::Feed => Duration::from_secs(600),
        }
    }

    /// Entries kept per domain in process memory.
    const fn capacity(self) -> u64 {
        match self {
            Self::Search => 20_000,
            _ => 10_000,
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// A cached response body with its validator and tags. Bodies are stored serialized,
/// so a hit costs no serialization at all.
#[derive(Debug, Clone)]
pub struct Entry {
    pub body: Bytes,
    /// Strong ETag (quoted): the first 128 bits of the body's SHA-256, hex.
    pub etag: String,
    pub tags: Vec<CacheTag>,
    /// `Cache-Tag` header value, spelled once when the entry is made (hot path).
    pub tag_header: String,
}

impl Entry {
    pub fn json<T: Serialize>(value: &T, tags: Vec<CacheTag>) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_default();
        let digest = Sha256::digest(&body);
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Self::new(Bytes::from(body), format!("\"{hex}\""), tags)
    }

    pub fn new(body: Bytes, etag: String, tags: Vec<CacheTag>) -> Self {
        let tag_header = CacheTag::header_value(&tags);
        Self {
            body,
            etag,
            tags,
            tag_header,
        }
    }
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Lookup {
    /// In-process cache.
    Hit,
    /// Redis (shared second level).
    L2Hit,
    /// Loaded from the store by this request.
    Miss,
}

impl Lookup {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::L2Hit => "L2HIT",
            Self::Miss => "MISS",
        }
    }
}

/// Why a load produced no entry.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The thing does not exist (not cached: a later create must be seen at once).
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An eviction covering this load happened while it ran: its value may be the old
    /// one, so it is not kept (the caller loads again).
    #[error("superseded by an eviction while loading")]
    Superseded,
}

/// What to evict: the one door for cache invalidation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eviction {
    Key(CacheKey),
    Tag(CacheTag),
    /// Every entry of one domain (a URL prefix that covers a whole route).
    Domain(Domain),
    /// Everything (the root prefix, or a bus that lost messages).
    All,
}

impl Eviction {
    /// Whether this eviction removes an entry stored under `key` with `tags`.
    pub fn covers(&self, key: &CacheKey, tags: &[CacheTag]) -> bool {
        match self {
            Self::Key(k) => k == key,
            Self::Tag(t) => tags.contains(t),
            Self::Domain(d) => *d == key.domain,
            Self::All => true,
        }
    }
}

/// Evictions remembered for loads still running; older loads are retried conservatively.
const EVICTION_LOG: usize = 4096;

/// The eviction epoch and the most recent evictions with their numbers.
#[derive(Default)]
struct EvictionLog {
    epoch: u64,
    recent: VecDeque<(u64, Eviction)>,
}

impl EvictionLog {
    fn record(&mut self, eviction: Eviction) {
        self.epoch += 1;
        if self.recent.len() == EVICTION_LOG {
            self.recent.pop_front();
        }
        self.recent.push_back((self.epoch, eviction));
    }

    /// Whether an eviction after `since` covers `key`/`tags`. When the log no longer
    /// reaches back to `since`, the answer is yes (a retry is cheap; a stale entry is not).
    fn superseded(&self, since: u64, key: &CacheKey, tags: &[CacheTag]) -> bool {
        if self.epoch == since {
            return false;
        }
        let reaches = self
            .recent
            .front()
            .is_some_and(|(first, _)| *first <= since + 1);
        !reaches
            || self
                .recent
                .iter()
                .rev()
                .take_while(|(n, _)| *n > since)
                .any(|(_, e)| e.covers(key, tags))
    }
}

/// How many times a load superseded by evictions is retried before its value is
/// served uncached (a key evicted continuously still answers).
const LOAD_ATTEMPTS: usize = 3;

pub struct Caches {
    l1: Vec<moka::future::Cache<String, Arc<Entry>>>,
    l2: Option<RedisL2>,
    /// `origin_cache_lookups_total{domain, result}`, registered once (hot path).
    counters: Vec<metrics::Counter>,
    evictions: Mutex<EvictionLog>,
}

impl Caches {
    pub fn new(l2: Option<RedisL2>) -> Self {
        let l1 = Domain::ALL
            .iter()
            .map(|domain| {
                moka::future::Cache::builder()
                    .max_capacity(domain.capacity())
                    .time_to_live(domain.ttl())
                    .support_invalidation_closures()
                    .build()
            })
            .collect();
        let counters = Domain::ALL
            .iter()
            .flat_map(|domain| {
                [Lookup::Hit, Lookup::L2Hit, Lookup::Miss].map(|lookup| {
                    metrics::counter!(
                        "origin_cache_lookups_total",
                        "domain" => domain.as_str(),
                        "result" => lookup.as_str()
                    )
                })
            })
            .collect();
        Self {
            l1,
            l2,
            counters,
            evictions: Mutex::new(EvictionLog::default()),
        }
    }

    fn epoch(&self) -> u64 {
        self.evictions.lock().map_or(0, |log| log.epoch)
    }

    fn superseded(&self, since: u64, key: &CacheKey, tags: &[CacheTag]) -> bool {
        // A poisoned lock means a panic mid-record: distrust the load.
        self.evictions
            .lock()
            .map_or(true, |log| log.superseded(since, key, tags))
    }

    pub fn has_l2(&self) -> bool {
        self.l2.is_some()
    }

    fn l1(&self, domain: Domain) -> &moka::future::Cache<String, Arc<Entry>> {
        &self.l1[domain.index()]
    }

    /// Cache-aside: in-process, then Redis, then `load` (the store). Concurrent callers
    /// of a cold key wait for one load. Not-found and errors are not cached, and neither
    /// is a value whose load an eviction overtook (it is loaded again).
    pub async fn get_or_load<F, Fut>(
        &self,
        key: &CacheKey,
        load: F,
    ) -> Result<(Arc<Entry>, Lookup), Arc<LoadError>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Entry, LoadError>>,
    {
        let domain = key.domain;
        // Fast path: a plain read, no entry API and no future built for the load.
        if let Some(entry) = self.l1(domain).get(key.as_str()).await {
            self.count(domain, Lookup::Hit);
            return Ok((entry, Lookup::Hit));
        }
        for _ in 1..LOAD_ATTEMPTS {
            match self.load_once(key, &load).await {
                Err(e) if matches!(*e, LoadError::Superseded) => {
                    metrics::counter!("origin_cache_superseded_loads_total").increment(1);
                }
                done => return done,
            }
        }
        // Evicted over and over while loading: answer from the store, keep nothing.
        let entry = load().await.map_err(Arc::new)?;
        self.count(domain, Lookup::Miss);
        Ok((Arc::new(entry), Lookup::Miss))
    }

    /// One coalesced load. `Err(Superseded)` when an eviction covered it before its value
    /// was inserted, or between the check and the insert (it is then removed again).
    async fn load_once<F, Fut>(
        &self,
        key: &CacheKey,
        load: &F,
    ) -> Result<(Arc<Entry>, Lookup), Arc<LoadError>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Entry, LoadError>>,
    {
        let domain = key.domain;
        // 0: not loaded by us, 1: from Redis, 2: from the store.
        let source = AtomicU8::new(0);
        let since = self.epoch();
        let init = async {
            if let Some(l2) = &self.l2
                && let Some(entry) = l2.get(key.as_str()).await
            {
                if self.superseded(since, key, &entry.tags) {
                    return Err(LoadError::Superseded);
                }
                source.store(1, Ordering::Relaxed);
                return Ok(Arc::new(entry));
            }
            let l2_since = match &self.l2 {
                Some(l2) => l2.epoch().await,
                None => None,
            };
            let entry = load().await?;
            if self.superseded(since, key, &entry.tags) {
                return Err(LoadError::Superseded);
            }
            source.store(2, Ordering::Relaxed);
            if let (Some(l2), Some(since)) = (&self.l2, l2_since) {
                l2.put(key, &entry, domain.ttl(), since).await;
            }
            Ok::<_, LoadError>(Arc::new(entry))
        };
        let entry = self
            .l1(domain)
            .entry(key.as_str().to_owned())
            .or_try_insert_with(init)
            .await?
            .into_value();
        let lookup = match source.load(Ordering::Relaxed) {
            1 => Lookup::L2Hit,
            2 => Lookup::Miss,
            _ => Lookup::Hit,
        };
        // An eviction between the check above and moka's insert found nothing to remove:
        // look again now that the value is in, and take it back out if so.
        if lookup != Lookup::Hit && self.superseded(since, key, &entry.tags) {
            self.l1(domain).invalidate(key.as_str()).await;
            return Err(Arc::new(LoadError::Superseded));
        }
        self.count(domain, lookup);
        Ok((entry, lookup))
    }

    fn count(&self, domain: Domain, lookup: Lookup) {
        self.counters[domain.index() * 3 + lookup as usize].increment(1);
    }

    /// Evicts in process (always) and in Redis (when `shared`: the instance that
    /// delivers a change does it once; peers told over the bus evict locally only).
    /// Redis failures are returned so the caller (the outbox) retries.
    pub async fn evict(&self, eviction: &Eviction, shared: bool) -> Result<(), String> {
        // Redis first: a local load that starts after the local eviction must not find
        // the old value still in Redis (it would pass the generation check).
        let shared_result = match (&self.l2, shared) {
            (Some(l2), true) => l2.evict(eviction).await.map(|_| ()),
            _ => Ok(()),
        };
        if let Ok(mut log) = self.evictions.lock() {
            log.record(eviction.clone());
        }
        match eviction {
            Eviction::Key(key) => self.l1(key.domain).invalidate(key.as_str()).await,
            Eviction::Tag(tag) => {
                for cache in &self.l1 {
                    let tag = tag.clone();
                    cache
                        .invalidate_entries_if(move |_, entry| entry.tags.contains(&tag))
                        .map_err(|e| e.to_string())?;
                }
            }
            Eviction::Domain(domain) => self.l1(*domain).invalidate_all(),
            Eviction::All => self.l1.iter().for_each(|cache| cache.invalidate_all()),
        }
        metrics::counter!("origin_cache_evictions_total").increment(1);
        shared_result
    }

    /// Entries currently held in process for a domain (approximate; for tests/metrics).
    pub async fn local_len(&self, domain: Domain) -> u64 {
        let cache = self.l1(domain);
        cache.run_pending_tasks().await;
        cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn key(n: u32) -> CacheKey {
        CacheKey::video(crate::domain::VideoId(i64::from(n)))
    }

    #[tokio::test]
    async fn a_cold_key_under_concurrency_is_loaded_once() {
        let caches = Arc::new(Caches::new(None));
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let caches = caches.clone();
            let loads = loads.clone();
            tasks.push(tokio::spawn(async move {
                caches
                    .get_or_load(&key(1), || async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Entry::json(&"v", vec![CacheTag::Video(1)]))
                    })
                    .await
                    .map(|(e, _)| e.body.clone())
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), Bytes::from_static(b"\"v\""));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn not_found_is_not_cached_and_eviction_by_tag_reloads() {
        let caches = Caches::new(None);
        let missing = caches
            .get_or_load(&key(2), || async { Err(LoadError::NotFound) })
            .await;
        assert!(matches!(
            missing.as_ref().map_err(|e| &**e),
            Err(LoadError::NotFound)
        ));
        let (_, first) = caches
            .get_or_load(&key(2), || async {
                Ok(Entry::json(&1, vec![CacheTag::Video(2)]))
            })
            .await
            .unwrap();
        assert_eq!(first, Lookup::Miss);
        let (_, second) = caches
            .get_or_load(&key(2), || async { unreachable!("cached") })
            .await
            .unwrap();
        assert_eq!(second, Lookup::Hit);
        caches
            .evict(&Eviction::Tag(CacheTag::Video(2)), true)
            .await
            .unwrap();
        let (entry, third) = caches
            .get_or_load(&key(2), || async {
                Ok(Entry::json(&2, vec![CacheTag::Video(2)]))
            })
            .await
            .unwrap();
        assert_eq!((third, &entry.body[..]), (Lookup::Miss, &b"2"[..]));
    }

    /// The known race: a load that read the old value, overtaken by an eviction, must
    /// not put the old value back. The first load reads "old" and is held until the
    /// eviction has run; the caller gets "new" and so does everyone after.
    #[tokio::test]
    async fn a_load_overtaken_by_an_eviction_is_not_kept() {
        for eviction in [
            Eviction::Tag(CacheTag::Video(5)),
            Eviction::Key(key(5)),
            Eviction::Domain(Domain::Video),
            Eviction::All,
        ] {
            let caches = Arc::new(Caches::new(None));
            let loads = Arc::new(AtomicUsize::new(0));
            let started = Arc::new(tokio::sync::Notify::new());
            let release = Arc::new(tokio::sync::Notify::new());
            let reader = {
                let (caches, loads, started, release) = (
                    caches.clone(),
                    loads.clone(),
                    started.clone(),
                    release.clone(),
                );
                tokio::spawn(async move {
                    caches
                        .get_or_load(&key(5), || {
                            let (loads, started, release) =
                                (loads.clone(), started.clone(), release.clone());
                            async move {
                                if loads.fetch_add(1, Ordering::SeqCst) == 0 {
                                    // The store answered "old"; the edit commits now.
                                    started.notify_one();
                                    release.notified().await;
                                    return Ok(Entry::json(&"old", vec![CacheTag::Video(5)]));
                                }
                                Ok(Entry::json(&"new", vec![CacheTag::Video(5)]))
                            }
                        })
                        .await
                        .map(|(e, _)| e.body.clone())
                })
            };
            started.notified().await;
            caches.evict(&eviction, true).await.unwrap();
            release.notify_one();
            let served = reader.await.unwrap().unwrap();
            assert_eq!(served, Bytes::from_static(b"\"new\""), "{eviction:?}");
            let (kept, lookup) = caches
                .get_or_load(&key(5), || async { unreachable!("cached") })
                .await
                .unwrap();
            assert_eq!(
                (lookup, &kept.body[..]),
                (Lookup::Hit, &b"\"new\""[..]),
                "{eviction:?}"
            );
            assert_eq!(loads.load(Ordering::SeqCst), 2, "{eviction:?}");
        }
    }

    #[tokio::test]
    async fn an_unrelated_eviction_does_not_discard_a_load() {
        let caches = Caches::new(None);
        let since = caches.epoch();
        caches
            .evict(&Eviction::Tag(CacheTag::Video(6)), true)
            .await
            .unwrap();
        assert!(!caches.superseded(since, &key(5), &[CacheTag::Video(5)]));
        assert!(caches.superseded(since, &key(6), &[CacheTag::Video(6)]));
    }

    #[test]
    fn a_log_that_no_longer_reaches_back_supersedes_conservatively() {
        let mut log = EvictionLog::default();
        for i in 0..(EVICTION_LOG as i64 + 10) {
            log.record(Eviction::Key(CacheKey::video(crate::domain::VideoId(
                1000 + i,
            ))));
        }
        assert!(log.superseded(0, &key(1), &[]), "older than the log");
        let recent = log.epoch - 5;
        assert!(!log.superseded(recent, &key(1), &[]));
        assert!(!log.superseded(log.epoch, &key(1), &[]));
    }

    #[test]
    fn etags_are_strong_and_follow_the_body() {
        let a = Entry::json(&"x", vec![]);
        let b = Entry::json(&"y", vec![]);
        assert!(a.etag.starts_with('"') && a.etag.ends_with('"') && a.etag.len() == 34);
        assert_ne!(a.etag, b.etag);
        assert_eq!(a.etag, Entry::json(&"x", vec![]).etag);
    }

    #[test]
    fn ttls_match_the_platform_strategy() {
        let secs: Vec<u64> = Domain::ALL.iter().map(|d| d.ttl().as_secs()).collect();
        assert_eq!(secs, [300, 300, 60, 1800, 600]);
    }
}
