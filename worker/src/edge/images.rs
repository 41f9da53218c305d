//! `/img/<options>/<key>`: on-the-fly image derivatives from R2 originals, through the
//! edge cache like every class.
//!
//! `DerivativePolicy::admit` → `format::choose_for` → the edge key (source key + options +
//! format, `DerivativeKey::edge_url`) → `edge::cache` with an [`ImageSource`]. A HIT
//! needs no R2 at all: the entry records the source ETag it was made from, and only
//! past `IMAGE_SOURCE_TTL` is it revalidated, by one R2 `head` (same ETag: the entry
//! lives on; inside stale-while-revalidate this happens in the background). A miss
//! reads R2 `derived/` (encoded once, shared by every location), else takes the
//! transform slot (`edge::slot`), looks in the cache once more, and transforms; the
//! result is teed into the Cache API and written to R2 after the response.
//!
//! Formats encoded off the request path (AVIF) are only read here: on a miss the job
//! goes to the queue (`edge::jobs`) and an AVIF-capable browser gets the WebP stand-in
//! for `format::STAND_IN_SECS`; `format=avif` asked by name is told to retry. A source that
//! cannot be transformed (415/422) is remembered per source ETag and options for a
//! minute (`policy::flow`), so a broken upload is not decoded on every request.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use worker::{Conditional, Context, Env, Headers, Request, Response};

use super::cache::{self, Plan, SOURCE_VERSION, Source, Store};
use super::described::DescriptionSource;
use super::origin::runtime;
use super::working as edge_working;
use super::{Served, derived, jobs, memory, now_ms, slot};
use crate::assets::ObjectKey;
use crate::config::Config;
use crate::error::EdgeError;
use crate::image::format::{OutputFormat, choose_for, stand_in_headers};
use crate::image::hints::{self, Hints};
use crate::image::key::DerivativeKey;
use crate::image::options::{Answer, ImageOptions};
use crate::image::policy::Admission;
use crate::image::sweep::DerivedFrom;
use crate::image::working::{self, CopyUse};
use crate::image::{Output, TransformError, transform};
use crate::policy::ContentClass;
use crate::policy::flow::{image_policy, versioned_image_policy};
use crate::policy::purge::may_share;
use crate::policy::stored::Entry;
use crate::timing::ServerTiming;

/// Marks the answer of an off-request-path format that is not encoded yet.
const AVIF_STATE: &str = "x-edge-avif";
/// What a large source's miss did about its working copy (`image::working::CopyUse`).
const WORKING_COPY: &str = "x-edge-working-copy";

type Deferred = Pin<Box<dyn Future<Output = ()>>>;

/// A derivative as a cache [`Source`]: R2 `derived/`, else a transform of the source.
#[derive(Clone)]
struct ImageSource {
    env: Env,
    config: Config,
    key: ObjectKey,
    options: ImageOptions,
    format: OutputFormat,
    /// Made off the request path: only read what is already encoded.
    stored_only: bool,
    edge_key: String,
    /// The request path as purges name it (a URL purge of it reaches the R2 copy too),
    /// and the paths the entry also answers for (the original's).
    purge_path: String,
    aliases: Vec<String>,
    /// R2 writes to run after the response.
    deferred: Rc<RefCell<Vec<Deferred>>>,
}

impl Source for ImageSource {
    /// One more attempt when the source is replaced between its `head` and its read
    /// (the derivative must be filed under the ETag of the bytes it was made from).
    async fn fetch(
        &self,
        stored: Option<&Entry>,
        timing: &mut ServerTiming,
    ) -> Result<Response, EdgeError> {
        for _ in 0..2 {
            if let Some(response) = self.fetch_once(stored, timing).await? {
                return Ok(response);
            }
        }
        Err(EdgeError::NotReady {
            what: "the source image is being replaced",
            retry_after_secs: 1,
        })
    }

    fn deferred(&self) -> Vec<Deferred> {
        self.deferred.borrow_mut().drain(..).collect()
    }
}

