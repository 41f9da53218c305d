//! Static assets, video and `/media` originals from R2 (`MEDIA`), through the edge
//! cache like every class: a HIT never touches R2; a miss reads the object once (a
//! conditional `get` when a stale entry holds its ETag — unchanged costs no body) and
//! tees it into the Cache API while it streams to the client. Ranges (206/416), HEAD
//! and conditionals (304) are answered from the stored copy by `policy::flow`. A
//! missing object is a JSON 404 with `no-store` — never an HTML fallback, never kept.
//! Every answer is `nosniff`; an uploaded original (`/media/`) of an active type is an
//! attachment in a CSP sandbox (`assets::safety_headers`). `/media/` serves the original
//! byte for byte, metadata (GPS EXIF included) and all: strip it with `/img/` options.

use std::time::Duration;

use worker::{Conditional, Context, Env, Headers, Range, Request, Response};

use super::cache::{self, Plan, Source};
use super::origin::runtime;
use super::{Served, now_ms};
use crate::assets::{ObjectKey, safety_headers};
use crate::config::Config;
use crate::error::EdgeError;
use crate::policy::stored::Entry;
use crate::policy::{CacheKey, ContentClass, http_date};
use crate::timing::ServerTiming;

/// The R2 binding (see wrangler.toml).
pub(super) const BUCKET: &str = "MEDIA";

thread_local! {
    /// The drills' R2 switch (`crate::fault`: down only with FAULT_INJECTION=on) and
    /// the Retry-After an unreadable R2 is answered with.
    static R2_STATE: std::cell::Cell<(bool, u32)> = const { std::cell::Cell::new((false, 5)) };
}

/// Takes this request's config: the fault switch holds only while injection is on.
pub(super) fn enter(config: &Config) {
    R2_STATE.with(|state| {
        let (down, _) = state.get();
        state.set((down && config.fault_injection, config.retry_after_secs));
    });
}

/// Sets the drills' R2 switch for this isolate.
pub(super) fn switch_r2(r2: crate::fault::R2) {
    R2_STATE.with(|state| {
        let (_, retry) = state.get();
        state.set((r2 == crate::fault::R2::Down, retry));
    });
}

/// An R2 operation that failed: a 503 with Retry-After (a stale copy covers it where
/// the class has one).
pub(super) fn r2_failed(e: impl std::fmt::Display) -> EdgeError {
    EdgeError::StorageUnavailable {
        detail: e.to_string(),
        retry_after_secs: R2_STATE.with(|state| state.get().1),
    }
}

/// The media bucket, unless the drills switched R2 off.
pub(super) fn bucket(env: &Env) -> Result<worker::Bucket, EdgeError> {
    if R2_STATE.with(|state| state.get().0) {
        return Err(r2_failed("R2 switched off by the drills' fault route"));
    }
    env.bucket(BUCKET).map_err(r2_failed)
}

/// An R2 object as a cache [`Source`].
#[derive(Clone)]
pub(super) struct ObjectSource {
    env: Env,
    key: ObjectKey,
    /// An original from `/media/`: served with the active-content guard.
    uploaded: bool,
}

impl Source for ObjectSource {
    async fn fetch_range(
        &self,
        entry: &Entry,
        start: u64,
        end: u64,
        timing: &mut ServerTiming,
    ) -> Option<Response> {
        let etag = entry.etag.as_deref()?.trim_matches('"').to_owned();
        let bucket = bucket(&self.env).ok()?;
        let started = now_ms();
        // Bound to the version the entry describes: replaced meanwhile, no part.
        let object = bucket
            .get(self.key.as_str())
            .range(Range::OffsetWithLength {
                offset: start,
                length: end - start + 1,
            })
            .only_if(Conditional {
                etag_matches: Some(etag),
                ..Conditional::default()
            })
            .execute()
            .await
            .ok()??;
        timing.add("r2-range", now_ms() - started);
        let body = object.body()?.response_body().ok()?;
        Response::from_body(body).ok()
    }

