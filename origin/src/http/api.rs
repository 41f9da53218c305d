//! The cached read APIs. Each handler: admit → parse → `service` → respond with the
//! entry's ETag and tags, or 304.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::Segment;
use protocol::headers::{CACHE_TAG, SEGMENT};

use super::ApiError;
use crate::AppState;
use crate::admission::Class;
use crate::cache::{Domain, Entry, Lookup};
use crate::domain::input::query_pairs;
use crate::domain::{CatalogQuery, InputError, SearchQuery, Slug, VideoId};
use crate::service;

/// Which cache the origin answered from.
pub const ORIGIN_CACHE: &str = "x-origin-cache";
/// Set when a shed feed was answered from its last copy.
pub const DEGRADED: &str = protocol::headers::ORIGIN_DEGRADED;

/// `If-None-Match` (weak comparison, as RFC 9110 prescribes for GET) against our ETag.
pub(super) fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

fn respond(entry: &Entry, lookup: Lookup, ttl: Duration, request: &HeaderMap) -> Response {
    let cache_control = cache_control(ttl);
    let status = if not_modified(request, &entry.etag) {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut response = if status == StatusCode::OK {
        Response::new(Body::from(entry.body.clone()))
    } else {
        Response::new(Body::empty())
    };
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if status == StatusCode::OK {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    let mut put = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    put("etag", &entry.etag);
    put(CACHE_TAG, &entry.tag_header);
    headers.insert(header::CACHE_CONTROL, cache_control);
    headers.insert(ORIGIN_CACHE, HeaderValue::from_static(lookup.as_str()));
    response
}

/// `public, max-age=<ttl>` for the domain TTLs, spelled without allocating.
fn cache_control(ttl: Duration) -> HeaderValue {
    match ttl.as_secs() {
        30 => HeaderValue::from_static("public, max-age=30"),
        60 => HeaderValue::from_static("public, max-age=60"),
        300 => HeaderValue::from_static("public, max-age=300"),
        600 => HeaderValue::from_static("public, max-age=600"),
        1800 => HeaderValue::from_static("public, max-age=1800"),
        secs => HeaderValue::from_str(&format!("public, max-age={secs}"))
            .unwrap_or(HeaderValue::from_static("no-store")),
    }
}

pub(super) async fn catalog(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let _guard = state.admission.enter(Class::Catalog).await?;
    let query = CatalogQuery::parse(raw.as_deref())?;
    let (entry, lookup) = service::catalog(&state, &query)
        .await
        .map_err(|e| ApiError::from_load(e, || String::from("that catalog page")))?;
    Ok(respond(&entry, lookup, Domain::Catalog.ttl(), &headers))
}

pub(super) async fn course(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let _guard = state.admission.enter(Class::Course).await?;
    let slug = Slug::parse(&slug)?;
    let (entry, lookup) = service::course(&state, &slug)
        .await
        .map_err(|e| ApiError::from_load(e, || format!("course {slug}")))?;
    Ok(respond(&entry, lookup, Domain::Course.ttl(), &headers))
}

pub(super) async fn search(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let _guard = state.admission.enter(Class::Search).await?;
    let query = SearchQuery::parse(raw.as_deref())?;
    let (entry, lookup) = service::search(&state, &query)
        .await
        .map_err(|e| ApiError::from_load(e, || String::from("that search")))?;
    Ok(respond(&entry, lookup, Domain::Search.ttl(), &headers))
}

pub(super) async fn video(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let _guard = state.admission.enter(Class::Video).await?;
    let id = VideoId::parse(&id)?;
    let (entry, lookup) = service::video(&state, id)
        .await
        .map_err(|e| ApiError::from_load(e, || format!("video {}", id.0)))?;
    Ok(respond(&entry, lookup, Domain::Video.ttl(), &headers))
}

/// The segment of a caller that may not choose one (a direct call while `EDGE_SECRET`
/// is set): the anonymous English feed.
const UNTRUSTED_SEGMENT: &str = "anon-en";

/// The segment: the header the edge sets, else `?segment=` for direct calls; both only
/// from the edge when its secret is configured (else the anonymous segment).
fn segment_of(
    headers: &HeaderMap,
    raw: Option<&str>,
    via: super::Via,
) -> Result<Segment, InputError> {
    if via == super::Via::Direct {
        return Segment::parse(UNTRUSTED_SEGMENT)
            .ok_or_else(|| InputError::new("segment", "the anonymous segment is not valid"));
    }
    let bad = || {
        InputError::new(
            "segment",
            "segment is <anon|free|pro>-<locale>, e.g. anon-en",
        )
    };
    if let Some(value) = headers.get(SEGMENT) {
        return value.to_str().ok().and_then(Segment::parse).ok_or_else(bad);
    }
    let pairs = query_pairs(raw)?;
    match pairs.get("segment") {
        Some(s) => Segment::parse(s).ok_or_else(bad),
        None => Err(InputError::new(
            "segment",
            format!("a segment is required: the {SEGMENT} header, or ?segment= (e.g. anon-en)"),
        )),
    }
}

pub(super) async fn feed(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let segment = segment_of(
        &headers,
        raw.as_deref(),
        super::via(&state.settings, &headers),
    )?;
    let _guard = match state.admission.enter(Class::Feed).await {
        Ok(guard) => guard,
        Err(shed) => {
            // Shed first: answer the last precomputed copy if there is one, without
            // touching the cache machinery or the store.
            return match state.last_feed(&segment.to_string()) {
                Some(entry) => {
                    let mut response =
                        respond(&entry, Lookup::Hit, Duration::from_secs(30), &headers);
                    response
                        .headers_mut()
                        .insert(DEGRADED, HeaderValue::from_static("shed"));
                    Ok(response)
                }
                None => Err(shed.into()),
            };
        }
    };
    let (entry, lookup) = service::feed(&state, &segment)
        .await
        .map_err(|e| ApiError::from_load(e, || format!("a feed for segment {segment}")))?;
    Ok(respond(&entry, lookup, Domain::Feed.ttl(), &headers).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Via;

    #[test]
    fn if_none_match_uses_weak_comparison_and_lists() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(not_modified(&headers, "\"b\""));
        assert!(not_modified(&headers, "\"a\""));
        assert!(!not_modified(&headers, "\"c\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&headers, "\"z\""));
        assert!(!not_modified(&HeaderMap::new(), "\"z\""));
    }

    #[test]
    fn the_segment_header_wins_over_the_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            segment_of(&headers, Some("segment=pro-de"), Via::Unchecked)
                .unwrap()
                .to_string(),
            "pro-de"
        );
        headers.insert(SEGMENT, HeaderValue::from_static("free-en"));
        assert_eq!(
            segment_of(&headers, Some("segment=pro-de"), Via::Unchecked)
                .unwrap()
                .to_string(),
            "free-en"
        );
        headers.insert(SEGMENT, HeaderValue::from_static("gold-en"));
        assert_eq!(
            segment_of(&headers, None, Via::Unchecked)
                .unwrap_err()
                .field,
            "segment"
        );
        assert_eq!(
            segment_of(&HeaderMap::new(), None, Via::Unchecked)
                .unwrap_err()
                .field,
            "segment"
        );
        // With the edge's secret configured, a direct caller chooses no segment.
        headers.insert(SEGMENT, HeaderValue::from_static("pro-de"));
        let direct = segment_of(&headers, Some("segment=pro-de"), Via::Direct).unwrap();
        assert_eq!(direct.to_string(), UNTRUSTED_SEGMENT);
        let edge = segment_of(&headers, None, Via::Edge).unwrap();
        assert_eq!(edge.to_string(), "pro-de");
    }
}
