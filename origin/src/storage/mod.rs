//! The store behind one trait, [`Store`], with one SQL implementation ([`sql::SqlStore`])
//! over sqlx's `Any` driver: embedded SQLite by default (a file under the data
//! directory), PostgreSQL when `DATABASE_URL` says so. Queries are shared where the
//! engines allow; search uses each engine's own full-text index (FTS5 / tsvector).
//! [`counting::CountingStore`] wraps any store and counts queries for `/metrics` and tests.

pub mod counting;
pub mod demo;
pub mod sql;

use async_trait::async_trait;
use protocol::Segment;
use thiserror::Error;

use crate::domain::{
    CatalogPage, CatalogQuery, CourseDetail, CourseEdit, Credentials, Feed, SearchQuery,
    SearchResults, Session, Slug, Video, VideoEdit, VideoId,
};
use protocol::purge::Change;

/// A purge waiting in (or delivered from) the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub change: Change,
    pub actor: String,
    pub created_at_ms: i64,
    pub attempts: i64,
    /// Targets (and batches) that acknowledged this purge already.
    pub acked: Vec<String>,
    pub delivered_at_ms: Option<i64>,
    pub last_error: Option<String>,
    /// The claim this copy was read under (its `leased_until`): an attempt is recorded
    /// only while the claim is still this one.
    pub lease: i64,
}

/// What an `If-Match` edit did.
#[derive(Debug, Clone, PartialEq)]
pub enum Edited<T> {
    /// Changed, with the new representation and the outbox row of its purge.
    Updated {
        value: T,
        outbox_id: i64,
    },
    Missing,
    /// The `If-Match` ETag is not the current one (a lost update was refused).
    Stale {
        current_etag: String,
    },
}

/// How an edit knows the current representation's ETag (the cache's spelling) and what
/// to purge for it: passed in so the store stays free of cache policy.
pub struct EditRules<'a, T> {
    pub etag: fn(&T) -> String,
    pub change: &'a (dyn Fn(&T, &[String]) -> Change + Sync),
    pub actor: &'a str,
    pub now_ms: i64,
}

pub use counting::CountingStore;
pub use sql::SqlStore;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("could not create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the database could not be reached or is shutting down (a refused
    /// connection, a pool timeout, PostgreSQL's admin-shutdown and cannot-connect-now
    /// states): the request may succeed later, so it is a 503, not a 500.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            Self::Database(sqlx::Error::Database(db)) => {
                matches!(
                    db.code().as_deref(),
                    Some("57P01" | "57P02" | "57P03" | "08006" | "08001")
                )
            }
            _ => false,
        }
    }
}

/// What the origin reads and writes. Every method is one logical query.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn engine(&self) -> &'static str;
    async fn ping(&self) -> Result<(), StoreError>;

    async fn catalog(&self, query: &CatalogQuery) -> Result<CatalogPage, StoreError>;
    async fn course(&self, slug: &Slug) -> Result<Option<CourseDetail>, StoreError>;
    async fn search(&self, query: &SearchQuery) -> Result<SearchResults, StoreError>;
    async fn video(&self, id: VideoId) -> Result<Option<Video>, StoreError>;
    async fn feed(&self, segment: &Segment) -> Result<Option<Feed>, StoreError>;

    /// Slugs of the `n` most-viewed courses (for warming).
    async fn most_viewed(&self, n: u32) -> Result<Vec<Slug>, StoreError>;
    /// Every segment that has a precomputed feed (for warming).
    async fn feed_segments(&self) -> Result<Vec<Segment>, StoreError>;

    async fn credentials(&self, email: &str) -> Result<Option<Credentials>, StoreError>;
    async fn insert_session(
        &self,
        id: &str,
        user_id: i64,
        created_at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError>;
    async fn session(&self, id: &str) -> Result<Option<Session>, StoreError>;
    /// `true` when a row was deleted.
    async fn delete_session(&self, id: &str) -> Result<bool, StoreError>;

    /// Replaces a course's editable fields if `if_match` is its current ETag, recomputes
    /// the feeds, and writes the purge's outbox row, all in one transaction.
    async fn edit_course(
        &self,
        slug: &Slug,
        if_match: &str,
        edit: &CourseEdit,
        rules: EditRules<'_, CourseDetail>,
    ) -> Result<Edited<CourseDetail>, StoreError>;

    /// The same for a video's metadata.
    async fn edit_video(
        &self,
        id: VideoId,
        if_match: &str,
        edit: &VideoEdit,
        rules: EditRules<'_, Video>,
    ) -> Result<Edited<Video>, StoreError>;

    /// Recomputes every feed and writes the purge for them in the same transaction;
    /// returns the segments and the outbox id.
    async fn rebuild_feeds(
        &self,
        change: &(dyn for<'s> Fn(&'s [String]) -> Change + Sync),
        actor: &str,
        now_ms: i64,
    ) -> Result<(Vec<String>, i64), StoreError>;

    /// Writes a purge alone (an operator's `POST /admin/invalidate`).
    async fn record_purge(
        &self,
        change: &Change,
        actor: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError>;

    /// Claims up to `limit` purges due at `now_ms` that nobody holds, for `lease_ms`.
    async fn claim_purges(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError>;

    /// Records a delivery attempt: acknowledged by every target (`next_at_ms: None`) or
    /// to be retried at `next_at_ms`. `false` when the claim `lease` was lost (another
    /// instance took the row over): nothing is written.
    async fn purge_attempted(
        &self,
        id: i64,
        lease: i64,
        acked: &[String],
        next_at_ms: Option<i64>,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Deletes purges acknowledged before `before_ms` (the outbox keeps a week).
    async fn prune_purges(&self, before_ms: i64) -> Result<u64, StoreError>;

    /// Purges not yet acknowledged by every target.
    async fn pending_purges(&self) -> Result<i64, StoreError>;

    async fn purge_row(&self, id: i64) -> Result<Option<OutboxRow>, StoreError>;

    /// Loads demo content (idempotent: upserts by natural key) and recomputes feeds.
    async fn load_demo(&self, demo: &demo::DemoData, now: i64) -> Result<(), StoreError>;

    /// An image's intrinsic size, if the `media` table knows it.
    async fn media_size(&self, key: &str) -> Result<Option<crate::domain::Size>, StoreError>;

    /// Records an image's intrinsic size (an upsert: a replaced original changes it).
    async fn put_media_size(&self, key: &str, size: crate::domain::Size) -> Result<(), StoreError>;
}
