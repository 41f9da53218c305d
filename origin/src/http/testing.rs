//! Diagnostic routes for the end-to-end suite, off unless `--enable-test-routes`:
//! `GET /test/echo` answers with whatever status and caching headers the query asks
//! for, so the edge's pass-through class, `Set-Cookie` rule, 5xx rule and conditional
//! revalidation are tested against this real origin binary. Never enable in production.
//!
//! Query: `id` (counter name), `status`, `cc` (Cache-Control), `cookie=1` (Set-Cookie),
//! `etag` (answers If-None-Match with 304), `vary`, `expires_in` (seconds, with Date),
//! `delay_ms` (≤ 10000), `location`, `age` (an upstream Age), `cdn` (CDN-Cache-Control),
//! `hop` (a header named in `Connection`, which a proxy must drop), `tag` (Cache-Tag,
//! also on the 304). Body: `{"id":…,"n":<requests seen for id>}` (none for 204/304).
//! Every request's `If-None-Match`, `Accept` and `Authorization` presence is echoed
//! (`seen_inm`, `seen_accept`, `seen_auth`) so tests can see what the edge forwards.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::Json;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiError;
use crate::domain::input::query_pairs;

static SEEN: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

fn count(id: &str) -> u64 {
    let Ok(mut seen) = SEEN.lock() else { return 0 };
    let n = seen
        .get_or_insert_with(HashMap::new)
        .entry(id.to_owned())
        .or_insert(0);
    *n += 1;
    *n
}

fn seen(id: &str) -> u64 {
    SEEN.lock()
        .ok()
        .and_then(|s| s.as_ref().and_then(|m| m.get(id).copied()))
        .unwrap_or(0)
}

pub(super) async fn echo(
    RawQuery(raw): RawQuery,
    request: HeaderMap,
) -> Result<Response, ApiError> {
    let q = query_pairs(raw.as_deref())?;
    let id = q.get("id").cloned().unwrap_or_default();
    let status = q
        .get("status")
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    if let Some(ms) = q.get("delay_ms").and_then(|s| s.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms.min(10_000))).await;
    }
    let n = count(&id);
    let etag = q.get("etag").map(|e| format!("\"{e}\""));
    let not_modified = etag.as_ref().is_some_and(|etag| {
        request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    });
    let seen = |name: header::HeaderName| request.get(name).is_some();
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else if status == StatusCode::NO_CONTENT {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (
            status,
            Json(json!({
                "id": id,
                "n": n,
                "seen_inm": seen(header::IF_NONE_MATCH),
                "seen_accept": seen(header::ACCEPT),
                "seen_auth": seen(header::AUTHORIZATION),
                "seen_query": raw.clone().unwrap_or_default(),
            })),
        )
            .into_response()
    };
    let headers = response.headers_mut();
    let mut put = |name: header::HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    if let Some(cc) = q.get("cc") {
        put(header::CACHE_CONTROL, cc);
    }
    if q.get("cookie").is_some_and(|c| c == "1") {
        put(header::SET_COOKIE, &format!("echo={n}; Path=/; HttpOnly"));
    }
    if let Some(etag) = &etag {
        put(header::ETAG, etag);
    }
    if let Some(vary) = q.get("vary") {
        put(header::VARY, vary);
    }
    if let Some(location) = q.get("location") {
        put(header::LOCATION, location);
    }
    if let Some(age) = q.get("age") {
        put(header::AGE, age);
    }
    if let Some(cdn) = q.get("cdn") {
        put(header::HeaderName::from_static("cdn-cache-control"), cdn);
    }
    if let Some(tag) = q.get("tag") {
        put(header::HeaderName::from_static("cache-tag"), tag);
    }
    if let Some(hop) = q
        .get("hop")
        .and_then(|h| header::HeaderName::from_bytes(h.as_bytes()).ok())
    {
        put(header::CONNECTION, hop.as_str());
        put(hop, "hop-by-hop");
    }
    if let Some(secs) = q.get("expires_in").and_then(|s| s.parse::<u64>().ok()) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        put(header::DATE, &protocol::http_date::format(now as i64));
        put(
            header::EXPIRES,
            &protocol::http_date::format((now + secs) as i64),
        );
    }
    Ok(response)
}

/// `GET /test/seen?id=`: how many requests `/test/echo` saw for `id`.
pub(super) async fn seen_count(
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = query_pairs(raw.as_deref())?;
    let id = q.get("id").cloned().unwrap_or_default();
    Ok(Json(json!({ "id": id, "seen": seen(&id) })))
}
