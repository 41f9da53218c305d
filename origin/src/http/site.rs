//! The demo site's routes: pages rendered from the same cached read paths as the APIs
//! (so a purge of a course's tag reaches its page too), and the sign-in/sign-out forms.
//! Pages never look at the visitor: the edge caches them per segment and fills the
//! per-user slots itself. Forms are CSRF-safe twice over: the cookie is `SameSite=Lax`,
//! and a post from another site (by `Sec-Fetch-Site`, or an `Origin` that is not the
//! host the visitor used) is refused before anything happens.

use std::net::SocketAddr;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use maud::Markup;
use protocol::headers::{CACHE_TAG, EXPERIMENTS, SEGMENT};
use protocol::page::FORWARDED_HOST;
use protocol::{CacheTag, Locale, Segment};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::sessions::{
    cookie, now, private, revoke_at_edge, session_token, sign_in as authenticate,
};
use super::{ApiError, Via};
use crate::AppState;
use crate::admission::Class;
use crate::cache::Entry;
use crate::domain::input::query_pairs;
use crate::domain::{CatalogPage, CatalogQuery, CourseDetail, SearchQuery, Slug, Video, VideoId};
use crate::{service, site};

/// How long a browser may keep a page (the edge keeps it per the policy table).
const PAGE_CACHE_CONTROL: &str = "public, max-age=0, must-revalidate";

/// What a page is rendered for: the segment's locale and the arms the edge assigned,
/// both only when the edge vouches for them.
fn context_of(headers: &HeaderMap, via: Via) -> site::Context<'_> {
    let experiments = match via {
        Via::Direct => None,
        Via::Edge | Via::Unchecked => headers
            .get(EXPERIMENTS)
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                v.len() <= 512
                    && v.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'-' | b'=' | b',' | b' ')
                    })
            }),
    };
    site::Context {
        locale: locale_of(headers, via),
        experiments,
    }
}

/// The page's locale: the segment the edge vouches for, else English.
fn locale_of(headers: &HeaderMap, via: Via) -> Locale {
    let english = Locale::parse("en").unwrap_or_else(|| unreachable!("\"en\" is a locale"));
    if via == Via::Direct {
        return english;
    }
    headers
        .get(SEGMENT)
        .and_then(|v| v.to_str().ok())
        .and_then(Segment::parse)
        .map_or(english, |s| s.locale)
}

