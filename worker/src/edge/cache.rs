//! Edge caching of origin responses with the Cache API, under the policy table.
//!
//! Entries are stored for edge lifetime + the longer stale window (the Cache API drops
//! an entry when its own `max-age` ends), with our stored-at time and lifetimes in
//! `x-ce-*` headers, so freshness is decided here:
//!
//! * fresh → `HIT`;
//! * inside stale-while-revalidate → `STALE` at once, one background refresh per key
//!   per isolate (`wait_until`);
//! * otherwise the origin is asked (conditionally when we hold validators): 304 →
//!   `REVALIDATED`; a storable answer → `MISS` and stored; 5xx, 429, a refusal or a
//!   timeout → the stored copy as `STALE` inside stale-if-error, else the error.
//!
//! Writes, `Authorization` and never-shared classes skip all of it → `BYPASS`.

use std::cell::RefCell;
use std::collections::HashMap;

use protocol::EdgeCacheStatus;
use protocol::headers::SEGMENT;
use worker::{Cache, Context, Date, Headers, Method as HttpMethod, Request, Response};

use super::Served;
use super::origin::{self, Forward, runtime};
use crate::config::Config;
use crate::error::EdgeError;
use crate::policy::freshness::{self, Freshness};
use crate::policy::headers::{browser_cache_control, storage};
use crate::policy::key::normalize_query;
use crate::policy::{
    Audience, CacheKey, ContentClass, Lifetimes, NoStoreReason, OriginDirectives, Policy, Storage,
    http_date, not_modified,
};
use crate::route::Method;
use crate::timing::ServerTiming;

const STORED_AT: &str = "x-ce-stored-at";
const LIFETIMES: &str = "x-ce-lifetimes";
const ORIGIN_CC: &str = "x-ce-origin-cache-control";
/// Why the edge did not store a response (a `NoStoreReason`).
const NO_STORE: &str = "x-edge-no-store";
/// Bodies larger than this are passed through, not stored.
const MAX_STORED_BYTES: usize = 8 * 1024 * 1024;

/// Headers never replayed from a stored or origin response.
const DROPPED: [&str; 9] = [
    "set-cookie",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "age",
    "server-timing",
    "x-edge-cache",
    "cache-control",
];

thread_local! {
    /// Keys being refreshed in the background by this isolate, with when each claim
    /// was made (a claim older than the refresh could take is treated as abandoned).
    static REFRESHING: RefCell<HashMap<String, f64>> = RefCell::new(HashMap::new());
}

/// A stored entry, read back from the Cache API.
struct Stored {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    stored_at_ms: f64,
    lifetimes: Lifetimes,
}

impl Stored {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn age_secs(&self, now_ms: f64) -> f64 {
        ((now_ms - self.stored_at_ms) / 1000.0).max(0.0)
    }

    async fn read(mut response: Response) -> Option<Self> {
        let headers = response.headers();
        let stored_at_ms = headers.get(STORED_AT).ok()??.parse::<f64>().ok()?;
        let lifetimes = headers.get(LIFETIMES).ok()??;
        let mut parts = lifetimes.split(',').map(|p| p.parse::<u32>().ok());
        let lifetimes = Lifetimes {
            edge: parts.next()??,
            swr: parts.next()??,
            sie: parts.next()??,
        };
        let kept: Vec<(String, String)> = headers
            .entries()
            .filter(|(n, _)| n != STORED_AT && n != LIFETIMES)
            .filter(|(n, _)| !DROPPED.contains(&n.as_str()))
            .collect();
        let status = response.status_code();
        let body = response.bytes().await.ok()?;
        Some(Self {
            status,
            headers: kept,
            body,
            stored_at_ms,
            lifetimes,
        })
    }

    /// Applies a 304 (RFC 9111 §4.3.4): the stored headers are updated from it, and a
    /// pass-through entry takes the lifetimes the origin now gives.
    fn revalidated(&mut self, plan: &Plan, not_modified: &Response, now: f64) {
        const UPDATED: [&str; 5] = ["etag", "last-modified", "expires", "date", "cache-tag"];
        for name in UPDATED {
            if let Ok(Some(value)) = not_modified.headers().get(name) {
                self.headers.retain(|(n, _)| n != name);
                self.headers.push((name.to_owned(), value));
            }
        }
        let directives = directives_of(not_modified);
        if let Some(cc) = &directives.raw_cache_control {
            self.headers.retain(|(n, _)| n != ORIGIN_CC);
            self.headers.push((ORIGIN_CC.to_owned(), cc.clone()));
            if let Storage::Store(lifetimes) = storage(
                plan.class,
                plan.policy,
                200,
                &directives,
                plan.request_cookie,
            ) {
                self.lifetimes = lifetimes;
            }
        }
        self.stored_at_ms = now;
    }

