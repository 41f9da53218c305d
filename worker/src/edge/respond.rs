//! Building the final response: error bodies in the `protocol` shape, and the headers
//! every response carries (`x-edge-cache`, `Server-Timing`).

use protocol::headers::{EDGE_CACHE, SERVER_TIMING};
use worker::{Headers, Response, Result};

use super::Served;
use crate::canary::{ARM_HEADER, Arm};
use crate::error::EdgeError;
use crate::timing::ServerTiming;

pub(super) fn error(err: &EdgeError) -> Result<Response> {
    let body = err.to_body().to_json();
    let mut response = Response::builder()
        .with_status(err.status())
        .with_header("content-type", "application/json")?
        .with_header("cache-control", "no-store")?;
    if let Some(secs) = err.retry_after_secs() {
        response = response.with_header("retry-after", &secs.to_string())?;
    }
    if let Some(allow) = err.allow() {
        response = response.with_header("allow", allow)?;
    }
    if let Some(challenge) = err.www_authenticate() {
        response = response.with_header("www-authenticate", challenge)?;
    }
    Ok(response.fixed(body.into_bytes()))
}

/// `response` around the same body and status with a fresh copy of its headers, less
/// those `keep` refuses, then `edit`ed: how a cached or fetched response (immutable
/// headers) is changed.
pub(super) fn rebuilt(
    response: Response,
    keep: impl Fn(&str) -> bool,
    edit: impl FnOnce(&Headers) -> Result<()>,
) -> Result<Response> {
    let status = response.status_code();
    let headers = Headers::new();
    for (name, value) in response.headers().entries() {
        if keep(&name) {
            headers.append(&name, &value)?;
        }
    }
    edit(&headers)?;
    let (_, body) = response.into_parts();
    Ok(Response::from_body(body)?
        .with_status(status)
        .with_headers(headers))
}

/// `response` with `name: value` appended (rebuilt when its headers are immutable).
pub(super) fn with_appended(mut response: Response, name: &str, value: &str) -> Result<Response> {
    if response.headers_mut().append(name, value).is_ok() {
        return Ok(response);
    }
    rebuilt(response, |_| true, |headers| headers.append(name, value))
}

/// Adds the observability headers (and, for origin classes, the origin arm that served).
/// Responses the edge built have headers of their own and are finished in place;
/// fetched ones (immutable headers) are copied once.
pub(super) fn finish(served: Served, timing: &ServerTiming, arm: Option<Arm>) -> Result<Response> {
    let Served {
        mut response,
        cache,
    } = served;
    let timing = timing.header_value();
    let set = |headers: &Headers| -> Result<()> {
        headers.set(EDGE_CACHE, cache.as_str())?;
        headers.set(SERVER_TIMING, &timing)?;
        if let Some(arm) = arm {
            headers.set(ARM_HEADER, arm.as_str())?;
        }
        Ok(())
    };
    if set(response.headers_mut()).is_ok() {
        return Ok(response);
    }
    rebuilt(response, |_| true, set)
}
