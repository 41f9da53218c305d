//! The derivative store in R2 (`derived/`): encoded once, read by every location. Each
//! object records the source key and ETag it was made from, and the purge generation it
//! was made under (`image::sweep::DerivedFrom`): the sweeper deletes it once that source
//! is gone or replaced, and a purge of the source since it was made means it is made
//! again (`policy::purge::reuse`). A source's objects share one folder
//! (`DerivativeKey::r2_prefix`), which [`remove`] lists and empties. Used by the image
//! path, the image queue, uploads and the purge route.

use worker::{Bucket, Env, HttpMetadata, Include, Object};

use std::collections::HashMap;

use super::assets::BUCKET;
use super::purge;
use crate::assets::ObjectKey;
use crate::image::key::DerivativeKey;
use crate::image::sweep::{DerivedFrom, Verdict, verdict};
use crate::policy::purge::Reuse;

/// Listing pages of a source's folder emptied per call at most (1000 objects each); the
/// sweeper, and the generation check, take whatever is left.
const MAX_FOLDER_PAGES: usize = 2;

/// The object stored under `r2_key` for `source`, unless a purge newer than it covers the
/// source or `url` (then it is as good as absent: the caller makes it again and overwrites
/// it). An object without a readable record of its source is checked as made under
/// generation 0.
pub(super) async fn get(
    bucket: &Bucket,
    r2_key: &str,
    source: &ObjectKey,
    url: Option<&str>,
) -> worker::Result<Option<Object>> {
    let Some(object) = bucket.get(r2_key).execute().await? else {
        return Ok(None);
    };
    Ok(current(&object, source, url).await.then_some(object))
}

/// Whether a current object (see [`get`]) is stored under `r2_key`.
pub(super) async fn exists(
    bucket: &Bucket,
    r2_key: &str,
    source: &ObjectKey,
    url: Option<&str>,
) -> worker::Result<bool> {
    Ok(match bucket.head(r2_key).await? {
        Some(object) => current(&object, source, url).await,
        None => false,
    })
}

async fn current(object: &Object, source: &ObjectKey, url: Option<&str>) -> bool {
    let generation = object
        .custom_metadata()
        .ok()
        .and_then(|meta| DerivedFrom::from_metadata(&meta))
        .map_or(0, |from| from.generation);
    match purge::derived_reuse(url, source, generation).await {
        Reuse::Serve => true,
        Reuse::Remake => {
            worker::console_log!(
                "{} is older than a purge of its source: made again",
                object.key()
            );
            // Its job may have been queued by this isolate before: it may be queued again.
            super::jobs::forget(&object.key());
            false
        }
    }
}

/// Deletes the objects in `key`'s folder not made from the bytes stored now (`keep`, its
/// ETag; `None`: every one, as a purge of the original asks). A listing finds them all.
pub(super) async fn remove(
    bucket: &Bucket,
    key: &ObjectKey,
    keep: Option<&str>,
) -> worker::Result<usize> {
    let folder = DerivativeKey::r2_prefix(key.as_str());
    let mut cursor: Option<String> = None;
    let mut removed = 0;
    for _ in 0..MAX_FOLDER_PAGES {
        let mut list = bucket
            .list()
            .prefix(folder.clone())
            .include(vec![Include::CustomMetadata]);
        if let Some(cursor) = cursor.take() {
            list = list.cursor(cursor);
        }
        let page = list.execute().await?;
        let doomed: Vec<String> = page
            .objects()
            .into_iter()
            .filter_map(|object| {
                let from = object
                    .custom_metadata()
                    .ok()
                    .and_then(|meta| DerivedFrom::from_metadata(&meta));
                let name = object.key();
                match verdict(&name, from.as_ref(), keep) {
                    Verdict::Keep => None,
                    Verdict::Delete(_) => Some(name),
                }
            })
            .collect();
        removed += doomed.len();
        if !doomed.is_empty() {
            bucket.delete_multiple(doomed).await?;
        }
        cursor = page.cursor().filter(|_| page.truncated());
        if cursor.is_none() {
            break;
        }
    }
    Ok(removed)
}

/// Stores `bytes` under `r2_key` with its custom metadata (at least what it was made
/// from: `DerivedFrom::to_metadata`, which the sweeper reads).
pub(super) async fn put(
    env: &Env,
    r2_key: &str,
    content_type: &str,
    bytes: Vec<u8>,
    metadata: HashMap<String, String>,
) -> worker::Result<()> {
    env.bucket(BUCKET)?
        .put(r2_key, bytes)
        .http_metadata(HttpMetadata {
            content_type: Some(content_type.to_owned()),
            ..Default::default()
        })
        .custom_metadata(metadata)
        .execute()
        .await
        .map(|_| ())
}
