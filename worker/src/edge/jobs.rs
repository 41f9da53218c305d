//! The image queue: work done off the request path, one message at a time, each result
//! stored in R2 `derived/`.
//! - AVIF derivatives ([`enqueue_avif`], called by `edge::images` for a format encoded off
//!   the request path);
//! - working copies of large JPEG sources (`image::working`; [`enqueue_working_copy`], on
//!   upload and on a source version's first miss).
//!
//! The consumer runs as its own invocation (a Workers Queue batch), never inside a serving
//! request or its `wait_until`. Depends on `edge::slot`, `edge::derived` and `edge::working`.

use serde::{Deserialize, Serialize};
use worker::{Context, Env, MessageBatch, MessageExt, Result, event};

use super::{derived, purge, slot, working};
use crate::assets::ObjectKey;
use crate::config::Config;
use crate::image::format::OutputFormat;
use crate::image::key::DerivativeKey;
use crate::image::options::ImageOptions;
use crate::image::sweep::DerivedFrom;
use crate::image::{TransformError, transform};

/// The queue binding (see wrangler.toml).
pub(super) const QUEUE: &str = "AVIF_QUEUE";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// Messages queued before working copies existed carry no kind: they are AVIF jobs.
    #[default]
    Avif,
    WorkingCopy,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Job {
    #[serde(default)]
    pub kind: Kind,
    pub source_key: String,
    /// The source ETag the result is filed under.
    pub source_version: String,
    /// The derivative URL that asked for it, as purges name it (a URL purge of it makes
    /// it again); none for a working copy, or in messages queued before it existed.
    #[serde(default)]
    pub url: Option<String>,
    /// Normalized options (they parse back to the same options); empty for a copy.
    #[serde(default)]
    pub options: String,
    pub r2_key: String,
}

#[event(queue)]
async fn image_queue(batch: MessageBatch<Job>, env: Env, _ctx: Context) -> Result<()> {
    for message in batch.messages()? {
        let job = message.body();
        let done = match job.kind {
            Kind::Avif => encode(&env, job).await,
            Kind::WorkingCopy => copy(&env, job).await,
        };
        match done {
            Ok(()) => message.ack(),
            Err(Outcome::Retry(e)) => {
                worker::console_warn!("{:?} job for {} will retry: {e}", job.kind, job.source_key);
                message.retry();
            }
            Err(Outcome::GiveUp(e)) => {
                worker::console_warn!("{:?} job for {} dropped: {e}", job.kind, job.source_key);
                message.ack();
            }
        }
    }
    Ok(())
}

enum Outcome {
    Retry(String),
    GiveUp(String),
}

fn retry(e: worker::Error) -> Outcome {
    Outcome::Retry(e.to_string())
}

/// The source bytes of a job, once its version is confirmed and its size and declared type
/// pass the limits, read while holding the isolate's transform slot (the consumer may share
/// the isolate, and its one WASM memory, with serving requests).
async fn source(
    env: &Env,
    config: &Config,
    job: &Job,
) -> std::result::Result<(Vec<u8>, slot::Slot), Outcome> {
    let bucket = env.bucket(super::assets::BUCKET).map_err(retry)?;
    let Some(object) = bucket.get(&job.source_key).execute().await.map_err(retry)? else {
        return Err(Outcome::GiveUp(String::from("the source is gone")));
    };
    if object.http_etag() != job.source_version {
        return Err(Outcome::GiveUp(String::from(
            "the source changed since the job was queued",
        )));
    }
    // Size and declared type before a byte of the body is read.
    let declared = object.http_metadata().content_type.unwrap_or_default();
    config
        .image_limits
        .check_source(object.size(), &declared)
        .map_err(|e| Outcome::GiveUp(e.to_string()))?;
    let Some(body) = object.body() else {
        return Err(Outcome::GiveUp(String::from("the source has no body")));
    };
    let held = slot::acquire(slot::SLOT_WAIT, 5)
        .await
        .map_err(|e| Outcome::Retry(e.to_string()))?;
    let bytes = body.bytes().await.map_err(retry)?;
    Ok((bytes, held))
}

/// The configuration, with the purge check bound to this invocation's environment.
fn config_of(env: &Env) -> std::result::Result<Config, Outcome> {
    let config = Config::from_lookup(|name| env.var(name).ok().map(|v| v.to_string()))
        .map_err(|e| Outcome::GiveUp(e.to_string()))?;
    purge::enter(env, &config);
    Ok(config)
}