impl ImageSource {
    /// `None`: the source changed while it was read.
    async fn fetch_once(
        &self,
        stored: Option<&Entry>,
        timing: &mut ServerTiming,
    ) -> Result<Option<Response>, EdgeError> {
        let bucket = super::assets::bucket(&self.env)?;
        let (version, size, declared) =
            match head_source(&bucket, &self.key, stored, &self.config, timing).await? {
                Headed::Answer(answer) => return Ok(Some(answer)),
                Headed::Source {
                    version,
                    size,
                    declared,
                } => (version, size, declared),
            };
        let dkey = DerivativeKey::new(self.key.as_str(), &version, &self.options, self.format);
        let r2_key = dkey.r2_key(self.format);
        let started = now_ms();
        let found = derived::get(&bucket, &r2_key, &self.key, Some(&self.purge_path))
            .await
            .map_err(super::assets::r2_failed)?;
        timing.add("r2", now_ms() - started);
        if let Some(object) = found.as_ref()
            && let Some(body) = object.body()
        {
            let length = usize::try_from(object.size()).ok();
            let headers = self.headers(&dkey, &version, length)?;
            return Ok(Some(
                Response::from_body(body.response_body().map_err(runtime)?)
                    .map_err(runtime)?
                    .with_headers(headers),
            ));
        }
        if self.stored_only {
            jobs::enqueue_avif(
                &self.env,
                self.key.as_str(),
                &version,
                &self.purge_path,
                &self.options,
                r2_key,
            )
            .await;
            let headers = Headers::new();
            headers.set("cache-control", "no-store").map_err(runtime)?;
            headers.set(AVIF_STATE, "missing").map_err(runtime)?;
            return Ok(Some(
                Response::empty()
                    .map_err(runtime)?
                    .with_status(404)
                    .with_headers(headers),
            ));
        }
        let copy_worth_looking = working::worth_looking(size, &declared, &self.config.image_limits);
        self.transform(&bucket, &dkey, &version, copy_worth_looking, timing)
            .await
    }

    /// The headers a derivative is stored and served with.
    fn headers(
        &self,
        dkey: &DerivativeKey,
        version: &str,
        length: Option<usize>,
    ) -> Result<Headers, EdgeError> {
        let headers = Headers::new();
        let set = |n: &str, v: &str| headers.set(n, v).map_err(runtime);
        set("content-type", self.format.content_type())?;
        if let Some(length) = length {
            set("content-length", &length.to_string())?;
        }
        set("etag", &dkey.etag())?;
        set("vary", "Accept")?;
        set(SOURCE_VERSION, version)?;
        set("x-edge-derivative", &dkey.r2_key(self.format))?;
        Ok(headers)
    }

