//! `/img/<options>/<key>`: on-the-fly image derivatives from R2 originals.
//!
//! `ImageOptions::parse` → signature and width checks → R2 `head` of the source (its
//! ETag versions every derivative) → `negotiate` → derivative key → Cache API → R2
//! `derived/` → else one transform at a time per isolate (`image::transform`) → store
//! in R2 and the Cache API (after the response, `wait_until`) → respond.
//!
//! AVIF is never encoded here: an AVIF encode costs hundreds of milliseconds of CPU and
//! would stall every other request in the isolate. On a miss an AVIF-capable browser
//! gets WebP at once (briefly cacheable, stored under the WebP key only) and a job goes
//! to the `AVIF_QUEUE` consumer (`edge::avif`), which stores the AVIF in R2; later
//! requests get `image/avif`.

use std::cell::Cell;
use std::time::Duration;

use protocol::EdgeCacheStatus;
use worker::{Cache, Context, Delay, Env, Headers, Request, Response};

use super::assets::BUCKET;
use super::origin::runtime;
use super::{Served, memory, now_ms};
use crate::assets::ObjectKey;
use crate::config::Config;
use crate::error::EdgeError;
use crate::image::format::{OutputFormat, negotiate};
use crate::image::key::DerivativeKey;
use crate::image::options::{FormatRequest, ImageOptions};
use crate::image::sweep::DerivedFrom;
use crate::image::{TransformError, transform};
use crate::policy::ContentClass;
use crate::timing::ServerTiming;

thread_local! {
    /// One transform at a time per isolate: concurrent requests share one WASM memory
    /// that never shrinks, so two large decodes at once could pass the 128 MiB ceiling.
    static TRANSFORMING: Cell<bool> = const { Cell::new(false) };
}

/// Longest a request waits for the isolate's transform slot.
const SLOT_WAIT: Duration = Duration::from_secs(20);

pub(super) struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        TRANSFORMING.with(|t| t.set(false));
    }
}

pub(super) async fn acquire_slot(retry_after_secs: u32) -> Result<Slot, EdgeError> {
    let started = now_ms();
    loop {
        let got = TRANSFORMING.with(|t| !t.replace(true));
        if got {
            return Ok(Slot);
        }
        if now_ms() - started > SLOT_WAIT.as_millis() as f64 {
            return Err(EdgeError::OriginTimeout {
                after_ms: SLOT_WAIT.as_millis() as u64,
                retry_after_secs,
            });
        }
        Delay::from(Duration::from_millis(5)).await;
    }
}

fn headers_for(
    config: &Config,
    etag: &str,
    format: OutputFormat,
    len: usize,
    versioned: bool,
) -> Result<Headers, EdgeError> {
    let policy = if versioned {
        // The URL names one version of the source forever.
        crate::policy::table::default_policy(ContentClass::HashedStatic)
    } else {
        config.policy.get(ContentClass::Image)
    };
    let headers = Headers::new();
    let set = |n: &str, v: &str| headers.set(n, v).map_err(runtime);
    set("content-type", format.content_type())?;
    set("content-length", &len.to_string())?;
    set("etag", etag)?;
    set("vary", "Accept")?;
    super::respond::set_policy_headers(&headers, policy, 200)?;
    Ok(headers)
}

fn redirect_to_original(key: &ObjectKey) -> Result<Served, EdgeError> {
    let headers = Headers::new();
    headers
        .set("location", &format!("/media/{}", key.url_path()))
        .map_err(runtime)?;
    headers.set("cache-control", "no-store").map_err(runtime)?;
    Ok(Served {
        response: Response::empty()
            .map_err(runtime)?
            .with_status(302)
            .with_headers(headers),
        cache: EdgeCacheStatus::Bypass,
    })
}

