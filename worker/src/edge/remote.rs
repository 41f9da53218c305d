//! `/img/<options>/https://host/path`: derivatives of remote sources, for what
//! `IMAGE_REMOTE_PATTERNS` lists (`image::remote` decides; this module fetches).
//!
//! The original is fetched with a deadline per hop, redirects followed by hand and each
//! target checked against the list again, the body read up to the source limit, and kept
//! in the Cache API for `IMAGE_SOURCE_TTL` seconds under its version (the remote
//! `ETag`, else `Last-Modified`, else a digest). Derivatives go through the edge cache
//! like R2 ones, keyed by the URL and recording the version they were made from: past
//! the TTL a stored derivative is revalidated with `If-None-Match` (a 304 keeps it).
//! Not stored in R2 `derived/`, and AVIF is not queued: a remote source's AVIF request
//! is answered with WebP.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::{Either, select};
use worker::{
    AbortController, Cache, Context, Delay, Fetch, Headers, Method, Request, RequestInit,
    RequestRedirect, Response,
};

use super::cache::{self, Plan, SOURCE_VERSION, Source};
use super::origin::runtime;
use super::{Served, memory, now_ms, slot};
use crate::config::Config;
use crate::error::EdgeError;
use crate::image::format::{OutputFormat, choose_for};
use crate::image::key::DerivativeKey;
use crate::image::limits::SourceError;
use crate::image::options::{Answer, ImageOptions};
use crate::image::remote::{
    Hop, MAX_REDIRECTS, RemoteError, RemoteUrl, conditional, next_hop, original_cache_key,
    version_of,
};
use crate::image::{TransformError, describe, transform};
use crate::policy::ContentClass;
use crate::policy::flow::image_policy;
use crate::policy::stored::Entry;
use crate::timing::ServerTiming;

/// What a remote original fetch found.
enum Original {
    /// The version the stored derivative records is still the remote's.
    Current(String),
    Bytes {
        bytes: Vec<u8>,
        version: String,
        /// `cached` (the Cache API copy) or `fetched`.
        from: &'static str,
    },
}

#[derive(Clone)]
struct RemoteSource {
    config: Config,
    url: RemoteUrl,
    options: ImageOptions,
    format: OutputFormat,
}

impl Source for RemoteSource {
    async fn fetch(
        &self,
        stored: Option<&Entry>,
        timing: &mut ServerTiming,
    ) -> Result<Response, EdgeError> {
        let known = stored.and_then(|e| e.meta.source.clone());
        // The slot before any byte of the original: an isolate holds one source's bytes
        // and pixels at a time, as the memory model assumes.
        let started = now_ms();
        let _slot = slot::acquire(slot::SLOT_WAIT, self.config.retry_after_secs).await?;
        timing.add("slot", now_ms() - started);
        memory::reset_peak();
        let original = match self.original(known.as_deref(), timing).await {
            Ok(original) => original,
            // The remote side failed: an error the cache may cover with a stale copy.
            Err(e) if e.is_upstream() => return Err(EdgeError::Remote(e)),
            // Refusals (not listed, not an image, too large, 404) are stored like any
            // answer, per the class's policy, so a repeat is not fetched again.
            Err(e) => {
                return super::images::answer_error(&EdgeError::Remote(e), None, false);
            }
        };
        let (bytes, version, from) = match original {
            Original::Current(version) => return super::images::not_modified(&version),
            Original::Bytes {
                bytes,
                version,
                from,
            } => (bytes, version, from),
        };
        if known.as_deref() == Some(version.as_str()) {
            return super::images::not_modified(&version);
        }
        let limits = &self.config.image_limits;
        let headers = Headers::new();
        let set = |n: &str, v: &str| headers.set(n, v).map_err(runtime);
        set(SOURCE_VERSION, &version)?;
        set("x-edge-remote", from)?;
        let body = if self.options.answer == Answer::Image {
            let output = match transform(&bytes, &self.options, self.format, limits, &now_ms) {
                Ok(output) => output,
                Err(e) => return super::images::refusal(e, &version),
            };
            let total = output.timings.decode + output.timings.resize + output.timings.encode;
            timing.add("decode", output.timings.decode);
            timing.add("resize", output.timings.resize);
            timing.add("encode", output.timings.encode);
            timing.add("transform", total);
            let dkey =
                DerivativeKey::new(&self.url.as_string(), &version, &self.options, self.format);
            set("content-type", self.format.content_type())?;
            set("etag", &dkey.etag())?;
            set("vary", "Accept")?;
            let r = output.region;
            set("x-edge-region", &format!("{},{},{},{}", r.x, r.y, r.w, r.h))?;
            output.bytes
        } else {
            let described = match describe(&bytes, &self.options, limits, &now_ms) {
                Ok(d) => d,
                Err(e) => return super::images::refusal(e, &version),
            };
            set("content-type", "application/json")?;
            serde_json::to_vec(&described)
                .map_err(|e| EdgeError::Image(TransformError::Internal(e.to_string())))?
        };
        set("content-length", &body.len().to_string())?;
        set("x-edge-memory-peak", &memory::peak().to_string())?;
        Ok(Response::from_bytes(body)
            .map_err(runtime)?
            .with_headers(headers))
    }
}

