//! [`CountingStore`]: wraps a [`Store`] and counts every query, per operation, into
//! `/metrics` (`origin_store_queries_total{op=…}`) and into a counter tests can read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use protocol::Segment;

use super::demo::DemoData;
use super::{Store, StoreError};
use crate::domain::{
    CatalogPage, CatalogQuery, CourseDetail, Credentials, Feed, SearchQuery, SearchResults,
    Session, Slug, Video, VideoId,
};

pub struct CountingStore {
    inner: Arc<dyn Store>,
    queries: AtomicU64,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            queries: AtomicU64::new(0),
        }
    }

    /// Queries made so far (every operation, including pings).
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    fn count(&self, op: &'static str) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("origin_store_queries_total", "op" => op).increment(1);
    }
}

#[async_trait]
impl Store for CountingStore {
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.count("ping");
        self.inner.ping().await
    }

    async fn catalog(&self, query: &CatalogQuery) -> Result<CatalogPage, StoreError> {
        self.count("catalog");
        self.inner.catalog(query).await
    }

    async fn course(&self, slug: &Slug) -> Result<Option<CourseDetail>, StoreError> {
        self.count("course");
        self.inner.course(slug).await
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchResults, StoreError> {
        self.count("search");
        self.inner.search(query).await
    }

    async fn video(&self, id: VideoId) -> Result<Option<Video>, StoreError> {
        self.count("video");
        self.inner.video(id).await
    }

    async fn feed(&self, segment: &Segment) -> Result<Option<Feed>, StoreError> {
        self.count("feed");
        self.inner.feed(segment).await
    }

    async fn most_viewed(&self, n: u32) -> Result<Vec<Slug>, StoreError> {
        self.count("most_viewed");
        self.inner.most_viewed(n).await
    }

    async fn feed_segments(&self) -> Result<Vec<Segment>, StoreError> {
        self.count("feed_segments");
        self.inner.feed_segments().await
    }

    async fn credentials(&self, email: &str) -> Result<Option<Credentials>, StoreError> {
        self.count("credentials");
        self.inner.credentials(email).await
    }

    async fn insert_session(
        &self,
        id: &str,
        user_id: i64,
        created_at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.count("insert_session");
        self.inner
            .insert_session(id, user_id, created_at, expires_at)
            .await
    }

    async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.count("session");
        self.inner.session(id).await
    }

    async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        self.count("delete_session");
        self.inner.delete_session(id).await
    }

    async fn load_demo(&self, demo: &DemoData, now: i64) -> Result<(), StoreError> {
        self.count("load_demo");
        self.inner.load_demo(demo, now).await
    }
}
