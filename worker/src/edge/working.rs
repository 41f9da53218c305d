//! Working copies in R2 (the decisions are `image::working`'s): [`read`] one for a
//! derivative or an AVIF job, [`store`] one the queue made. A copy lives in its source's
//! `derived/` folder and records what it was made from, so the sweeper, uploads and purges
//! treat it as one more derivative.

use worker::{Bucket, Env};

use super::derived;
use super::jobs::Job;
use crate::assets::ObjectKey;
use crate::image::key::DerivativeKey;
use crate::image::sweep::DerivedFrom;
use crate::image::working::{self, ORIGINAL_SIZE, WorkingCopy};

/// A stored working copy: its bytes and the size of the original it stands for.
pub(super) struct Stored {
    pub bytes: Vec<u8>,
    pub original: (u32, u32),
}

/// The working copy of `source` at `version`, if one is stored and no purge of the source
/// is newer (one R2 `get`; an object without a readable original size is ignored).
pub(super) async fn read(
    bucket: &Bucket,
    source: &ObjectKey,
    version: &str,
) -> worker::Result<Option<Stored>> {
    let key = DerivativeKey::working_copy(source.as_str(), version);
    let Some(object) = derived::get(bucket, &key, source, None).await? else {
        return Ok(None);
    };
    let original = object
        .custom_metadata()?
        .get(ORIGINAL_SIZE)
        .and_then(|v| working::size_from_metadata(v));
    let (Some(original), Some(body)) = (original, object.body()) else {
        return Ok(None);
    };
    Ok(Some(Stored {
        bytes: body.bytes().await?,
        original,
    }))
}

/// Stores what the queue made for `job`, begun under purge generation `generation`.
pub(super) async fn store(
    env: &Env,
    job: &Job,
    made: WorkingCopy,
    generation: u64,
) -> worker::Result<()> {
    let mut metadata = DerivedFrom::new(&job.source_key, &job.source_version)
        .at_generation(generation)
        .to_metadata();
    metadata.insert(
        ORIGINAL_SIZE.to_owned(),
        working::size_to_metadata(made.original),
    );
    derived::put(env, &job.r2_key, "image/jpeg", made.bytes, metadata).await
}