impl RemoteSource {
    /// The original: the Cache API's copy, else fetched (and kept there).
    async fn original(
        &self,
        known: Option<&str>,
        timing: &mut ServerTiming,
    ) -> Result<Original, RemoteError> {
        let cache = Cache::default();
        let key = original_cache_key(&self.url);
        let started = now_ms();
        if let Ok(Some(mut hit)) = cache.get(key.as_str(), false).await {
            let version = hit.headers().get(SOURCE_VERSION).ok().flatten();
            if let Some(version) = version {
                timing.add("remote-cache", now_ms() - started);
                if known == Some(version.as_str()) {
                    return Ok(Original::Current(version));
                }
                if let Ok(bytes) = hit.bytes().await {
                    return Ok(Original::Bytes {
                        bytes,
                        version,
                        from: "cached",
                    });
                }
            }
        }
        let (bytes, version) = match self.fetched(known, timing).await? {
            Original::Bytes { bytes, version, .. } => (bytes, version),
            current => return Ok(current),
        };
        // Kept for the source TTL; a failed write only costs a later fetch. The bytes
        // move into the runtime's response and are read back from its copy, so the
        // isolate's memory never holds them twice.
        let headers = Headers::new();
        let made = headers
            .set(
                "cache-control",
                &format!("max-age={}", self.config.image_source_ttl),
            )
            .and_then(|()| headers.set(SOURCE_VERSION, &version))
            .and_then(|()| Response::from_bytes(bytes))
            .map(|r| r.with_headers(headers));
        let mut response = made.map_err(|_| RemoteError::Unreachable)?;
        match response.cloned() {
            Ok(kept) => {
                if let Err(e) = cache.put(key.as_str(), kept).await {
                    worker::console_warn!("keeping remote original {}: {e}", self.url.as_string());
                }
            }
            Err(e) => {
                worker::console_warn!("keeping remote original {}: {e}", self.url.as_string());
            }
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|_| RemoteError::Unreachable)?;
        Ok(Original::Bytes {
            bytes,
            version,
            from: "fetched",
        })
    }

