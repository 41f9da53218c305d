//! Requests to the origin: which client headers are forwarded (cookies are stripped
//! for shared classes so signed-in visitors share entries), and the fetch itself under
//! a deadline. A refused connection and a timeout both become [`EdgeError`]s, which
//! callers answer — or, for cached classes, cover with a stale copy. [`serve`] is the
//! entry for origin classes: it parses the request into a cache `Plan` and an
//! [`OriginSource`], and hands both to `edge::cache`.

use std::time::Duration;

use futures_util::future::{Either, select};
use std::cell::RefCell;
use std::rc::Rc;

use futures_util::StreamExt;
use protocol::headers::{CLIENT_IP, EXPERIMENTS, SEGMENT};
use protocol::page::FORWARDED_HOST;
use protocol::{Claims, Segment};
use worker::{
    AbortController, Context, Date, Delay, Fetch, Headers, Method, Request, RequestInit,
    RequestRedirect, Response,
};

use super::cache::{self, Plan, Source};
use super::{Served, now_ms};
use crate::canary::{Arm, Outcome, Ticket, Why};
use crate::config::Config;
use crate::error::EdgeError;
use crate::personalize::{self, PageRewriter, Viewer};
use crate::policy::forward;
use crate::policy::key::normalize_query;
use crate::policy::purge::SessionStanding;
use crate::policy::stored::Entry;
use crate::policy::{Audience, CacheKey, ContentClass};
use crate::segment::{Session, segment_of, session_of};
use crate::timing::ServerTiming;
use crate::visitor::VisitorId;

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
    /// Which origin: the stable one or the canary (with the breaker epoch it was
    /// admitted in).
    ticket: Ticket,
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
            self.ticket,
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

/// Who is asking, as far as the edge can vouch: the verified, unrevoked session claims
/// (the client's own `x-course-segment` is never trusted, nor forwarded), the segment
/// they give, and the stable visitor id.
struct Visit {
    claims: Option<Claims>,
    segment: Segment,
    visitor: VisitorId,
    new_visitor: bool,
}

/// 16 bytes for a new visitor id. `Math.random` suffices: the id buckets experiments and
/// authorizes nothing.
fn fresh_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    for chunk in bytes.chunks_mut(4) {
        let word = (worker::js_sys::Math::random() * 4_294_967_296.0) as u32;
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    bytes
}

/// Reads the visit: the visitor id, and the session cookie verified (with the ledger
/// asked whether it was signed out). A refused cookie is logged by its reason only, never the
/// token, and the visitor is served as anonymous.
async fn visit_of(req: &Request, config: &Config, timing: &mut ServerTiming) -> Visit {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let cookie = header("cookie");
    let (visitor, new_visitor) = crate::visitor::identify(cookie.as_deref(), fresh_bytes);
    let mut claims = None;
    let now_secs = (Date::now().as_millis() / 1000) as i64;
    match session_of(cookie.as_deref(), config.session_keys.as_deref(), now_secs) {
        Session::Verified(verified) => {
            let started = now_ms();
            let standing = super::purge::session_standing(&verified.sid).await;
            // What the revocation check cost (about 0 when the isolate's memo answered).
            timing.add("session", now_ms() - started);
            match standing {
                SessionStanding::Live => claims = Some(verified),
                SessionStanding::Revoked => {
                    worker::console_log!("session cookie refused: revoked")
                }
                SessionStanding::Unconfirmed => {
                    worker::console_warn!("session cookie refused: revocation_unconfirmed")
                }
            }
        }
        Session::Refused(reason) => worker::console_log!("session cookie refused: {reason}"),
        Session::None => {}
    }
    let segment = segment_of(claims.as_ref(), header("accept-language").as_deref());
    Visit {
        claims,
        segment,
        visitor,
        new_visitor,
    }
}

/// Fills a page's per-user slots and responsive images while it streams (the decisions
/// are `personalize`'s); anything else passes as it is.
fn personalized(
    served: Served,
    class: ContentClass,
    visit: &Visit,
    config: &Config,
    head: bool,
) -> Result<Served, EdgeError> {
    if !personalize::page_class(class) {
        return Ok(served);
    }
    let Served { response, cache } = served;
    let status = response.status_code();
    let content_type = response.headers().get("content-type").ok().flatten();
    let cache_control = response.headers().get("cache-control").ok().flatten();
    let mut response = super::respond::rebuilt(
        response,
        |name| !personalize::DROPPED_HEADERS.contains(&name),
        |headers| {
            headers.set(
                "cache-control",
                personalize::page_cache_control(cache_control.as_deref()),
            )?;
            // Browsers send the client hints `width=auto` and
            // `slow-connection-quality` read only to origins that asked on a page.
            headers.set("accept-ch", crate::image::hints::ACCEPT_CH)
        },
    )
    .map_err(runtime)?;
    if !personalize::rewrites(class, status, content_type.as_deref(), head) {
        return Ok(Served { response, cache });
    }
    let headers = response.headers().clone();
    let viewer = Viewer {
        audience: visit.segment.audience,
        name: visit.claims.as_ref().map(|c| c.name.clone()),
    };
    let rewriter = Rc::new(RefCell::new(Some(PageRewriter::new(
        &viewer,
        &config.responsive,
    ))));
    let feeding = rewriter.clone();
    let body = response.stream().map_err(runtime)?.map(move |chunk| {
        chunk.map(|bytes| match feeding.borrow_mut().as_mut() {
            Some(rewriter) => rewriter.push(&bytes),
            None => bytes,
        })
    });
    let tail = futures_util::stream::once(async move {
        let finished = rewriter.borrow_mut().take().map(PageRewriter::finish);
        let (bytes, failed) = finished.unwrap_or_default();
        if let Some(failed) = failed {
            worker::console_error!("page rewrite failed, the rest went out as is: {}", failed.0);
        }
        Ok::<Vec<u8>, worker::Error>(bytes)
    });
    let response = Response::from_stream(body.chain(tail))
        .map_err(runtime)?
        .with_status(status)
        .with_headers(headers);
    Ok(Served { response, cache })
}