    /// The Cache API form: our metadata, and a `max-age` covering the stale windows.
    fn to_cache_response(&self) -> Result<Response, EdgeError> {
        let headers = Headers::new();
        for (name, value) in &self.headers {
            headers.append(name, value).map_err(runtime)?;
        }
        headers
            .set(STORED_AT, &format!("{:.0}", self.stored_at_ms))
            .map_err(runtime)?;
        let l = self.lifetimes;
        headers
            .set(LIFETIMES, &format!("{},{},{}", l.edge, l.swr, l.sie))
            .map_err(runtime)?;
        let validators = self.header("etag").is_some() || self.header("last-modified").is_some();
        headers
            .set(
                "cache-control",
                &format!("public, max-age={}", l.retention(validators).max(1)),
            )
            .map_err(runtime)?;
        Ok(Response::from_bytes(self.body.clone())
            .map_err(runtime)?
            .with_status(self.status)
            .with_headers(headers))
    }
}

/// What the request looks like to the cache.
struct Plan {
    class: ContentClass,
    policy: Policy,
    key: CacheKey,
    path_and_query: String,
    segment: Option<String>,
    head: bool,
    /// The origin sees the client's cookies (pass-through classes).
    request_cookie: bool,
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

fn origin_headers(req: &Request, plan: &Plan) -> Result<Headers, EdgeError> {
    let forward = match plan.policy.audience {
        Audience::Shared | Audience::PerSegment => Forward::Shared,
        _ => Forward::All,
    };
    let headers = origin::forward_headers(req, forward)?;
    // The client's own validators and ranges must not shape what the edge stores: a
    // 304 or 206 answered to them would be taken for the edge's own revalidation.
    for name in CLIENT_ONLY {
        headers.delete(name).map_err(runtime)?;
    }
    if let Some(segment) = &plan.segment {
        headers.set(SEGMENT, segment).map_err(runtime)?;
    }
    Ok(headers)
}

/// Request headers that concern the client's copy, not the representation.
const CLIENT_ONLY: [&str; 6] = [
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "range",
    "if-range",
];

fn directives_of(response: &Response) -> OriginDirectives {
    let h = response.headers();
    let get = |name: &str| h.get(name).ok().flatten();
    let mut d = OriginDirectives::parse(
        get("cache-control").as_deref(),
        get("vary").as_deref(),
        h.has("set-cookie").unwrap_or(false),
    );
    if let (Some(expires), Some(date)) = (get("expires"), get("date")) {
        d.expires_in = match (http_date::parse(&expires), http_date::parse(&date)) {
            (Some(e), Some(d)) => Some(e - d),
            // An unparsable Expires means "already expired" (RFC 9111 §5.3).
            _ => Some(0),
        };
    }
    d
}

/// Serves a request of a cached origin class.
pub(super) async fn serve(
    req: &Request,
    ctx: &Context,
    config: &Config,
    class: ContentClass,
    timing: &mut ServerTiming,
) -> Result<Served, EdgeError> {
    let policy = config.policy.get(class);
    let url = req.url().map_err(runtime)?;
    let method = Method::parse(req.method().as_ref());
    let path = url.path().to_owned();
    let query = normalize_query(url.query());
    let path_and_query = query
        .as_ref()
        .map_or_else(|| path.clone(), |q| format!("{path}?{q}"));
    let segment = (policy.audience == Audience::PerSegment).then(|| segment_of(req, config));
    let host = config.canonical_host.clone().unwrap_or_else(|| {
        let host = url.host_str().unwrap_or("edge");
        url.port()
            .map_or_else(|| host.to_owned(), |p| format!("{host}:{p}"))
    });
    let plan = Plan {
        class,
        policy,
        key: CacheKey::new(&host, &path, url.query(), segment.as_deref()),
        path_and_query,
        segment,
        head: method == Method::Head,
        request_cookie: matches!(policy.audience, Audience::Origin)
            && req.headers().has("cookie").unwrap_or(false),
    };

    let bypass = if !method.is_read() {
        Some(NoStoreReason::Method)
    } else if req.headers().has("authorization").unwrap_or(false) {
        Some(NoStoreReason::Authorization)
    } else if matches!(policy.audience, Audience::Nobody | Audience::Private) {
        Some(NoStoreReason::ClassPolicy)
    } else {
        None
    };
    if let Some(reason) = bypass {
        return bypass_to_origin(req, config, &plan, reason, timing).await;
    }

    let cache = Cache::default();
    let now = Date::now().as_millis() as f64;
    let stored = match cache.get(plan.key.as_str(), true).await {
        Ok(Some(response)) => Stored::read(response).await,
        Ok(None) => None,
        Err(e) => {
            worker::console_warn!("cache read failed for {}: {e}", plan.key.as_str());
            None
        }
    };
    if let Some(stored) = &stored {
        let age = stored.age_secs(now);
        match freshness::evaluate(age, stored.lifetimes) {
            Freshness::Fresh => {
                return respond_stored(req, &plan, stored, age, EdgeCacheStatus::Hit);
            }
            Freshness::StaleRevalidate => {
                spawn_refresh(req, ctx, config, &plan, stored)?;
                return respond_stored(req, &plan, stored, age, EdgeCacheStatus::Stale);
            }
            Freshness::StaleIfError | Freshness::Expired => {}
        }
    }

    let headers = origin_headers(req, &plan)?;
    if let Some(stored) = &stored {
        add_validators(&headers, stored)?;
    }
    let fetched = origin::fetch(
        config,
        HttpMethod::Get,
        &plan.path_and_query,
        headers,
        None,
        timing,
    )
    .await;
    match fetched {
        Ok(response) if response.status_code() == 304 && stored.is_some() => {
            let Some(mut stored) = stored else {
                unreachable!("checked above")
            };
            stored.revalidated(&plan, &response, now);
            put(&cache, &plan.key, &stored).await;
            respond_stored(req, &plan, &stored, 0.0, EdgeCacheStatus::Revalidated)
        }
        Ok(response) if response.status_code() >= 500 || response.status_code() == 429 => {
            match usable_stale(stored.as_ref(), now) {
                Some(stale) => {
                    let age = stale.age_secs(now);
                    respond_stored(req, &plan, stale, age, EdgeCacheStatus::Stale)
                }
                None => respond_fresh(&cache, &plan, response, now).await,
            }
        }
        Ok(response) => respond_fresh(&cache, &plan, response, now).await,
        Err(err) => match usable_stale(stored.as_ref(), now) {
            Some(stale) => {
                worker::console_warn!("serving stale for {}: {err}", plan.key.as_str());
                let age = stale.age_secs(now);
                respond_stored(req, &plan, stale, age, EdgeCacheStatus::Stale)
            }
            None => Err(err),
        },
    }
}

/// The stored copy, if it may stand in for a failed origin.
fn usable_stale(stored: Option<&Stored>, now: f64) -> Option<&Stored> {
    stored.filter(|s| freshness::usable_on_error(s.age_secs(now), s.lifetimes))
}

fn add_validators(headers: &Headers, stored: &Stored) -> Result<(), EdgeError> {
    if let Some(etag) = stored.header("etag") {
        headers.set("if-none-match", etag).map_err(runtime)?;
    } else if let Some(modified) = stored.header("last-modified") {
        headers
            .set("if-modified-since", modified)
            .map_err(runtime)?;
    }
    Ok(())
}

async fn put(cache: &Cache, key: &CacheKey, stored: &Stored) {
    let result = match stored.to_cache_response() {
        Ok(response) => cache.put(key.as_str(), response).await.map_err(runtime),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        worker::console_warn!("cache write failed for {}: {e}", key.as_str());
    }
}

/// A fresh origin answer: stored when the policy allows, and returned as a MISS.
async fn respond_fresh(
    cache: &Cache,
    plan: &Plan,
    mut response: Response,
    now: f64,
) -> Result<Served, EdgeError> {
    let status = response.status_code();
    let directives = directives_of(&response);
    let mut decision = storage(
        plan.class,
        plan.policy,
        status,
        &directives,
        plan.request_cookie,
    );
    let too_big = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|l| l.parse::<usize>().ok())
        .is_none_or(|l| l > MAX_STORED_BYTES);
    let headers: Vec<(String, String)> = response
        .headers()
        .entries()
        .filter(|(n, _)| !DROPPED.contains(&n.as_str()))
        .collect();
    if let Storage::Store(lifetimes) = decision
        && !too_big
    {
        let body = response.bytes().await.map_err(runtime)?;
        let mut stored_headers = headers;
        if let Some(cc) = &directives.raw_cache_control {
            stored_headers.push((ORIGIN_CC.to_owned(), cc.clone()));
        }
        let stored = Stored {
            status,
            headers: stored_headers,
            body,
            stored_at_ms: now,
            lifetimes,
        };
        put(cache, &plan.key, &stored).await;
        let mut served = respond_stored_inner(plan, &stored, 0.0, EdgeCacheStatus::Miss, None)?;
        served
            .response
            .headers_mut()
            .delete("age")
            .map_err(runtime)?;
        return Ok(served);
    }
    if too_big && matches!(decision, Storage::Store(_)) {
        // No Content-Length, or too large to buffer: streamed through, not stored.
        decision = Storage::NoStore(NoStoreReason::Size);
    }
    let out = Headers::new();
    for (name, value) in &headers {
        out.append(name, value).map_err(runtime)?;
    }
    // Not stored, so the origin's cookies reach their one viewer.
    for cookie in response.headers().get_all("set-cookie").unwrap_or_default() {
        out.append("set-cookie", &cookie).map_err(runtime)?;
    }
    apply_browser_headers(&out, plan, status, &directives, None)?;
    if let Storage::NoStore(reason) = decision {
        out.set(NO_STORE, reason.as_str()).map_err(runtime)?;
    }
    rebuilt(response, status, out, EdgeCacheStatus::Miss)
}

