//! The read paths: parsed input → cache key → cache-aside → entry. Handlers and the
//! warmer both call these, so a warmed key is exactly the key a request asks for.

use std::sync::Arc;

use protocol::{CacheTag, Segment};

use crate::AppState;
use crate::cache::{CacheKey, Entry, LoadError, Lookup};
use crate::domain::{CatalogQuery, SearchQuery, Slug, VideoId};
use crate::storage::Store;

pub type Served = Result<(Arc<Entry>, Lookup), Arc<LoadError>>;

pub async fn catalog(state: &AppState, query: &CatalogQuery) -> Served {
    let store = state.store.clone();
    state
        .caches
        .get_or_load(&CacheKey::catalog(query), || {
            let store = store.clone();
            async move {
                let page = store.catalog(query).await?;
                Ok(Entry::json(&page, vec![CacheTag::Catalog]))
            }
        })
        .await
}

pub async fn course(state: &AppState, slug: &Slug) -> Served {
    let store = state.store.clone();
    state
        .caches
        .get_or_load(&CacheKey::course(slug), || {
            let store = store.clone();
            async move {
                let detail = store.course(slug).await?.ok_or(LoadError::NotFound)?;
                let tags = vec![CacheTag::Course(detail.course.id)];
                Ok(Entry::json(&detail, tags))
            }
        })
        .await
}

pub async fn search(state: &AppState, query: &SearchQuery) -> Served {
    let store = state.store.clone();
    state
        .caches
        .get_or_load(&CacheKey::search(query), || {
            let store = store.clone();
            async move {
                let results = store.search(query).await?;
                Ok(Entry::json(&results, vec![CacheTag::Search]))
            }
        })
        .await
}

pub async fn video(state: &AppState, id: VideoId) -> Served {
    let store = state.store.clone();
    state
        .caches
        .get_or_load(&CacheKey::video(id), || {
            let store = store.clone();
            async move {
                let video = store.video(id).await?.ok_or(LoadError::NotFound)?;
                Ok(Entry::json(&video, vec![CacheTag::Video(video.id)]))
            }
        })
        .await
}

pub async fn feed(state: &AppState, segment: &Segment) -> Served {
    let store = state.store.clone();
    let served = state
        .caches
        .get_or_load(&CacheKey::feed(segment), || {
            let store = store.clone();
            async move {
                let feed = store.feed(segment).await?.ok_or(LoadError::NotFound)?;
                Ok(Entry::json(
                    &feed,
                    vec![CacheTag::Feed(segment.to_string())],
                ))
            }
        })
        .await;
    if let Ok((entry, _)) = &served {
        state.remember_feed(&segment.to_string(), entry);
    }
    served
}