/// Serves a request of an origin class (API, pages, pass-through) through the cache,
/// from the origin arm the visitor is routed to (set in `routed` as soon as it is known,
/// so that even an error answer names it).
pub(super) async fn serve(
    req: &Request,
    ctx: &Context,
    config: &Config,
    class: ContentClass,
    timing: &mut ServerTiming,
    routed: &mut Option<(Arm, Why)>,
) -> Result<Served, EdgeError> {
    let policy = config.policy.get(class);
    let url = req.url().map_err(runtime)?;
    let ask = personalize::ask_for(class, super::ask_of(req));
    let path = url.path().to_owned();
    let query = normalize_query(url.query(), class.query());
    let path_and_query = query
        .as_ref()
        .map_or_else(|| path.clone(), |q| format!("{path}?{q}"));
    let per_segment = policy.audience == Audience::PerSegment;
    // Only classes that are keyed per segment or personalized read the visitor: a shared
    // class's hit stays as cheap as it was.
    let visit = if crate::visitor::sets_cookie(class) {
        Some(visit_of(req, config, timing).await)
    } else {
        None
    };
    let arms = match (&visit, per_segment) {
        (Some(visit), true) => crate::visitor::arms_for(&config.experiments, class, &visit.visitor),
        _ => Vec::new(),
    };
    let segment = match (&visit, per_segment) {
        (Some(visit), true) => Some(visit.segment.to_string()),
        _ => None,
    };
    let segment_key = segment
        .as_deref()
        .map(|s| crate::visitor::segment_key(s, &arms));
    let public_host = {
        let host = url.host_str().unwrap_or("edge");
        url.port()
            .map_or_else(|| host.to_owned(), |p| format!("{host}:{p}"))
    };
    let host = config
        .canonical_host
        .clone()
        .unwrap_or_else(|| public_host.clone());
    // The canary arm: by the visitor id (a shared class reads it from the cookie only,
    // and sets none: without one, the stable arm).
    let (ticket, why) = match &visit {
        Some(visit) => super::canary::route(config, Some(&visit.visitor)),
        None => {
            let cookie = req.headers().get("cookie").ok().flatten();
            super::canary::route(config, crate::visitor::existing(cookie.as_deref()).as_ref())
        }
    };
    let arm = ticket.arm;
    *routed = Some((arm, why));
    timing.note("arm", &format!("{}:{}", arm.as_str(), why.as_str()));
    let key = CacheKey::new(&host, &path, query.as_deref(), segment_key.as_deref()).for_arm(arm);
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
    if let Some(experiments) = crate::visitor::experiments_header(&arms) {
        headers.push((EXPERIMENTS.to_owned(), experiments));
    }
    // The host the visitor used, for the origin check of the site's form posts.
    headers.push((FORWARDED_HOST.to_owned(), public_host.clone()));
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
        ticket,
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
    let head = Method::Head == req.method();
    let served = cache::serve(ctx, &plan, &source, timing).await?;
    let Some(visit) = visit else {
        return Ok(served);
    };
    let mut served = personalized(served, class, &visit, config, head)?;
    if visit.new_visitor {
        served.response = super::respond::with_appended(
            served.response,
            "set-cookie",
            &visit.visitor.set_cookie(),
        )
        .map_err(runtime)?;
    }
    Ok(served)
}

pub(super) fn runtime(e: worker::Error) -> EdgeError {
    EdgeError::Runtime(e.to_string())
}

/// Sends one request to the ticket's origin and waits at most the configured timeout;
/// the outcome goes to the isolate's breaker (which counts only canary tickets).
pub(super) async fn fetch(
    config: &Config,
    ticket: Ticket,
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
    let outbound = Request::new_with_init(&config.origin(ticket.arm, path_and_query), &init)
        .map_err(|e| unreachable(format!("building the origin request: {e}")))?;

    super::canary::started(config, ticket);
    let controller = AbortController::default();
    let signal = controller.signal();
    let started = now_ms();
    let fetch = Fetch::Request(outbound);
    let send = fetch.send_with_signal(&signal);
    let deadline = Delay::from(config.origin_timeout);
    let outcome = select(Box::pin(send), deadline).await;
    timing.add("origin", now_ms() - started);
    super::canary::record(
        config,
        ticket,
        match &outcome {
            Either::Left((Ok(response), _)) => Outcome::of_status(response.status_code()),
            _ => Outcome::Failed,
        },
    );
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