fn apply_browser_headers(
    headers: &Headers,
    plan: &Plan,
    status: u16,
    directives: &OriginDirectives,
    lifetimes: Option<Lifetimes>,
) -> Result<(), EdgeError> {
    match browser_cache_control(plan.policy, status, directives) {
        Some(cc) => headers.set("cache-control", &cc).map_err(runtime)?,
        None => headers.delete("cache-control").map_err(runtime)?,
    }
    if let Some(l) = lifetimes {
        headers
            .set("cdn-cache-control", &l.cdn_cache_control())
            .map_err(runtime)?;
    }
    Ok(())
}

fn respond_stored(
    req: &Request,
    plan: &Plan,
    stored: &Stored,
    age: f64,
    status: EdgeCacheStatus,
) -> Result<Served, EdgeError> {
    let conditional = (
        req.headers().get("if-none-match").ok().flatten(),
        req.headers().get("if-modified-since").ok().flatten(),
    );
    respond_stored_inner(plan, stored, age, status, Some(conditional))
}

fn respond_stored_inner(
    plan: &Plan,
    stored: &Stored,
    age: f64,
    cache_status: EdgeCacheStatus,
    conditional: Option<(Option<String>, Option<String>)>,
) -> Result<Served, EdgeError> {
    let headers = Headers::new();
    for (name, value) in &stored.headers {
        if name != ORIGIN_CC {
            headers.append(name, value).map_err(runtime)?;
        }
    }
    let directives = OriginDirectives::parse(stored.header(ORIGIN_CC), None, false);
    apply_browser_headers(
        &headers,
        plan,
        stored.status,
        &directives,
        Some(stored.lifetimes),
    )?;
    headers
        .set("age", &format!("{:.0}", age.floor()))
        .map_err(runtime)?;
    let not_modified_now = conditional.is_some_and(|(inm, ims)| {
        stored.status == 200
            && not_modified(
                inm.as_deref(),
                ims.as_deref(),
                stored.header("etag"),
                stored.header("last-modified"),
            )
    });
    let response = if not_modified_now {
        headers.delete("content-type").map_err(runtime)?;
        Response::empty()
            .map_err(runtime)?
            .with_status(304)
            .with_headers(headers)
    } else if plan.head {
        Response::empty()
            .map_err(runtime)?
            .with_status(stored.status)
            .with_headers(headers)
    } else {
        Response::from_bytes(stored.body.clone())
            .map_err(runtime)?
            .with_status(stored.status)
            .with_headers(headers)
    };
    Ok(Served {
        response,
        cache: cache_status,
    })
}

