//! The derivative store in R2 (`derived/`): encoded once, read by every location. Each
//! object records the source key and ETag it was made from (the sweeper deletes it
//! once that source is gone or replaced). Used by the image path and the image queue;
//! it depends on neither.

use worker::{Bucket, Env, HttpMetadata, Object};

use std::collections::HashMap;

use super::assets::BUCKET;

pub(super) async fn get(bucket: &Bucket, r2_key: &str) -> worker::Result<Option<Object>> {
    bucket.get(r2_key).execute().await
}

pub(super) async fn exists(bucket: &Bucket, r2_key: &str) -> worker::Result<bool> {
    Ok(bucket.head(r2_key).await?.is_some())
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
