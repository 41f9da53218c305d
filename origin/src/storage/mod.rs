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
    CatalogPage, CatalogQuery, CourseDetail, Credentials, Feed, SearchQuery, SearchResults,
    Session, Slug, Video, VideoId,
};

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

    /// Loads demo content (idempotent: upserts by natural key) and recomputes feeds.
    async fn load_demo(&self, demo: &demo::DemoData, now: i64) -> Result<(), StoreError>;
}
