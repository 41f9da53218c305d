//! Requests to the origin: which client headers are forwarded (cookies are stripped
//! for shared classes so signed-in visitors share entries), and the fetch itself under
//! a deadline. A refused connection and a timeout both become [`EdgeError`]s, which
//! callers answer — or, for cached classes, cover with a stale copy. [`serve`] is the
//! entry for origin classes: it parses the request into a cache `Plan` and an
//! [`OriginSource`], and hands both to `edge::cache`.

use std::time::Duration;

use futures_util::future::{Either, select};
use protocol::headers::{CLIENT_IP, SEGMENT};
use worker::{
    AbortController, Context, Date, Delay, Fetch, Headers, Method, Request, RequestInit,
    RequestRedirect, Response,
};

use super::cache::{self, Plan, Source};
use super::{Served, now_ms};
use crate::config::Config;
use crate::error::EdgeError;
use crate::policy::forward;
use crate::policy::key::normalize_query;
use crate::policy::stored::Entry;
use crate::policy::{Audience, CacheKey, ContentClass};
use crate::timing::ServerTiming;

/// Largest request body forwarded to the origin (logins, forms).
pub(super) const MAX_BODY_BYTES: u64 = 64 * 1024;

/// The request headers `keep` admits (by lowercase name and the request's
/// `Connection` list), plus the client IP the edge vouches for.
pub(super) fn forward_headers(
    req: &Request,
    keep: impl Fn(&str, &[String]) -> bool,
) -> Result<Headers, EdgeError> {
    let out = Headers::new();
    let listed = crate::policy::flow::connection_listed(
        req.headers().get("connection").ok().flatten().as_deref(),
    );
    for (name, value) in req.headers().entries() {
        if keep(&name, &listed) {
            out.append(&name, &value).map_err(runtime)?;
        }
    }
    if let Some(ip) = req.headers().get("cf-connecting-ip").map_err(runtime)? {
        out.set(CLIENT_IP, &ip).map_err(runtime)?;
    }
    Ok(out)
}

/// The origin as a cache [`Source`]: a GET of the key's path and query with the
/// forwarded headers (a bypassed request keeps its method and body).
#[derive(Clone)]
pub(super) struct OriginSource {
    config: Config,
    method: Method,
    path_and_query: String,
    headers: Vec<(String, String)>,
    body: Option<worker::wasm_bindgen::JsValue>,
    request_cookie: bool,
}

impl Source for OriginSource {
    async fn fetch(
        &self,
        stored: Option<&Entry>,
        timing: &mut ServerTiming,
    ) -> Result<Response, EdgeError> {
        let headers = Headers::new();
        for (name, value) in &self.headers {
            headers.append(name, value).map_err(runtime)?;
        }
        if let Some(entry) = stored {
            if let Some(etag) = &entry.etag {
                headers.set("if-none-match", etag).map_err(runtime)?;
            } else if let Some(modified) = &entry.last_modified {
                headers
                    .set("if-modified-since", modified)
                    .map_err(runtime)?;
            }
        }
        fetch(
            &self.config,
            self.method.clone(),
            &self.path_and_query,
            headers,
            self.body.clone(),
            timing,
        )
        .await
    }

    fn request_cookie(&self) -> bool {
        self.request_cookie
    }
}

/// The viewer's segment from the verified session cookie; the client's own
/// `x-course-segment` is never trusted (and never forwarded).
fn segment_of(req: &Request, config: &Config) -> String {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let now_secs = (Date::now().as_millis() / 1000) as i64;
    crate::segment::segment_for(
        header("cookie").as_deref(),
        header("accept-language").as_deref(),
        config.session_keys.as_deref(),
        now_secs,
    )
    .to_string()
}

