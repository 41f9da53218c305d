//! course-edge origin: the small native service behind the edge.
//!
//! `app(state) -> Router` builds the whole HTTP surface without a socket, so the
//! integration tests in `origin/tests` drive it exactly as `main` serves it.
//!
//! | module | role |
//! |---|---|
//! | [`config`] | env + flags (clap) into one validated [`config::Config`] |
//! | [`domain`] | parsed inputs and response models |
//! | [`storage`] | the [`storage::Store`] trait: SQLite by default, PostgreSQL by URL |
//! | [`cache`] | cache-aside per domain: moka in process, Redis shared |
//! | [`service`] | the read paths (cache → store), shared by handlers and warming |
//! | [`sessions`] | write-through sessions and signed cookies |
//! | [`admission`] | load shedding per class |
//! | [`warm`] | cache warming before `/readyz` turns ready |
//! | [`invalidation`] | the one door: outbox, evictions, bus to peers, edge and Cloudflare purges |
//! | [`http`] | routes, handlers, the one error type |
//! | [`telemetry`] | tracing and Prometheus metrics |

pub mod admission;
pub mod cache;
pub mod config;
pub mod domain;
pub mod http;
pub mod invalidation;
pub mod login_limits;
pub mod media;
pub mod rollout;
pub mod service;
pub mod sessions;
pub mod site;
pub mod storage;
pub mod telemetry;
pub mod warm;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use protocol::SessionKeys;

pub use http::app;

use crate::admission::Admission;
use crate::cache::{Caches, Entry, RedisL2};
use crate::config::Settings;
use crate::invalidation::{Bus, DeliverySettings, Invalidator, Targets};
use crate::sessions::Sessions;
use crate::storage::{CountingStore, Store};

/// Everything a handler may reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<CountingStore>,
    pub caches: Arc<Caches>,
    pub sessions: Arc<Sessions>,
    pub admission: Arc<Admission>,
    /// Per-IP and per-account login allowances (apart from `admission`).
    pub login_limits: Arc<crate::login_limits::LoginLimits>,
    pub settings: Arc<Settings>,
    /// The one door for invalidation (outbox delivery, evictions, purges).
    pub invalidator: Arc<Invalidator>,
    ready: Arc<AtomicBool>,
    /// The last feed served per segment, kept past its TTL: what a shed feed answers.
    last_feeds: Arc<RwLock<HashMap<String, Arc<Entry>>>>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        redis: Option<RedisL2>,
        keys: SessionKeys,
        settings: Settings,
    ) -> Self {
        let store = Arc::new(CountingStore::new(store));
        let caches = Arc::new(Caches::new(redis.clone()));
        let invalidator = Arc::new(Invalidator::new(
            store.clone(),
            caches.clone(),
            Bus::Local,
            Targets::default(),
            DeliverySettings::default(),
        ));
        Self {
            store,
            caches,
            invalidator,
            sessions: Arc::new(Sessions::new(
                keys,
                settings.session_ttl,
                redis,
                &settings.login,
            )),
            admission: Arc::new(Admission::new(settings.limits.clone())),
            login_limits: Arc::new(crate::login_limits::LoginLimits::new(&settings.login)),
            settings: Arc::new(settings),
            ready: Arc::new(AtomicBool::new(false)),
            last_feeds: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// Replaces the invalidator's bus, targets and pacing (before it is spawned).
    pub fn with_invalidation(
        mut self,
        bus: Bus,
        targets: Targets,
        delivery: DeliverySettings,
    ) -> Self {
        self.invalidator = Arc::new(Invalidator::new(
            self.store.clone(),
            self.caches.clone(),
            bus,
            targets,
            delivery,
        ));
        self
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub(crate) fn remember_feed(&self, segment: &str, entry: &Arc<Entry>) {
        if let Ok(mut feeds) = self.last_feeds.write() {
            feeds.insert(segment.to_owned(), entry.clone());
        }
    }

    pub(crate) fn last_feed(&self, segment: &str) -> Option<Arc<Entry>> {
        self.last_feeds.read().ok()?.get(segment).cloned()
    }
}

/// A random session key, for runs without `SESSION_KEYS` (sessions die with the process).
pub fn ephemeral_session_keys() -> SessionKeys {
    let mut secret = [0u8; 32];
    // Without OS randomness nothing secure can be done; fail at start, not later.
    if let Err(e) = getrandom::fill(&mut secret) {
        panic!("no OS randomness for an ephemeral session key: {e}");
    }
    SessionKeys::parse(&SessionKeys::spec_for("ephemeral", &secret))
        .unwrap_or_else(|e| panic!("ephemeral key: {e}"))
}
