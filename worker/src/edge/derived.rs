//! The derivative store in R2 (`derived/`): encoded once, read by every location. Each
//! object records the source key and ETag it was made from (the sweeper deletes it
//! once that source is gone or replaced). Used by the image path and the AVIF consumer;
//! it depends on neither.

use worker::{Bucket, Env, HttpMetadata, Object};

use super::assets::BUCKET;
use crate::image::format::OutputFormat;
use crate::image::sweep::DerivedFrom;

pub(super) async fn get(bucket: &Bucket, r2_key: &str) -> worker::Result<Option<Object>> {
    bucket.get(r2_key).execute().await
}

pub(super) async fn exists(bucket: &Bucket, r2_key: &str) -> worker::Result<bool> {
    Ok(bucket.head(r2_key).await?.is_some())
}

pub(super) async fn put(
    env: &Env,
    r2_key: &str,
    format: OutputFormat,
    bytes: Vec<u8>,
    origin: &DerivedFrom,
) -> worker::Result<()> {
    env.bucket(BUCKET)?
        .put(r2_key, bytes)
        .http_metadata(HttpMetadata {
            content_type: Some(format.content_type().to_owned()),
            ..Default::default()
        })
        .custom_metadata(origin.to_metadata())
        .execute()
        .await
        .map(|_| ())
}