/// Serves a request of an origin class (API, pages, pass-through) through the cache.
pub(super) async fn serve(
    req: &Request,
    ctx: &Context,
    config: &Config,
    class: ContentClass,
    timing: &mut ServerTiming,
) -> Result<Served, EdgeError> {
    let policy = config.policy.get(class);
    let url = req.url().map_err(runtime)?;
    let ask = super::ask_of(req);
    let path = url.path().to_owned();
    let query = normalize_query(url.query(), class.query());
    let path_and_query = query
        .as_ref()
        .map_or_else(|| path.clone(), |q| format!("{path}?{q}"));
    let segment = (policy.audience == Audience::PerSegment).then(|| segment_of(req, config));
    let host = config.canonical_host.clone().unwrap_or_else(|| {
        let host = url.host_str().unwrap_or("edge");
        url.port()
            .map_or_else(|| host.to_owned(), |p| format!("{host}:{p}"))
    });
    let key = CacheKey::new(&host, &path, query.as_deref(), segment.as_deref());
    let bypassed = matches!(
        crate::policy::flow::start(policy, &ask),
        crate::policy::flow::Start::Bypass(_)
    );
    let forwarded = forward_headers(req, |name, listed| {
        forward::forwarded(policy.audience, bypassed, name, listed)
    })?;
    let mut headers: Vec<(String, String)> = forwarded.entries().collect();
    if let Some(segment) = &segment {
        headers.push((SEGMENT.to_owned(), segment.clone()));
    }
    let method = req.method();
    let body = if Method::Get == method || Method::Head == method {
        None
    } else {
        body_of(req)?
    };
    let source = OriginSource {
        config: config.clone(),
        method: if bypassed { method } else { Method::Get },
        path_and_query,
        request_cookie: policy.audience == Audience::Origin
            && headers.iter().any(|(n, _)| n == "cookie"),
        headers,
        body,
    };
    let purge_path = source.path_and_query.clone();
    let plan = Plan {
        purge_path,
        aliases: Vec::new(),
        class,
        policy,
        key: key.as_str().to_owned(),
        ask,
        extra: Vec::new(),
        follow_timeout: config.origin_timeout + Duration::from_secs(1),
        // What a stored Vary names is looked up in what the origin was sent.
        vary_headers: if policy.audience == Audience::Origin {
            source.headers.clone()
        } else {
            Vec::new()
        },
    };
    cache::serve(ctx, &plan, &source, timing).await
}

pub(super) fn runtime(e: worker::Error) -> EdgeError {
    EdgeError::Runtime(e.to_string())
}

/// Sends one request to `config.origin(path_and_query)` and waits at most the
/// configured timeout.
pub(super) async fn fetch(
    config: &Config,
    method: Method,
    path_and_query: &str,
    headers: Headers,
    body: Option<worker::wasm_bindgen::JsValue>,
    timing: &mut ServerTiming,
) -> Result<Response, EdgeError> {
    let unreachable = |detail: String| EdgeError::OriginUnreachable {
        detail,
        retry_after_secs: config.retry_after_secs,
    };
    if let Some(secret) = &config.origin_secret {
        // The origin trusts segment headers only from requests that carry it.
        headers
            .set(protocol::headers::EDGE_SECRET, secret)
            .map_err(|e| unreachable(format!("setting the edge secret: {e}")))?;
    }
    let mut init = RequestInit::new();
    // Redirects are the client's to follow: a shared cache passes a 3xx on (and stores
    // it by its own freshness), never the page it points at under this URL.
    init.with_method(method)
        .with_headers(headers)
        .with_body(body)
        .with_redirect(RequestRedirect::Manual);
    let outbound = Request::new_with_init(&config.origin(path_and_query), &init)
        .map_err(|e| unreachable(format!("building the origin request: {e}")))?;

    let controller = AbortController::default();
    let signal = controller.signal();
    let started = now_ms();
    let fetch = Fetch::Request(outbound);
    let send = fetch.send_with_signal(&signal);
    let deadline = Delay::from(config.origin_timeout);
    let outcome = select(Box::pin(send), deadline).await;
    timing.add("origin", now_ms() - started);
    match outcome {
        Either::Left((Ok(response), _)) => Ok(response),
        Either::Left((Err(e), _)) => Err(unreachable(e.to_string())),
        Either::Right(((), _)) => {
            controller.abort();
            Err(EdgeError::OriginTimeout {
                after_ms: u64::try_from(config.origin_timeout.as_millis()).unwrap_or(u64::MAX),
                retry_after_secs: config.retry_after_secs,
            })
        }
    }
}

/// The request body as a stream for the origin, refusing oversized declared bodies.
pub(super) fn body_of(req: &Request) -> Result<Option<worker::wasm_bindgen::JsValue>, EdgeError> {
    if let Ok(Some(len)) = req.headers().get("content-length")
        && len.parse::<u64>().map_or(true, |n| n > MAX_BODY_BYTES)
    {
        return Err(EdgeError::PayloadTooLarge {
            limit: MAX_BODY_BYTES as usize,
        });
    }
    Ok(req.inner().body().map(Into::into))
}