    async fn transform(
        &self,
        bucket: &worker::Bucket,
        dkey: &DerivativeKey,
        version: &str,
        copy_worth_looking: bool,
        timing: &mut ServerTiming,
    ) -> Result<Option<Response>, EdgeError> {
        let started = now_ms();
        let _slot = slot::acquire(slot::SLOT_WAIT, self.config.retry_after_secs).await?;
        timing.add("slot", now_ms() - started);
        // Read before the source: a purge applied while this derivative is made is newer
        // than what it records, so the stored copy is made again (`policy::purge::reuse`).
        let generation = super::purge::generation().await;
        // Another request may have stored this derivative while this one waited (not the
        // entry a purge just covered: this request may be its refetch).
        let mut look = ServerTiming::new();
        if let Some((entry, response)) = Store::new().lookup_key(&self.edge_key, &mut look).await
            && entry.meta.status == 200
            && entry.meta.source.as_deref() == Some(version)
        {
            let (verdict, _) = super::purge::check(&self.purge_path, &self.aliases, &entry).await;
            if may_share(verdict) {
                return cache::representation(response).map(Some);
            }
        }
        let limits = &self.config.image_limits;
        // A large JPEG's working copy, when it has the detail this output needs: it saves
        // decoding the original (`image::working`).
        let mut copy_use = None;
        let mut output = None;
        if copy_worth_looking {
            let started = now_ms();
            let stored = edge_working::read(bucket, &self.key, version).await;
            timing.add("copy", now_ms() - started);
            copy_use = Some(match stored {
                Ok(Some(copy)) => {
                    memory::reset_peak();
                    output = working::transform_from(
                        &copy.bytes,
                        copy.original,
                        &self.options,
                        self.format,
                        limits,
                        &now_ms,
                    );
                    if output.is_some() {
                        CopyUse::Used
                    } else {
                        CopyUse::LacksDetail
                    }
                }
                Ok(None) => {
                    let env = self.env.clone();
                    let (key, version) = (self.key.as_str().to_owned(), version.to_owned());
                    self.deferred.borrow_mut().push(Box::pin(async move {
                        jobs::enqueue_working_copy(&env, &key, &version).await;
                    }));
                    CopyUse::Queued
                }
                Err(e) => {
                    worker::console_warn!("reading the working copy of {}: {e}", self.key.as_str());
                    CopyUse::Unavailable
                }
            });
        }
        let output = match output {
            Some(output) => output,
            None => match self.transform_original(bucket, version, timing).await? {
                Ok(output) => output,
                Err(answer) => return Ok(answer),
            },
        };
        timing.add("decode", output.timings.decode);
        timing.add("resize", output.timings.resize);
        timing.add("encode", output.timings.encode);
        timing.add(
            "transform",
            output.timings.decode + output.timings.resize + output.timings.encode,
        );
        let headers = self.headers(dkey, version, Some(output.bytes.len()))?;
        headers
            .set("x-edge-memory-peak", &memory::peak().to_string())
            .map_err(runtime)?;
        // The part of the source the output shows: where `gravity=auto` cropped.
        let region = output.region;
        headers
            .set(
                "x-edge-region",
                &format!("{},{},{},{}", region.x, region.y, region.w, region.h),
            )
            .map_err(runtime)?;
        if let Some(copy_use) = copy_use {
            headers
                .set(WORKING_COPY, copy_use.as_str())
                .map_err(runtime)?;
        }
        headers
            .set(
                "x-edge-memory-linear",
                &memory::linear_memory_bytes().to_string(),
            )
            .map_err(runtime)?;
        // R2 `derived/`: after the response, so every location reads it instead of
        // transforming again.
        let env = self.env.clone();
        let r2_key = dkey.r2_key(self.format);
        let format = self.format;
        let made_from = DerivedFrom::new(self.key.as_str(), version)
            .at_generation(generation)
            .to_metadata();
        let copy = output.bytes.clone();
        self.deferred.borrow_mut().push(Box::pin(async move {
            let stored = derived::put(&env, &r2_key, format.content_type(), copy, made_from);
            if let Err(e) = stored.await {
                worker::console_warn!("storing derivative {r2_key} failed: {e}");
            }
        }));
        Ok(Some(
            Response::from_bytes(output.bytes)
                .map_err(runtime)?
                .with_headers(headers),
        ))
    }

    /// The original, read and transformed. `Err(None)`: it changed since its `head`;
    /// `Err(Some(answer))`: it cannot be transformed (415/422, remembered per version).
    async fn transform_original(
        &self,
        bucket: &worker::Bucket,
        version: &str,
        timing: &mut ServerTiming,
    ) -> Result<Result<Output, Option<Response>>, EdgeError> {
        let Some(original) = read_exact(bucket, &self.key, version, timing).await? else {
            return Ok(Err(None));
        };
        memory::reset_peak();
        let limits = &self.config.image_limits;
        match transform(&original, &self.options, self.format, limits, &now_ms) {
            Ok(output) => Ok(Ok(output)),
            Err(TransformError::Internal(why)) => {
                Err(EdgeError::Image(TransformError::Internal(why)))
            }
            Err(e) => answer_error(&EdgeError::Image(e), Some(version), false)
                .map(|answer| Err(Some(answer))),
        }
    }
}

/// What a source's R2 `head` decided.
pub(super) enum Headed {
    /// The fetch ends here: 404, a 304 (the stored entry was made from these bytes), or
    /// the source's size or declared type refused (415/422, remembered for this version).
    Answer(Response),
    Source {
        version: String,
        size: u64,
        declared: String,
    },
}