pub(super) async fn serve(
    req: &Request,
    env: &Env,
    ctx: &Context,
    config: &Config,
    segment: &str,
    key: &ObjectKey,
    timing: &mut ServerTiming,
) -> Result<Served, EdgeError> {
    // Preset, signed URL, or the derivative policy's allow-lists (400/403 naming why).
    let (options, admission) =
        config
            .image_policy
            .admit(segment, key.as_str(), config.image_signing_key.as_deref())?;
    let fail = |e: TransformError| -> Result<Served, EdgeError> {
        if options.redirect_on_error {
            redirect_to_original(key)
        } else {
            Err(EdgeError::Image(e))
        }
    };

    let bucket = env.bucket(BUCKET).map_err(runtime)?;
    let versioned = options.version.is_some() && admission.trusts_versions();
    // The source's ETag versions every derivative, `v=` URLs included: a `v=` names a
    // version for browsers (an immutable URL), but what is stored is always bound to the
    // bytes it was made from, so asking for `v=8` before version 8 is uploaded cannot
    // store the old picture as version 8. Size and declared type are checked here, before
    // anything is read or queued.
    let started = now_ms();
    let head = bucket.head(key.as_str()).await.map_err(runtime)?;
    timing.add("r2-head", now_ms() - started);
    let Some(head) = head else {
        return Err(EdgeError::ObjectNotFound {
            key: key.as_str().to_owned(),
        });
    };
    let declared = head
        .http_metadata()
        .content_type
        .unwrap_or_else(|| key.content_type().to_owned());
    if let Err(refused) = config.image_limits.check_source(head.size(), &declared) {
        return fail(refused.into());
    }
    let source_version = head.http_etag();
    let accept = req
        .headers()
        .get("accept")
        .ok()
        .flatten()
        .unwrap_or_default();
    // Alpha is only known after decoding; the source family decides the fallback.
    let may_have_alpha = !matches!(key.content_type(), "image/jpeg");
    let mut format = negotiate(options.format, &accept, may_have_alpha);
    let cache = Cache::default();
    let mut avif_pending = false;
    if format == OutputFormat::Avif {
        let avif = DerivativeKey::new(key.as_str(), &source_version, &options, OutputFormat::Avif);
        if let Some(served) = serve_stored(
            &cache,
            &bucket,
            ctx,
            config,
            &avif,
            OutputFormat::Avif,
            versioned,
            timing,
        )
        .await?
        {
            return Ok(served);
        }
        // Not encoded yet: the queue consumer does it, off every request path.
        enqueue_avif(env, key, &source_version, &options, &avif).await;
        if options.format == FormatRequest::Avif {
            return Err(EdgeError::NotReady {
                what: "the AVIF derivative is being encoded",
                retry_after_secs: 2,
            });
        }
        format = OutputFormat::Webp;
        avif_pending = true;
    }
    let dkey = DerivativeKey::new(key.as_str(), &source_version, &options, format);
    let mut served = match serve_stored(
        &cache, &bucket, ctx, config, &dkey, format, versioned, timing,
    )
    .await?
    {
        Some(served) => served,
        None => {
            let _slot = acquire_slot(config.retry_after_secs).await?;
            let started = now_ms();
            let object = bucket.get(key.as_str()).execute().await.map_err(runtime)?;
            let Some(body) = object.as_ref().and_then(|o| o.body()) else {
                return Err(EdgeError::ObjectNotFound {
                    key: key.as_str().to_owned(),
                });
            };
            if let Some(size) = object.as_ref().map(|o| o.size())
                && let Err(limit) = config.image_limits.check_bytes(size)
            {
                return fail(TransformError::TooLarge(limit));
            }
            let original = body.bytes().await.map_err(runtime)?;
            drop(object);
            timing.add("source", now_ms() - started);
            memory::reset_peak();
            let output = match transform(&original, &options, format, &config.image_limits, &now_ms)
            {
                Ok(output) => output,
                Err(e) => return fail(e),
            };
            drop(original);
            timing.add("decode", output.timings.decode);
            timing.add("resize", output.timings.resize);
            timing.add("encode", output.timings.encode);
            timing.add(
                "transform",
                output.timings.decode + output.timings.resize + output.timings.encode,
            );
            store_derivative(
                env,
                ctx,
                config,
                &dkey,
                format,
                &output.bytes,
                key,
                &source_version,
            );
            let headers = headers_for(config, &dkey.etag(), format, output.bytes.len(), versioned)?;
            headers.set("x-edge-source", "transform").map_err(runtime)?;
            headers
                .set("x-edge-memory-peak", &memory::peak().to_string())
                .map_err(runtime)?;
            headers
                .set(
                    "x-edge-memory-linear",
                    &memory::linear_memory_bytes().to_string(),
                )
                .map_err(runtime)?;
            headers
                .set("x-edge-derivative", &dkey.r2_key(format))
                .map_err(runtime)?;
            Served {
                response: Response::from_bytes(output.bytes)
                    .map_err(runtime)?
                    .with_headers(headers),
                cache: EdgeCacheStatus::Miss,
            }
        }
    };
    served
        .response
        .headers_mut()
        .set("x-edge-image-access", admission.as_str())
        .map_err(runtime)?;
    if avif_pending {
        // A stand-in until the AVIF is ready: browsers and CDNs keep it only briefly.
        let headers = served.response.headers_mut();
        headers
            .set("cache-control", "public, max-age=60")
            .map_err(runtime)?;
        headers
            .set("cdn-cache-control", "max-age=60")
            .map_err(runtime)?;
        headers.set("x-edge-avif", "queued").map_err(runtime)?;
    }
    Ok(served)
}

