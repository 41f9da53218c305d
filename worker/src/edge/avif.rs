//! The AVIF queue: [`enqueue`] (called by `edge::images` when a derivative's format is
//! encoded off the request path) and the consumer, which encodes one message at a time
//! and stores the result in R2 `derived/`. The consumer runs as its own invocation (a
//! Workers Queue batch), never inside a serving request or its `wait_until`. Depends on
//! `edge::slot` and `edge::derived` only.

use serde::{Deserialize, Serialize};
use worker::{Context, Env, MessageBatch, MessageExt, Result, event};

use super::{derived, slot};
use crate::assets::ObjectKey;
use crate::config::Config;
use crate::image::format::OutputFormat;
use crate::image::options::ImageOptions;
use crate::image::sweep::DerivedFrom;
use crate::image::{TransformError, transform};

/// The queue binding (see wrangler.toml).
pub(super) const QUEUE: &str = "AVIF_QUEUE";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AvifJob {
    pub source_key: String,
    /// The source ETag the derivative key was made with.
    pub source_version: String,
    /// Normalized options (they parse back to the same options).
    pub options: String,
    pub r2_key: String,
}

#[event(queue)]
async fn avif_queue(batch: MessageBatch<AvifJob>, env: Env, _ctx: Context) -> Result<()> {
    for message in batch.messages()? {
        match encode(&env, message.body()).await {
            Ok(()) => message.ack(),
            Err(Outcome::Retry(e)) => {
                worker::console_warn!("AVIF job for {} will retry: {e}", message.body().source_key);
                message.retry();
            }
            Err(Outcome::GiveUp(e)) => {
                worker::console_warn!("AVIF job for {} dropped: {e}", message.body().source_key);
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

async fn encode(env: &Env, job: &AvifJob) -> std::result::Result<(), Outcome> {
    let retry = |e: worker::Error| Outcome::Retry(e.to_string());
    let config = Config::from_lookup(|name| env.var(name).ok().map(|v| v.to_string()))
        .map_err(|e| Outcome::GiveUp(e.to_string()))?;
    let options = ImageOptions::parse(&job.options)
        .map_err(|e| Outcome::GiveUp(format!("{e:?}")))?
        .options;
    let bucket = env.bucket(super::assets::BUCKET).map_err(retry)?;
    if derived::exists(&bucket, &job.r2_key).await.map_err(retry)? {
        return Ok(());
    }
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
    // The same one-transform-per-isolate slot as requests: the consumer may share the
    // isolate (and its one WASM memory) with serving requests.
    let _slot = slot::acquire(slot::SLOT_WAIT, 5)
        .await
        .map_err(|e| Outcome::Retry(e.to_string()))?;
    let bytes = body.bytes().await.map_err(retry)?;
    let output = transform(
        &bytes,
        &options,
        OutputFormat::Avif,
        &config.image_limits,
        &super::now_ms,
    )
    .map_err(|e| match e {
        TransformError::Internal(why) => Outcome::Retry(why),
        other => Outcome::GiveUp(other.to_string()),
    })?;
    let origin = DerivedFrom::new(&job.source_key, &job.source_version);
    derived::put(env, &job.r2_key, OutputFormat::Avif, output.bytes, &origin)
        .await
        .map_err(retry)
}

thread_local! {
    /// AVIF jobs this isolate has already queued (the consumer skips done ones too).
    static QUEUED: std::cell::RefCell<std::collections::HashSet<String>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

/// Queues the encoding of `r2_key` from `source` at `source_version` (once per isolate).
pub(super) async fn enqueue(
    env: &Env,
    source: &ObjectKey,
    source_version: &str,
    options: &ImageOptions,
    r2_key: String,
) {
    let fresh = QUEUED.with(|q| {
        let mut q = q.borrow_mut();
        if q.len() > 10_000 {
            q.clear();
        }
        q.insert(r2_key.clone())
    });
    if !fresh {
        return;
    }
    let job = AvifJob {
        source_key: source.as_str().to_owned(),
        source_version: source_version.to_owned(),
        options: options.normalized(),
        r2_key,
    };
    let sent = match env.queue(QUEUE) {
        Ok(queue) => queue.send(&job).await,
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        QUEUED.with(|q| q.borrow_mut().remove(&job.r2_key));
        worker::console_warn!("queueing AVIF for {} failed: {e}", job.source_key);
    }
}
