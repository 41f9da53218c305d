//! Cache warming at start: the first catalog pages, the most-viewed courses and every
//! segment's feed are loaded through the same paths requests use, then the origin is
//! marked ready. The time it took is logged.

use std::time::Instant;

use crate::AppState;
use crate::domain::CatalogQuery;
use crate::service;
use crate::storage::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmReport {
    pub catalog_pages: u32,
    pub courses: usize,
    pub feeds: usize,
    pub millis: u128,
}

pub async fn warm(state: &AppState) -> Result<WarmReport, StoreError> {
    let started = Instant::now();
    let mut report = WarmReport {
        catalog_pages: 0,
        courses: 0,
        feeds: 0,
        millis: 0,
    };
    for page in 1..=state.settings.warm_catalog_pages {
        let query = CatalogQuery {
            page,
            ..CatalogQuery::default()
        };
        if service::catalog(state, &query).await.is_ok() {
            report.catalog_pages += 1;
        }
    }
    for slug in state.store.most_viewed(state.settings.warm_courses).await? {
        if service::course(state, &slug).await.is_ok() {
            report.courses += 1;
        }
    }
    for segment in state.store.feed_segments().await? {
        if service::feed(state, &segment).await.is_ok() {
            report.feeds += 1;
        }
    }
    report.millis = started.elapsed().as_millis();
    tracing::info!(
        catalog_pages = report.catalog_pages,
        courses = report.courses,
        feeds = report.feeds,
        warm_ms = report.millis as u64,
        "cache warmed"
    );
    Ok(report)
}

/// Warms, then marks the state ready. A failed warm-up is logged and retried, since
/// serving cold is better than never becoming ready only if the store answers at all.
pub async fn warm_then_ready(state: AppState) {
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        match warm(&state).await {
            Ok(_) => {
                state.mark_ready();
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "warming failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(10));
            }
        }
    }
}