/// One R2 `head` of the source `key`, before anything is read or queued.
pub(super) async fn head_source(
    bucket: &worker::Bucket,
    key: &ObjectKey,
    stored: Option<&Entry>,
    config: &Config,
    timing: &mut ServerTiming,
) -> Result<Headed, EdgeError> {
    let started = now_ms();
    let head = bucket
        .head(key.as_str())
        .await
        .map_err(super::assets::r2_failed)?;
    timing.add("r2-head", now_ms() - started);
    let Some(head) = head else {
        let missing = EdgeError::ObjectNotFound {
            key: key.as_str().to_owned(),
        };
        return answer_error(&missing, None, true).map(Headed::Answer);
    };
    let version = head.http_etag();
    if stored.and_then(|e| e.meta.source.as_deref()) == Some(version.as_str()) {
        return not_modified(&version).map(Headed::Answer);
    }
    let declared = head
        .http_metadata()
        .content_type
        .unwrap_or_else(|| key.content_type().to_owned());
    if let Err(refused) = config.image_limits.check_source(head.size(), &declared) {
        return answer_error(&EdgeError::Image(refused.into()), Some(&version), false)
            .map(Headed::Answer);
    }
    Ok(Headed::Source {
        version,
        size: head.size(),
        declared,
    })
}

/// The answer that keeps a stored entry made from the source at `version`.
pub(super) fn not_modified(version: &str) -> Result<Response, EdgeError> {
    let headers = Headers::new();
    headers.set(SOURCE_VERSION, version).map_err(runtime)?;
    Ok(Response::empty()
        .map_err(runtime)?
        .with_status(304)
        .with_headers(headers))
}

/// The source's bytes, bound to the `version` its head measured (`None`: replaced in
/// between, when the bytes would not match the ETag the result is filed under).
pub(super) async fn read_exact(
    bucket: &worker::Bucket,
    key: &ObjectKey,
    version: &str,
    timing: &mut ServerTiming,
) -> Result<Option<Vec<u8>>, EdgeError> {
    let started = now_ms();
    let object = bucket
        .get(key.as_str())
        .only_if(Conditional {
            etag_matches: Some(version.trim_matches('"').to_owned()),
            ..Conditional::default()
        })
        .execute()
        .await
        .map_err(super::assets::r2_failed)?;
    let Some(body) = object.as_ref().and_then(|o| o.body()) else {
        return Ok(None);
    };
    let bytes = body.bytes().await.map_err(runtime)?;
    drop(object);
    timing.add("source", now_ms() - started);
    Ok(Some(bytes))
}

/// An error as an upstream answer: JSON, with the source version it concerns (so a
/// 415/422 is remembered for that version only); `no_store` for what must not be kept.
pub(super) fn answer_error(
    err: &EdgeError,
    version: Option<&str>,
    no_store: bool,
) -> Result<Response, EdgeError> {
    let headers = Headers::new();
    headers
        .set("content-type", "application/json")
        .map_err(runtime)?;
    if let Some(version) = version {
        headers.set(SOURCE_VERSION, version).map_err(runtime)?;
    }
    if no_store {
        headers.set("cache-control", "no-store").map_err(runtime)?;
    }
    let body = err.to_body().to_json().into_bytes();
    headers
        .set("content-length", &body.len().to_string())
        .map_err(runtime)?;
    Ok(Response::from_bytes(body)
        .map_err(runtime)?
        .with_status(err.status())
        .with_headers(headers))
}

/// A failed transform of the source at `version`: our own failure is an error (500, and
/// stale content may cover it); the source's (415/422) is an answer, remembered for that
/// version.
pub(super) fn refusal(e: TransformError, version: &str) -> Result<Response, EdgeError> {
    match e {
        TransformError::Internal(_) => Err(EdgeError::Image(e)),
        e => answer_error(&EdgeError::Image(e), Some(version), false),
    }
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
        cache: protocol::EdgeCacheStatus::Bypass,
    })
}

