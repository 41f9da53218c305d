//! [`CountingStore`]: wraps a [`Store`] and counts every query, per operation, into
//! `/metrics` (`origin_store_queries_total{op=…}`) and into a counter tests can read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use protocol::Segment;

use super::demo::DemoData;
use super::{EditRules, Edited, OutboxRow, Store, StoreError};
use crate::domain::{
    CatalogPage, CatalogQuery, CourseDetail, CourseEdit, Credentials, Feed, SearchQuery,
    SearchResults, Session, Slug, Video, VideoEdit, VideoId,
};
use protocol::purge::Change;

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

    async fn media_size(&self, key: &str) -> Result<Option<crate::domain::Size>, StoreError> {
        self.count("media_size");
        self.inner.media_size(key).await
    }

    async fn put_media_size(&self, key: &str, size: crate::domain::Size) -> Result<(), StoreError> {
        self.count("put_media_size");
        self.inner.put_media_size(key, size).await
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

    async fn edit_course(
        &self,
        slug: &Slug,
        if_match: &str,
        edit: &CourseEdit,
        rules: EditRules<'_, CourseDetail>,
    ) -> Result<Edited<CourseDetail>, StoreError> {
        self.count("edit_course");
        self.inner.edit_course(slug, if_match, edit, rules).await
    }

    async fn edit_video(
        &self,
        id: VideoId,
        if_match: &str,
        edit: &VideoEdit,
        rules: EditRules<'_, Video>,
    ) -> Result<Edited<Video>, StoreError> {
        self.count("edit_video");
        self.inner.edit_video(id, if_match, edit, rules).await
    }

    async fn rebuild_feeds(
        &self,
        change: &(dyn for<'s> Fn(&'s [String]) -> Change + Sync),
        actor: &str,
        now_ms: i64,
    ) -> Result<(Vec<String>, i64), StoreError> {
        self.count("rebuild_feeds");
        self.inner.rebuild_feeds(change, actor, now_ms).await
    }

    // The outbox is the invalidator's bookkeeping, polled in the background: it is not
    // counted with the read paths' queries (tests assert those exactly).

    async fn record_purge(
        &self,
        change: &Change,
        actor: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        self.inner.record_purge(change, actor, now_ms).await
    }

    async fn claim_purges(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.inner.claim_purges(now_ms, lease_ms, limit).await
    }

    async fn purge_attempted(
        &self,
        id: i64,
        lease: i64,
        acked: &[String],
        next_at_ms: Option<i64>,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.inner
            .purge_attempted(id, lease, acked, next_at_ms, error, now_ms)
            .await
    }

    async fn prune_purges(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.inner.prune_purges(before_ms).await
    }

    async fn pending_purges(&self) -> Result<i64, StoreError> {
        self.inner.pending_purges().await
    }

    async fn purge_row(&self, id: i64) -> Result<Option<OutboxRow>, StoreError> {
        self.inner.purge_row(id).await
    }

    async fn load_demo(&self, demo: &DemoData, now: i64) -> Result<(), StoreError> {
        self.count("load_demo");
        self.inner.load_demo(demo, now).await
    }
}