/// Writes, credentials and never-shared classes go to the origin untouched by the cache.
async fn bypass_to_origin(
    req: &Request,
    config: &Config,
    plan: &Plan,
    reason: NoStoreReason,
    timing: &mut ServerTiming,
) -> Result<Served, EdgeError> {
    let headers = origin::forward_headers(req, Forward::All)?;
    if reason == NoStoreReason::Authorization
        && matches!(
            plan.policy.audience,
            Audience::Shared | Audience::PerSegment
        )
    {
        // Credentials go through, cookies still do not (shared classes).
        headers.delete("cookie").map_err(runtime)?;
    }
    if let Some(segment) = &plan.segment {
        headers.set(SEGMENT, segment).map_err(runtime)?;
    }
    let body = if Method::parse(req.method().as_ref()).is_read() {
        None
    } else {
        origin::body_of(req)?
    };
    let response = origin::fetch(
        config,
        req.method(),
        &plan.path_and_query,
        headers,
        body,
        timing,
    )
    .await?;
    let status = response.status_code();
    let directives = directives_of(&response);
    let out = Headers::new();
    for (name, value) in response.headers().entries() {
        if !DROPPED.contains(&name.as_str()) || name == "set-cookie" {
            out.append(&name, &value).map_err(runtime)?;
        }
    }
    // Never a looser browser policy than the class allows; sessions stay private.
    let policy_cc = browser_cache_control(plan.policy, status, &directives);
    let cc = match (reason, policy_cc) {
        (NoStoreReason::Authorization, _) => Some(String::from("private, no-store")),
        (_, cc) => cc,
    };
    match cc {
        Some(cc) => out.set("cache-control", &cc).map_err(runtime)?,
        None => {
            if let Some(raw) = &directives.raw_cache_control {
                out.set("cache-control", raw).map_err(runtime)?;
            }
        }
    }
    out.set(NO_STORE, reason.as_str()).map_err(runtime)?;
    rebuilt(response, status, out, EdgeCacheStatus::Bypass)
}