    async fn fetch(
        &self,
        stored: Option<&Entry>,
        timing: &mut ServerTiming,
    ) -> Result<Response, EdgeError> {
        let bucket = bucket(&self.env)?;
        let mut get = bucket.get(self.key.as_str());
        if let Some(etag) = stored.and_then(|e| e.etag.as_deref()) {
            get = get.only_if(Conditional {
                etag_does_not_match: Some(etag.trim_matches('"').to_owned()),
                ..Conditional::default()
            });
        }
        let started = now_ms();
        let object = get.execute().await.map_err(r2_failed)?;
        timing.add("r2", now_ms() - started);
        let Some(object) = object else {
            return not_found(&self.key);
        };
        let headers = Headers::new();
        let set = |name: &str, value: &str| headers.set(name, value).map_err(runtime);
        set("etag", &object.http_etag())?;
        set(
            "last-modified",
            &http_date::format((object.uploaded().as_millis() / 1000) as i64),
        )?;
        set("accept-ranges", "bytes")?;
        let content_type = object
            .http_metadata()
            .content_type
            .unwrap_or_else(|| self.key.content_type().to_owned());
        set("content-type", &content_type)?;
        // From the type R2 declares, not the key's extension: `x.jpg` uploaded as HTML
        // is still sandboxed. Stored with the entry, so every hit carries them.
        for (name, value) in safety_headers(self.uploaded, &content_type) {
            set(name, value)?;
        }
        if self.uploaded
            && let Ok(meta) = object.custom_metadata()
        {
            for (name, value) in crate::upload::dimension_headers(&meta) {
                set(name, &value)?;
            }
        }
        match object.body() {
            // The precondition failed: the stored copy is current.
            None if stored.is_some() => Ok(Response::empty()
                .map_err(runtime)?
                .with_status(304)
                .with_headers(headers)),
            None => {
                set("content-length", "0")?;
                Ok(Response::empty().map_err(runtime)?.with_headers(headers))
            }
            Some(body) => {
                set("content-length", &object.size().to_string())?;
                Ok(Response::from_body(body.response_body().map_err(runtime)?)
                    .map_err(runtime)?
                    .with_headers(headers))
            }
        }
    }
}

/// The JSON 404 for a missing object, marked `no-store` so it is never kept.
fn not_found(key: &ObjectKey) -> Result<Response, EdgeError> {
    let err = EdgeError::ObjectNotFound {
        key: key.as_str().to_owned(),
    };
    let headers = Headers::new();
    headers
        .set("content-type", "application/json")
        .map_err(runtime)?;
    headers.set("cache-control", "no-store").map_err(runtime)?;
    headers
        .set("x-content-type-options", "nosniff")
        .map_err(runtime)?;
    Ok(Response::from_bytes(err.to_body().to_json().into_bytes())
        .map_err(runtime)?
        .with_status(err.status())
        .with_headers(headers))
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn serve(
    req: &Request,
    env: &Env,
    ctx: &Context,
    config: &Config,
    class: ContentClass,
    key: &ObjectKey,
    uploaded: bool,
    timing: &mut ServerTiming,
) -> Result<Served, EdgeError> {
    let plan = Plan {
        class,
        policy: config.policy.get(class),
        key: CacheKey::object(&key.url_path(), uploaded)
            .as_str()
            .to_owned(),
        ask: super::ask_of(req),
        extra: Vec::new(),
        follow_timeout: Duration::from_secs(30),
        vary_headers: Vec::new(),
        purge_path: req.path(),
        // However the request spelled the key (`%61.jpg`, lowercase escapes), purges name
        // it one way.
        aliases: vec![key.purge_path(uploaded)],
    };
    let source = ObjectSource {
        env: env.clone(),
        key: key.clone(),
        uploaded,
    };
    cache::serve(ctx, &plan, &source, timing).await
}