/// A rendered page with a content ETag, its cache tags, and 304 on a match.
fn page(markup: Markup, status: StatusCode, tags: &[CacheTag], request: &HeaderMap) -> Response {
    let body = markup.into_string();
    let digest = Sha256::digest(body.as_bytes());
    let etag = format!("\"p-{}\"", hex16(&digest));
    let matched = super::api::not_modified(request, &etag);
    let mut response = if matched && status == StatusCode::OK {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (status, body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(PAGE_CACHE_CONTROL),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if !tags.is_empty()
        && let Ok(v) = HeaderValue::from_str(&CacheTag::header_value(tags))
    {
        headers.insert(CACHE_TAG, v);
    }
    response
}

fn hex16(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn parsed<T: serde::de::DeserializeOwned>(entry: &Entry) -> Result<T, ApiError> {
    serde_json::from_slice(&entry.body)
        .map_err(|e| ApiError::Internal(format!("a cached entry does not parse: {e}")))
}

fn not_found_page(cx: site::Context<'_>, what: &str, request: &HeaderMap) -> Response {
    page(
        site::not_found(cx, what),
        StatusCode::NOT_FOUND,
        &[],
        request,
    )
}

/// `GET /`: the catalog (`?page=`), or search results (`?q=`).
pub(super) async fn home(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cx = context_of(&headers, super::via(&state.settings, &headers));
    let pairs = query_pairs(raw.as_deref())?;
    if let Some(q) = pairs.get("q").map(|q| q.trim()).filter(|q| !q.is_empty()) {
        let _guard = state.admission.enter(Class::Search).await?;
        let query = SearchQuery::parse(raw.as_deref())?;
        let (entry, _) = service::search(&state, &query)
            .await
            .map_err(|e| ApiError::from_load(e, || String::from("that search")))?;
        let results: crate::domain::SearchResults = parsed(&entry)?;
        let found = CatalogPage {
            total: results.items.len() as i64,
            items: results.items,
            page: 1,
            per_page: query.limit,
            has_more: false,
        };
        let markup = site::catalog(cx, &found, Some(q));
        return Ok(page(markup, StatusCode::OK, &[CacheTag::Search], &headers));
    }
    let _guard = state.admission.enter(Class::Catalog).await?;
    // The page's locale is the segment's, whatever the query says.
    let query = CatalogQuery {
        locale: Some(cx.locale),
        ..CatalogQuery::parse(raw.as_deref())?
    };
    let (entry, _) = service::catalog(&state, &query)
        .await
        .map_err(|e| ApiError::from_load(e, || String::from("that catalog page")))?;
    let catalog: CatalogPage = parsed(&entry)?;
    let markup = site::catalog(cx, &catalog, None);
    Ok(page(markup, StatusCode::OK, &[CacheTag::Catalog], &headers))
}

async fn course_detail(state: &AppState, slug: &Slug) -> Result<Option<CourseDetail>, ApiError> {
    match service::course(state, slug).await {
        Ok((entry, _)) => Ok(Some(parsed(&entry)?)),
        Err(e) if matches!(*e, crate::cache::LoadError::NotFound) => Ok(None),
        Err(e) => Err(ApiError::from_load(e, || format!("course {slug}"))),
    }
}

/// `GET /courses/{slug}`.
pub(super) async fn course(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cx = context_of(&headers, super::via(&state.settings, &headers));
    let _guard = state.admission.enter(Class::Course).await?;
    let Ok(slug) = Slug::parse(&slug) else {
        return Ok(not_found_page(cx, "That course", &headers));
    };
    let Some(detail) = course_detail(&state, &slug).await? else {
        return Ok(not_found_page(cx, "That course", &headers));
    };
    let tags = [CacheTag::Course(detail.course.id)];
    Ok(page(
        site::course(cx, &detail),
        StatusCode::OK,
        &tags,
        &headers,
    ))
}

/// `GET /learn/{slug}/{position}`.
pub(super) async fn lesson(
    State(state): State<AppState>,
    Path((slug, position)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cx = context_of(&headers, super::via(&state.settings, &headers));
    let _guard = state.admission.enter(Class::Course).await?;
    let (Ok(slug), Ok(position)) = (Slug::parse(&slug), position.parse::<i64>()) else {
        return Ok(not_found_page(cx, "That lesson", &headers));
    };
    let Some(detail) = course_detail(&state, &slug).await? else {
        return Ok(not_found_page(cx, "That course", &headers));
    };
    let Some(lesson) = detail.lessons.iter().find(|l| l.position == position) else {
        return Ok(not_found_page(cx, "That lesson", &headers));
    };
    let mut tags = vec![CacheTag::Course(detail.course.id)];
    let video: Option<Video> = match lesson.video_id {
        Some(id) => {
            tags.push(CacheTag::Video(id));
            match service::video(&state, VideoId(id)).await {
                Ok((entry, _)) => Some(parsed(&entry)?),
                Err(e) if matches!(*e, crate::cache::LoadError::NotFound) => None,
                Err(e) => return Err(ApiError::from_load(e, || format!("video {id}"))),
            }
        }
        None => None,
    };
    Ok(page(
        site::lesson(cx, &detail, lesson, video.as_ref()),
        StatusCode::OK,
        &tags,
        &headers,
    ))
}

/// `GET /signin?next=`: the form (never cached: it is the same for everyone, but a
/// sign-in page served stale after a deploy is not worth the bytes).
pub(super) async fn sign_in_form(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cx = context_of(&headers, super::via(&state.settings, &headers));
    let pairs = query_pairs(raw.as_deref())?;
    let next = site::local_next(pairs.get("next").map(String::as_str));
    let markup = site::sign_in(cx, &next, None);
    Ok(private(page(
        markup,
        StatusCode::OK,
        &[],
        &HeaderMap::new(),
    )))
}

#[derive(Debug, Deserialize)]
pub(super) struct SignInForm {
    email: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /signin` (a form): 303 to `next` with the session cookie, or the form again
/// with what went wrong.
pub(super) async fn sign_in(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let via = super::via(&state.settings, &headers);
    same_site_post(&headers, via).map_err(ApiError::CrossSite)?;
    let cx = context_of(&headers, via);
    let Form(form) = form.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge {
            limit: super::MAX_BODY_BYTES,
        },
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::BadRequest {
            field: "content-type",
            message: String::from("send the form as application/x-www-form-urlencoded"),
        },
        _ => ApiError::BadRequest {
            field: "body",
            message: format!("send the sign-in form (email, password, next): {e}"),
        },
    })?;
    let next = site::local_next(form.next.as_deref());
    match authenticate(&state, peer, &headers, &form.email, &form.password).await {
        Ok((_session, token)) => {
            let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, next)]).into_response();
            if let Some(cookie) = cookie(&token, state.sessions.ttl().as_secs()) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            Ok(private(response))
        }
        Err(e @ (ApiError::Internal(_) | ApiError::Shed(_) | ApiError::NotReady(_))) => Err(e),
        Err(e) => {
            let why = match &e {
                ApiError::Unauthorized(_) => String::from("Wrong email or password."),
                other => other.to_string(),
            };
            let markup = site::sign_in(cx, &next, Some(&why));
            Ok(private(page(markup, e.status(), &[], &HeaderMap::new())))
        }
    }
}

/// `POST /signout`: ends the session (the edge stops honouring the cookie within the
/// purge bound) and clears the cookie; 303 to the catalog either way.
pub(super) async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let via = super::via(&state.settings, &headers);
    same_site_post(&headers, via).map_err(ApiError::CrossSite)?;
    if let Some(token) = session_token(&headers) {
        let _guard = state.admission.enter(Class::Session).await?;
        match state.sessions.logout(&*state.store, &token, now()).await {
            Ok(claims) => revoke_at_edge(&state, &claims).await?,
            Err(crate::sessions::SessionError::Unauthenticated(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Some(cookie) = cookie("", 0) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(private(response))
}

/// The origin check of a form post. Browsers send `Sec-Fetch-Site` and `Origin` with
/// every POST; a post from another site is refused. Requests without either (curl, a
/// server) cannot carry a victim's cookies and pass. The expected host is the one the
/// visitor used: the edge's `x-forwarded-host` when the edge vouches for it, else `Host`.
pub(crate) fn same_site_post(headers: &HeaderMap, via: Via) -> Result<(), String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Err(format!(
            "this form only accepts posts from its own pages (Sec-Fetch-Site: {site})"
        ));
    }
    let Some(origin) = get("origin") else {
        return Ok(());
    };
    let expected = match via {
        Via::Direct => get("host"),
        Via::Edge | Via::Unchecked => get(FORWARDED_HOST).or_else(|| get("host")),
    };
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, expected) {
        (Some(host), Some(expected)) if host.eq_ignore_ascii_case(expected) => Ok(()),
        _ => Err(format!(
            "this form only accepts posts from its own pages (Origin: {})",
            origin.chars().take(100).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn form_posts_from_another_site_are_refused() {
        let own = [
            ("host", "127.0.0.1:8788"),
            ("x-forwarded-host", "shop.example"),
        ];
        for (extra, via, ok) in [
            (vec![], Via::Edge, true),
            (vec![("origin", "https://shop.example")], Via::Edge, true),
            (vec![("origin", "https://SHOP.example")], Via::Edge, true),
            (vec![("sec-fetch-site", "same-origin")], Via::Edge, true),
            (vec![("origin", "https://evil.example")], Via::Edge, false),
            (vec![("origin", "null")], Via::Edge, false),
            (vec![("sec-fetch-site", "cross-site")], Via::Edge, false),
            (vec![("sec-fetch-site", "same-site")], Via::Edge, false),
            // A direct caller cannot pick the expected host with x-forwarded-host.
            (vec![("origin", "https://shop.example")], Via::Direct, false),
            (vec![("origin", "http://127.0.0.1:8788")], Via::Direct, true),
        ] {
            let mut h = headers(&own);
            for (k, v) in &extra {
                h.insert(*k, HeaderValue::from_static(v));
            }
            assert_eq!(same_site_post(&h, via).is_ok(), ok, "{extra:?} {via:?}");
        }
    }

    #[test]
    fn the_locale_comes_from_the_edges_segment_only() {
        let h = headers(&[("x-course-segment", "pro-de")]);
        assert_eq!(locale_of(&h, Via::Edge).as_str(), "de");
        assert_eq!(locale_of(&h, Via::Direct).as_str(), "en");
        assert_eq!(locale_of(&HeaderMap::new(), Via::Edge).as_str(), "en");
    }
}