/// The origin's body streamed through under our own headers.
fn rebuilt(
    response: Response,
    status: u16,
    headers: Headers,
    cache: EdgeCacheStatus,
) -> Result<Served, EdgeError> {
    let (_, body) = response.into_parts();
    Ok(Served {
        response: Response::from_body(body)
            .map_err(runtime)?
            .with_status(status)
            .with_headers(headers),
        cache,
    })
}

/// One background refresh per key per isolate; the lock is released however it ends.
fn spawn_refresh(
    req: &Request,
    ctx: &Context,
    config: &Config,
    plan: &Plan,
    stored: &Stored,
) -> Result<(), EdgeError> {
    let key = plan.key.as_str().to_owned();
    let headers = origin_headers(req, plan)?;
    add_validators(&headers, stored)?;
    let now = Date::now().as_millis() as f64;
    let abandoned_after = config.origin_timeout.as_millis() as f64 * 2.0 + 5_000.0;
    let claimed = REFRESHING.with(|claims| {
        let mut claims = claims.borrow_mut();
        match claims.get(&key) {
            Some(at) if now - at < abandoned_after => false,
            _ => {
                claims.insert(key.clone(), now);
                true
            }
        }
    });
    if !claimed {
        return Ok(());
    }
    let config = config.clone();
    let plan = Plan {
        class: plan.class,
        policy: plan.policy,
        key: plan.key.clone(),
        path_and_query: plan.path_and_query.clone(),
        segment: plan.segment.clone(),
        head: false,
        request_cookie: plan.request_cookie,
    };
    let stored = Stored {
        status: stored.status,
        headers: stored.headers.clone(),
        body: stored.body.clone(),
        stored_at_ms: stored.stored_at_ms,
        lifetimes: stored.lifetimes,
    };
    ctx.wait_until(async move {
        let mut timing = ServerTiming::new();
        let cache = Cache::default();
        let fetched = origin::fetch(
            &config,
            HttpMethod::Get,
            &plan.path_and_query,
            headers,
            None,
            &mut timing,
        )
        .await;
        let now = Date::now().as_millis() as f64;
        match fetched {
            Ok(response) if response.status_code() == 304 => {
                let mut stored = stored;
                stored.revalidated(&plan, &response, now);
                put(&cache, &plan.key, &stored).await;
            }
            Ok(response) if response.status_code() < 500 && response.status_code() != 429 => {
                if let Err(e) = respond_fresh(&cache, &plan, response, now).await {
                    worker::console_warn!("background refresh of {key} failed: {e}");
                }
            }
            Ok(response) => {
                worker::console_warn!(
                    "background refresh of {key}: origin answered {}",
                    response.status_code()
                );
            }
            Err(e) => worker::console_warn!("background refresh of {key} failed: {e}"),
        }
        REFRESHING.with(|claims| claims.borrow_mut().remove(&key));
    });
    Ok(())
}