    /// Fetches hop by hop: each redirect's target checked against the list, a deadline
    /// per hop, the body read up to the source limit.
    async fn fetched(
        &self,
        known: Option<&str>,
        timing: &mut ServerTiming,
    ) -> Result<Original, RemoteError> {
        let policy = &self.config.image_remote;
        let limits = &self.config.image_limits;
        // One deadline for the whole fetch: every hop and the body together.
        let after_ms =
            u64::try_from(self.config.image_remote_timeout.as_millis()).unwrap_or(u64::MAX);
        let deadline = now_ms() + after_ms as f64;
        let left = || {
            let ms = (deadline - now_ms()).max(0.0);
            (ms > 0.0).then(|| Duration::from_millis(ms as u64))
        };
        let mut current = self.url.clone();
        for hops in 0..=MAX_REDIRECTS {
            let timeout = left().ok_or(RemoteError::Timeout(after_ms))?;
            let headers = Headers::new();
            let _ = headers.set("accept", "image/avif,image/webp,image/*;q=0.8");
            if let Some(v) = known.and_then(conditional) {
                let _ = headers.set("if-none-match", v);
            }
            let mut init = RequestInit::new();
            init.with_method(Method::Get)
                .with_headers(headers)
                .with_redirect(RequestRedirect::Manual);
            let request = Request::new_with_init(&current.as_string(), &init)
                .map_err(|_| RemoteError::BadUrl("the runtime refused it"))?;
            let controller = AbortController::default();
            let signal = controller.signal();
            let started = now_ms();
            let fetch = Fetch::Request(request);
            let send = fetch.send_with_signal(&signal);
            let outcome = select(Box::pin(send), Delay::from(timeout)).await;
            let mut response = match outcome {
                Either::Left((Ok(response), _)) => response,
                Either::Left((Err(_), _)) => return Err(RemoteError::Unreachable),
                Either::Right(((), _)) => {
                    controller.abort();
                    return Err(RemoteError::Timeout(after_ms));
                }
            };
            timing.add("remote", now_ms() - started);
            let location = response.headers().get("location").ok().flatten();
            match next_hop(
                policy,
                &current,
                response.status_code(),
                location.as_deref(),
                hops,
            )? {
                Hop::Redirect(next) => current = next,
                Hop::NotModified => {
                    return match known {
                        Some(v) => Ok(Original::Current(v.to_owned())),
                        None => Err(RemoteError::Upstream(304)),
                    };
                }
                Hop::Body => {
                    let header = |name: &str| response.headers().get(name).ok().flatten();
                    let declared = header("content-type").unwrap_or_default();
                    let length = header("content-length").and_then(|l| l.parse::<u64>().ok());
                    limits
                        .check_source(length.unwrap_or(0), &declared)
                        .map_err(|e| match e {
                            SourceError::TooLarge(_) => {
                                RemoteError::TooLarge(limits.max_source_bytes)
                            }
                            SourceError::NotAnImage(t) => RemoteError::NotAnImage(t),
                        })?;
                    let (etag, modified) = (header("etag"), header("last-modified"));
                    let timeout = left().ok_or(RemoteError::Timeout(after_ms))?;
                    let expected = length.unwrap_or(0).min(limits.max_source_bytes);
                    let read =
                        read_bounded(&mut response, expected, limits.max_source_bytes, timeout);
                    let bytes = match read.await {
                        Err(RemoteError::Timeout(_)) => {
                            controller.abort();
                            return Err(RemoteError::Timeout(after_ms));
                        }
                        other => other?,
                    };
                    let version = version_of(etag.as_deref(), modified.as_deref(), &bytes);
                    timing.add("remote-body", now_ms() - started);
                    return Ok(Original::Bytes {
                        bytes,
                        version,
                        from: "fetched",
                    });
                }
            }
        }
        Err(RemoteError::Redirects("more than 3 times"))
    }
}

/// The body, refused past `limit` bytes (a missing or false `Content-Length` included)
/// or past the deadline.
async fn read_bounded(
    response: &mut Response,
    expected: u64,
    limit: u64,
    timeout: Duration,
) -> Result<Vec<u8>, RemoteError> {
    let mut stream = response.stream().map_err(|_| RemoteError::Unreachable)?;
    let read = async {
        // Sized by `Content-Length` (within the limit): no doubling past the source.
        let mut out = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| RemoteError::Unreachable)?;
            if (out.len() + chunk.len()) as u64 > limit {
                return Err(RemoteError::TooLarge(limit));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    match select(Box::pin(read), Delay::from(timeout)).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(RemoteError::Timeout(
            u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        )),
    }
}

pub(super) async fn serve(
    req: &Request,
    ctx: &Context,
    config: &Config,
    segment: &str,
    url: &RemoteUrl,
    timing: &mut ServerTiming,
) -> Result<Served, EdgeError> {
    let query = req.url().map_err(runtime)?.query().map(str::to_owned);
    let url = url
        .clone()
        .with_query(query.as_deref())
        .map_err(EdgeError::Remote)?;
    config.image_remote.admit(&url).map_err(EdgeError::Remote)?;
    let source = url.as_string();
    let (options, admission) =
        config
            .image_policy
            .admit(segment, &source, config.image_signing_key.as_deref())?;
    let (options, extra, accept) = super::images::hinted(req, config, &options, admission);
    let choice = choose_for(&options, &accept, url.named_type());
    // No queue for remote sources: what would be encoded off the request path is
    // answered with its stand-in.
    let format = choice.stand_in.unwrap_or(choice.wanted);
    let key = if options.answer == Answer::Image {
        DerivativeKey::edge_url(&source, &options, format)
    } else {
        DerivativeKey::description_url(&source, &options)
    };
    let plan = Plan {
        class: ContentClass::Image,
        policy: image_policy(
            config.policy.get(ContentClass::Image),
            config.image_source_ttl,
        ),
        key,
        ask: super::ask_of(req),
        extra,
        follow_timeout: slot::SLOT_WAIT + config.image_remote_timeout + Duration::from_secs(10),
        vary_headers: Vec::new(),
        purge_path: req.path(),
        aliases: Vec::new(),
    };
    let source = RemoteSource {
        config: config.clone(),
        url,
        options,
        format,
    };
    cache::serve(ctx, &plan, &source, timing).await
}
