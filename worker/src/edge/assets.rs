//! Static assets and video straight from R2 (`MEDIA`): GET and HEAD, one byte range
//! (206 / 416), conditional requests (304), content types by extension, the class's
//! cache headers. A missing object is a JSON 404 with `no-store` — never an HTML
//! fallback. These responses come from R2, not the Cache API: `x-edge-cache: MISS`.
//! Every answer is `nosniff`; an uploaded original (`/media/`) of an active type is an
//! attachment in a CSP sandbox (`assets::safety_headers`). `/media/` serves the original
//! byte for byte, metadata (GPS EXIF included) and all: strip it with `/img/` options.

use protocol::EdgeCacheStatus;
use worker::{Conditional, Env, Headers, Range, Request, Response};

use super::origin::runtime;
use super::{Served, now_ms};
use crate::assets::{ByteRange, ObjectKey, Resolved, safety_headers};
use crate::config::Config;
use crate::error::EdgeError;
use crate::policy::{ContentClass, http_date, not_modified};
use crate::route::Method;
use crate::timing::ServerTiming;

/// The R2 binding (see wrangler.toml).
pub(super) const BUCKET: &str = "MEDIA";

struct Meta {
    size: u64,
    etag: String,
    last_modified: String,
    content_type: String,
}

fn meta_of(object: &worker::Object, key: &ObjectKey) -> Meta {
    Meta {
        size: object.size(),
        etag: object.http_etag(),
        last_modified: http_date::format((object.uploaded().as_millis() / 1000) as i64),
        content_type: object
            .http_metadata()
            .content_type
            .unwrap_or_else(|| key.content_type().to_owned()),
    }
}

fn base_headers(
    config: &Config,
    class: ContentClass,
    status: u16,
    meta: &Meta,
    uploaded: bool,
) -> Result<Headers, EdgeError> {
    let policy = config.policy.get(class);
    let headers = Headers::new();
    let set = |name: &str, value: &str| headers.set(name, value).map_err(runtime);
    for (name, value) in safety_headers(uploaded, &meta.content_type) {
        set(name, value)?;
    }
    set("etag", &meta.etag)?;
    set("last-modified", &meta.last_modified)?;
    set("accept-ranges", "bytes")?;
    super::respond::set_policy_headers(&headers, policy, status)?;
    Ok(headers)
}

pub(super) async fn serve(
    req: &Request,
    env: &Env,
    config: &Config,
    class: ContentClass,
    key: &ObjectKey,
    uploaded: bool,
    timing: &mut ServerTiming,
) -> Result<Served, EdgeError> {
    let bucket = env.bucket(BUCKET).map_err(runtime)?;
    let method = Method::parse(req.method().as_ref());
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let range = header("range").and_then(|r| ByteRange::parse(&r));
    // `If-Range` (RFC 9110 §13.1.5): a range only applies to the version the client
    // already has; otherwise the whole current object is sent.
    let if_range = header("if-range");
    let missing = || EdgeError::ObjectNotFound {
        key: key.as_str().to_owned(),
    };
    let miss = |response: Response| Served {
        response,
        cache: EdgeCacheStatus::Miss,
    };

    let started = now_ms();
    // HEAD and ranges need the size first; a full GET gets metadata with the body.
    let (meta, object) = if method == Method::Head || range.is_some() {
        let object = bucket
            .head(key.as_str())
            .await
            .map_err(runtime)?
            .ok_or_else(missing)?;
        (meta_of(&object, key), None)
    } else {
        let object = bucket
            .get(key.as_str())
            .execute()
            .await
            .map_err(runtime)?
            .ok_or_else(missing)?;
        (meta_of(&object, key), Some(object))
    };
    timing.add("r2", now_ms() - started);

    if not_modified(
        header("if-none-match").as_deref(),
        header("if-modified-since").as_deref(),
        Some(&meta.etag),
        Some(&meta.last_modified),
    ) {
        let headers = base_headers(config, class, 304, &meta, uploaded)?;
        return Ok(miss(
            Response::empty()
                .map_err(runtime)?
                .with_status(304)
                .with_headers(headers),
        ));
    }

    let range = range.filter(|_| if_range.as_deref().is_none_or(|v| v == meta.etag));
    if let Some(range) = range {
        return match range.resolve(meta.size) {
            Resolved::Unsatisfiable => {
                let headers = base_headers(config, class, 416, &meta, uploaded)?;
                headers
                    .set("content-range", &format!("bytes */{}", meta.size))
                    .map_err(runtime)?;
                headers.set("cache-control", "no-store").map_err(runtime)?;
                Ok(miss(
                    Response::empty()
                        .map_err(runtime)?
                        .with_status(416)
                        .with_headers(headers),
                ))
            }
            Resolved::Partial { start, end } => {
                let length = end - start + 1;
                let headers = base_headers(config, class, 206, &meta, uploaded)?;
                headers
                    .set("content-type", &meta.content_type)
                    .map_err(runtime)?;
                headers
                    .set(
                        "content-range",
                        &format!("bytes {start}-{end}/{}", meta.size),
                    )
                    .map_err(runtime)?;
                headers
                    .set("content-length", &length.to_string())
                    .map_err(runtime)?;
                if method == Method::Head {
                    return Ok(miss(
                        Response::empty()
                            .map_err(runtime)?
                            .with_status(206)
                            .with_headers(headers),
                    ));
                }
                let started = now_ms();
                // Conditional on the version measured above, so the bytes and the
                // Content-Range always describe the same object.
                let object = bucket
                    .get(key.as_str())
                    .range(Range::OffsetWithLength {
                        offset: start,
                        length,
                    })
                    .only_if(Conditional {
                        etag_matches: Some(meta.etag.trim_matches('"').to_owned()),
                        ..Conditional::default()
                    })
                    .execute()
                    .await
                    .map_err(runtime)?
                    .ok_or_else(missing)?;
                timing.add("r2-range", now_ms() - started);
                let body = object
                    .body()
                    .ok_or_else(missing)?
                    .response_body()
                    .map_err(runtime)?;
                Ok(miss(
                    Response::from_body(body)
                        .map_err(runtime)?
                        .with_status(206)
                        .with_headers(headers),
                ))
            }
        };
    }

    let headers = base_headers(config, class, 200, &meta, uploaded)?;
    headers
        .set("content-type", &meta.content_type)
        .map_err(runtime)?;
    headers
        .set("content-length", &meta.size.to_string())
        .map_err(runtime)?;
    let response = match object.as_ref().and_then(|o| o.body()) {
        Some(body) if method != Method::Head => {
            Response::from_body(body.response_body().map_err(runtime)?).map_err(runtime)?
        }
        _ => Response::empty().map_err(runtime)?,
    };
    Ok(miss(response.with_status(200).with_headers(headers)))
}