/// The request's side of a derivative: `width=auto` and `slow-connection-quality` made
/// plain from its client hints (the key is then the explicit URL's), the headers every
/// answer carries (the access mode, and `Vary` naming the hints read), and `Accept`.
pub(super) fn hinted(
    req: &Request,
    config: &Config,
    options: &ImageOptions,
    admission: Admission,
) -> (ImageOptions, Vec<(String, String)>, String) {
    let hints = Hints::read(|name| req.headers().get(name).ok().flatten());
    let ladder = hints::ladder(config.image_policy.widths.as_deref());
    let (options, read) = hints::resolve(options, &hints, &ladder);
    let mut extra = vec![(
        String::from("x-edge-image-access"),
        admission.as_str().to_owned(),
    )];
    if let Some(vary) = hints::vary(&read) {
        extra.push((String::from("vary"), vary));
    }
    let accept = req
        .headers()
        .get("accept")
        .ok()
        .flatten()
        .unwrap_or_default();
    (options, extra, accept)
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
    let (options, extra, accept) = hinted(req, config, &options, admission);
    let choice = choose_for(&options, &accept, key.content_type());
    let row = image_policy(
        config.policy.get(ContentClass::Image),
        config.image_source_ttl,
    );
    // A `v=` the operator vouches for (preset, signature) names one version forever:
    // browsers keep it a year. What is stored is still bound to the source's ETag.
    let policy = if options.version.is_some() && admission.trusts_versions() {
        versioned_image_policy(row)
    } else {
        row
    };
    if options.answer != Answer::Image {
        let plan = Plan {
            class: ContentClass::Image,
            policy,
            key: DerivativeKey::description_url(key.as_str(), &options),
            ask: super::ask_of(req),
            extra,
            follow_timeout: slot::SLOT_WAIT + Duration::from_secs(10),
            vary_headers: Vec::new(),
            purge_path: req.path(),
            aliases: vec![key.purge_path(true)],
        };
        let source = DescriptionSource {
            env: env.clone(),
            config: config.clone(),
            key: key.clone(),
            options,
        };
        return cache::serve(ctx, &plan, &source, timing).await;
    }
    let plan_for = |format: OutputFormat| Plan {
        class: ContentClass::Image,
        policy,
        key: DerivativeKey::edge_url(key.as_str(), &options, format),
        ask: super::ask_of(req),
        extra: extra.clone(),
        follow_timeout: slot::SLOT_WAIT + Duration::from_secs(10),
        vary_headers: Vec::new(),
        purge_path: req.path(),
        // Purging the original reaches every derivative of it.
        aliases: vec![key.purge_path(true)],
    };
    let source_for = |format: OutputFormat, plan: &Plan| ImageSource {
        env: env.clone(),
        config: config.clone(),
        key: key.clone(),
        options: options.clone(),
        format,
        stored_only: format.encoded_off_request_path(),
        edge_key: plan.key.clone(),
        purge_path: plan.purge_path.clone(),
        aliases: plan.aliases.clone(),
        deferred: Rc::new(RefCell::new(Vec::new())),
    };

    let wanted = plan_for(choice.wanted);
    let mut served =
        cache::serve(ctx, &wanted, &source_for(choice.wanted, &wanted), timing).await?;
    let missing = served
        .response
        .headers()
        .get(AVIF_STATE)
        .ok()
        .flatten()
        .is_some();
    if missing {
        let Some(stand_in) = choice.stand_in else {
            return Err(EdgeError::NotReady {
                what: "the AVIF derivative is being encoded",
                retry_after_secs: 2,
            });
        };
        let plan = plan_for(stand_in);
        served = cache::serve(ctx, &plan, &source_for(stand_in, &plan), timing).await?;
        let headers = served.response.headers_mut();
        for (name, value) in stand_in_headers() {
            headers.set(name, &value).map_err(runtime)?;
        }
    }
    if options.redirects_on(served.response.status_code()) {
        return redirect_to_original(key);
    }
    Ok(served)
}