async fn encode(env: &Env, job: &Job) -> std::result::Result<(), Outcome> {
    let config = config_of(env)?;
    let options = ImageOptions::parse(&job.options)
        .map_err(|e| Outcome::GiveUp(format!("{e:?}")))?
        .options;
    let bucket = env.bucket(super::assets::BUCKET).map_err(retry)?;
    let source_key = ObjectKey::from_stored(&job.source_key);
    if derived::exists(&bucket, &job.r2_key, &source_key, job.url.as_deref())
        .await
        .map_err(retry)?
    {
        return Ok(());
    }
    let generation = purge::generation().await;
    let limits = &config.image_limits;
    // From the source's working copy when it has the detail (it saves the decode of a
    // large original), else from the original.
    let copy = working::read(&bucket, &source_key, &job.source_version)
        .await
        .unwrap_or(None);
    super::memory::reset_peak();
    let made = match copy {
        Some(copy) => {
            let _slot = slot::acquire(slot::SLOT_WAIT, 5)
                .await
                .map_err(|e| Outcome::Retry(e.to_string()))?;
            crate::image::working::transform_from(
                &copy.bytes,
                copy.original,
                &options,
                OutputFormat::Avif,
                limits,
                &super::now_ms,
            )
        }
        None => None,
    };
    let (output, from) = match made {
        Some(output) => (output, "copy"),
        None => {
            let (bytes, _slot) = source(env, &config, job).await?;
            let output = transform(&bytes, &options, OutputFormat::Avif, limits, &super::now_ms)
                .map_err(|e| match e {
                    TransformError::Internal(why) => Outcome::Retry(why),
                    other => Outcome::GiveUp(other.to_string()),
                })?;
            (output, "original")
        }
    };
    let t = &output.timings;
    worker::console_log!(
        "avif of {} ({}x{}, {} bytes) from the {from}: decode {:.0} ms, resize {:.0} ms, encode {:.0} ms, peak {} bytes",
        job.source_key,
        output.width,
        output.height,
        output.bytes.len(),
        t.decode,
        t.resize,
        t.encode,
        super::memory::peak()
    );
    let origin = DerivedFrom::new(&job.source_key, &job.source_version).at_generation(generation);
    derived::put(
        env,
        &job.r2_key,
        OutputFormat::Avif.content_type(),
        output.bytes,
        origin.to_metadata(),
    )
    .await
    .map_err(retry)
}

async fn copy(env: &Env, job: &Job) -> std::result::Result<(), Outcome> {
    let config = config_of(env)?;
    let bucket = env.bucket(super::assets::BUCKET).map_err(retry)?;
    let source_key = ObjectKey::from_stored(&job.source_key);
    if derived::exists(&bucket, &job.r2_key, &source_key, None)
        .await
        .map_err(retry)?
    {
        return Ok(());
    }
    let generation = purge::generation().await;
    let (bytes, _slot) = source(env, &config, job).await?;
    super::memory::reset_peak();
    let started = super::now_ms();
    let made = crate::image::working::make(&bytes, &config.image_limits).map_err(|e| match e {
        TransformError::Internal(why) => Outcome::Retry(why),
        other => Outcome::GiveUp(other.to_string()),
    })?;
    drop(bytes);
    let Some(made) = made else {
        // Not worth a copy after all (the header said so): nothing to store.
        return Ok(());
    };
    worker::console_log!(
        "working copy of {} ({}x{} → {}x{}, {} bytes) made in {:.0} ms, peak {} bytes",
        job.source_key,
        made.original.0,
        made.original.1,
        made.size.0,
        made.size.1,
        made.bytes.len(),
        super::now_ms() - started,
        super::memory::peak()
    );
    working::store(env, job, made, generation)
        .await
        .map_err(retry)
}

thread_local! {
    /// Jobs this isolate has already queued (the consumer skips done ones too).
    static QUEUED: std::cell::RefCell<std::collections::HashSet<String>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

/// Lets this isolate queue `r2_key`'s job again: what it made was found older than a
/// purge (`edge::derived`).
pub(super) fn forget(r2_key: &str) {
    QUEUED.with(|q| q.borrow_mut().remove(r2_key));
}

async fn send(env: &Env, job: Job) {
    let fresh = QUEUED.with(|q| {
        let mut q = q.borrow_mut();
        if q.len() > 10_000 {
            q.clear();
        }
        q.insert(job.r2_key.clone())
    });
    if !fresh {
        return;
    }
    let sent = match env.queue(QUEUE) {
        Ok(queue) => queue.send(&job).await,
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        QUEUED.with(|q| q.borrow_mut().remove(&job.r2_key));
        worker::console_warn!("queueing {:?} for {} failed: {e}", job.kind, job.source_key);
    }
}

/// Queues the AVIF encoding of `r2_key` from `source` at `source_version`, asked at `url`
/// (once per isolate).
pub(super) async fn enqueue_avif(
    env: &Env,
    source: &str,
    source_version: &str,
    url: &str,
    options: &ImageOptions,
    r2_key: String,
) {
    let job = Job {
        kind: Kind::Avif,
        source_key: source.to_owned(),
        source_version: source_version.to_owned(),
        url: Some(url.to_owned()),
        options: options.normalized(),
        r2_key,
    };
    send(env, job).await;
}

/// Queues the making of the working copy of `source` at `source_version` (once per isolate;
/// the consumer skips a copy that exists).
pub(super) async fn enqueue_working_copy(env: &Env, source: &str, source_version: &str) {
    let job = Job {
        kind: Kind::WorkingCopy,
        source_key: source.to_owned(),
        source_version: source_version.to_owned(),
        url: None,
        options: String::new(),
        r2_key: DerivativeKey::working_copy(source, source_version),
    };
    send(env, job).await;
}