/// A derivative already encoded: this colo's Cache API, else R2 `derived/` (then copied
/// into the Cache API after the response).
#[allow(clippy::too_many_arguments)]
async fn serve_stored(
    cache: &Cache,
    bucket: &worker::Bucket,
    ctx: &Context,
    config: &Config,
    dkey: &DerivativeKey,
    format: OutputFormat,
    versioned: bool,
    timing: &mut ServerTiming,
) -> Result<Option<Served>, EdgeError> {
    if let Ok(Some(mut cached)) = cache.get(dkey.cache_url(), false).await {
        let bytes = cached.bytes().await.map_err(runtime)?;
        timing.add("cache", 0.0);
        let headers = headers_for(config, &dkey.etag(), format, bytes.len(), versioned)?;
        headers.set("x-edge-source", "cache").map_err(runtime)?;
        return Ok(Some(Served {
            response: Response::from_bytes(bytes)
                .map_err(runtime)?
                .with_headers(headers),
            cache: EdgeCacheStatus::Hit,
        }));
    }
    let started = now_ms();
    let r2_key = dkey.r2_key(format);
    let Some(object) = bucket.get(&r2_key).execute().await.map_err(runtime)? else {
        return Ok(None);
    };
    let Some(body) = object.body() else {
        return Ok(None);
    };
    let bytes = body.bytes().await.map_err(runtime)?;
    timing.add("r2", now_ms() - started);
    cache_derivative(ctx, config, dkey, format, &bytes);
    let headers = headers_for(config, &dkey.etag(), format, bytes.len(), versioned)?;
    headers.set("x-edge-source", "r2").map_err(runtime)?;
    headers.set("x-edge-derivative", &r2_key).map_err(runtime)?;
    Ok(Some(Served {
        response: Response::from_bytes(bytes)
            .map_err(runtime)?
            .with_headers(headers),
        cache: EdgeCacheStatus::Miss,
    }))
}

/// Copies a derivative into this colo's Cache API after the response.
fn cache_derivative(
    ctx: &Context,
    config: &Config,
    dkey: &DerivativeKey,
    format: OutputFormat,
    bytes: &[u8],
) {
    let retention = config
        .policy
        .get(ContentClass::Image)
        .lifetimes()
        .retention(true);
    let cache_url = dkey.cache_url();
    let bytes = bytes.to_vec();
    ctx.wait_until(async move {
        let headers = Headers::new();
        let _ = headers.set("cache-control", &format!("public, max-age={retention}"));
        let _ = headers.set("content-type", format.content_type());
        if let Ok(response) = Response::from_bytes(bytes)
            && let Err(e) = Cache::default()
                .put(cache_url.as_str(), response.with_headers(headers))
                .await
        {
            worker::console_warn!("caching derivative failed: {e}");
        }
    });
}

/// Stores a fresh derivative in R2 (encoded once, not once per location) and in this
/// colo's Cache API, after the response.
#[allow(clippy::too_many_arguments)]
fn store_derivative(
    env: &Env,
    ctx: &Context,
    config: &Config,
    dkey: &DerivativeKey,
    format: OutputFormat,
    bytes: &[u8],
    source: &ObjectKey,
    source_etag: &str,
) {
    cache_derivative(ctx, config, dkey, format, bytes);
    let env = env.clone();
    let r2_key = dkey.r2_key(format);
    let r2_copy = bytes.to_vec();
    let origin = DerivedFrom::new(source.as_str(), source_etag);
    ctx.wait_until(async move {
        if let Err(e) = put_derivative(&env, &r2_key, format, r2_copy, &origin).await {
            worker::console_warn!("storing derivative {r2_key} failed: {e}");
        }
    });
}

/// Writes a derivative to R2 `derived/`, recording the source key and ETag it was made
/// from (the sweeper deletes it once that source is gone or replaced).
pub(super) async fn put_derivative(
    env: &Env,
    r2_key: &str,
    format: OutputFormat,
    bytes: Vec<u8>,
    origin: &DerivedFrom,
) -> worker::Result<()> {
    env.bucket(BUCKET)?
        .put(r2_key, bytes)
        .http_metadata(worker::HttpMetadata {
            content_type: Some(format.content_type().to_owned()),
            ..Default::default()
        })
        .custom_metadata(origin.to_metadata())
        .execute()
        .await
        .map(|_| ())
}

thread_local! {
    /// AVIF jobs this isolate has already queued (the consumer skips done ones too).
    static QUEUED: std::cell::RefCell<std::collections::HashSet<String>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

async fn enqueue_avif(
    env: &Env,
    key: &ObjectKey,
    source_version: &str,
    options: &ImageOptions,
    avif: &DerivativeKey,
) {
    let r2_key = avif.r2_key(OutputFormat::Avif);
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
    let job = super::avif::AvifJob {
        source_key: key.as_str().to_owned(),
        source_version: source_version.to_owned(),
        options: options.normalized(),
        r2_key,
    };
    let sent = match env.queue(super::avif::QUEUE) {
        Ok(queue) => queue.send(&job).await,
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        QUEUED.with(|q| q.borrow_mut().remove(&job.r2_key));
        worker::console_warn!("queueing AVIF for {} failed: {e}", job.source_key);
    }
}
