//! The edge cache: performs what `policy::flow` decides, for every class. A class
//! brings a [`Source`] (the origin, an R2 object, the image producer) and a [`Plan`]
//! (its key, policy and the client's ask); this module asks the core "what now?",
//! does the I/O the answer names — Cache API reads and writes, one upstream trip per
//! key in flight, background refreshes — and asks again with the outcome. No HTTP
//! caching rule is decided here.
//!
//! Bodies are never buffered in WASM memory: a stored entry is served from the Cache
//! API's stream, and a new one is teed (`Response::clone`) into the Cache API while the
//! other branch streams to the client.
//!
//! Where an entry lives is [`Store`]: this location's Cache API. The Cache API is
//! per location (per colo) — an entry stored in one city is not seen in another; in
//! production, Cloudflare's tiered cache or a Workers cache binding would go here.

use std::cell::RefCell;
use std::time::Duration;

use protocol::EdgeCacheStatus;
use worker::{Cache, Context, Delay, Headers, Request, RequestInit, Response, ResponseBody};

use super::origin::runtime;
use super::{Served, now_ms};
use crate::collapse::{Flights, Joined};
use crate::error::EdgeError;
use crate::policy::flow::{
    self, Answer, Ask, Edit, OnLookup, OnUpstream, Outcome, Start, Upstream,
};
use crate::policy::key::variant_key;
use crate::policy::purge::Verdict;
use crate::policy::stored::{self, Entry, Meta};
use crate::policy::{ContentClass, Lifetimes, NoStoreReason, OriginDirectives, Policy};
use crate::timing::ServerTiming;

/// Why the edge did not store a response (a `NoStoreReason`).
pub(super) const NO_STORE: &str = "x-edge-no-store";

/// How to reach what a class serves when the cache cannot answer.
pub(super) trait Source: Clone + 'static {
    /// Goes upstream. With `stored`, asks conditionally: a 304 means the stored entry
    /// is still current. Errors are refusals and timeouts (stale-if-error covers them).
    async fn fetch(
        &self,
        stored: Option<&Entry>,
        timing: &mut ServerTiming,
    ) -> Result<Response, EdgeError>;

    /// Bytes `start..=end` of the representation `entry` describes, straight from
    /// upstream (`None`: not offered, or the representation changed). Used for a
    /// ranged miss too large to wait for the whole body to be stored.
    async fn fetch_range(
        &self,
        entry: &Entry,
        start: u64,
        end: u64,
        timing: &mut ServerTiming,
    ) -> Option<Response> {
        let _ = (entry, start, end, timing);
        None
    }

    /// Whether the origin saw the client's cookies (pass-through only).
    fn request_cookie(&self) -> bool {
        false
    }

    /// Work the last [`Source::fetch`] left for after the response (R2 writes).
    fn deferred(&self) -> Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> {
        Vec::new()
    }
}

/// A stored response as a plain representation (its metadata and stored names
/// undone), for a source that finds what it was about to make already stored.
pub(super) fn representation(response: Response) -> Result<Response, EdgeError> {
    let headers = replayed(&response);
    rebuild_from(response, &headers)
}

/// One request as the cache sees it.
#[derive(Clone)]
pub(super) struct Plan {
    pub class: ContentClass,
    pub policy: Policy,
    /// The Cache API key (a URL).
    pub key: String,
    pub ask: Ask,
    /// Headers every answer carries (safety headers, the image access mode).
    pub extra: Vec<(String, String)>,
    /// How long followers wait for a flight before going upstream themselves.
    pub follow_timeout: Duration,
    /// The client's request headers (lowercase names) a stored `Vary` may name
    /// (pass-through only; empty elsewhere).
    pub vary_headers: Vec<(String, String)>,
    /// The path (and normalized query) URL and prefix purges are matched against.
    pub purge_path: String,
    /// Further paths this entry answers for (a derivative's original, `/media/<key>`).
    pub aliases: Vec<String>,
}

impl Plan {
    /// Where the entry of a response that varies on `vary` lives: the primary key, or
    /// the variant of it this request's values of those headers name.
    fn entry_key(&self, vary: &[String]) -> String {
        let names = flow::variant_names(self.class, vary);
        variant_key(&self.key, &names, |name| {
            self.vary_headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        })
    }
}

thread_local! {
    /// Upstream trips in flight in this isolate, by key.
    static FLIGHTS: RefCell<Flights<()>> = RefCell::new(Flights::default());
}

/// How often a follower looks whether its flight has landed. Followers poll on a timer
/// rather than being woken from the leader's code: waking a task from inside a
/// `wait_until` future made workerd re-enter the wasm-bindgen task queue ("closure
/// invoked recursively") under a 200-request stampede.
const FOLLOW_POLL: Duration = Duration::from_millis(10);

/// A flight this request leads; landing it (drop) lets its followers look again.
pub(super) struct Leading {
    key: String,
    id: u64,
}

impl Drop for Leading {
    fn drop(&mut self) {
        FLIGHTS.with(|f| f.borrow_mut().land(&self.key, self.id));
    }
}

enum Role {
    Leader(Leading),
    Follower(u64),
    Alone,
}

/// Joins the flight for `key`; a flight older than `abandoned_after` (its leader never
/// landed) is replaced.
fn join(key: &str, abandoned_after: Duration) -> Role {
    let bound = abandoned_after.as_millis() as f64;
    match FLIGHTS.with(|f| f.borrow_mut().join(key, now_ms(), bound, || ())) {
        Joined::Leader(id) => Role::Leader(Leading {
            key: key.to_owned(),
            id,
        }),
        Joined::Follower(id) => Role::Follower(id),
        Joined::Alone => Role::Alone,
    }
}

/// Waits until flight `id` of `key` lands, at most `timeout`.
async fn follow(key: &str, id: u64, timeout: Duration) {
    let started = now_ms();
    while FLIGHTS.with(|f| f.borrow().flying(key, id))
        && now_ms() - started < timeout.as_millis() as f64
    {
        Delay::from(FOLLOW_POLL).await;
    }
}

/// Where entries live (this location's Cache API).
pub(super) struct Store(Cache);

impl Store {
    pub fn new() -> Self {
        Self(Cache::default())
    }

    /// The entry for `plan` with its response (body unread), if it is one of ours;
    /// through the variants pointer when the primary key holds one.
    pub async fn lookup(
        &self,
        plan: &Plan,
        timing: &mut ServerTiming,
    ) -> Option<(Entry, Response)> {
        let (entry, response) = self.lookup_key(&plan.key, timing).await?;
        let Some(names) = response.headers().get(stored::VARIANTS).ok().flatten() else {
            return Some((entry, response));
        };
        let names: Vec<String> = names.split(',').map(str::to_owned).collect();
        self.lookup_key(&plan.entry_key(&names), timing).await
    }

    /// The entry stored under exactly `key`.
    pub async fn lookup_key(
        &self,
        key: &str,
        timing: &mut ServerTiming,
    ) -> Option<(Entry, Response)> {
        let started = now_ms();
        let found = match self.0.get(key, false).await {
            Ok(found) => found,
            Err(e) => {
                worker::console_warn!("cache read failed for {key}: {e}");
                None
            }
        };
        timing.add("cache", now_ms() - started);
        let response = found?;
        let headers = response.headers();
        let entry = Entry::read(|name| headers.get(name).ok().flatten())?;
        Some((entry, response))
    }

    /// Stores `entry` for `plan`: under its variant key, with a pointer at the primary
    /// key, when the response varies on request headers.
    async fn keep(&self, plan: &Plan, entry: &Entry, response: Response) -> bool {
        let names = flow::variant_names(plan.class, &entry.vary);
        if !names.is_empty() {
            let pointer = Meta {
                status: 200,
                length: Some(0),
                source: None,
                ..entry.meta.clone()
            };
            let headers = [(String::from(stored::VARIANTS), names.join(","))];
            let Ok(pointer) = storable(&pointer, &headers, true, ResponseBody::Empty) else {
                return false;
            };
            if !self.put(&plan.key, pointer).await {
                return false;
            }
        }
        self.put(&plan.entry_key(&entry.vary), response).await
    }

    /// Bytes `start..=end` of the entry under `key` (the Cache API answers ranges).
    async fn range(&self, key: &str, start: u64, end: u64) -> Option<Response> {
        let headers = Headers::new();
        headers.set("range", &format!("bytes={start}-{end}")).ok()?;
        let mut init = RequestInit::new();
        init.with_headers(headers);
        let request = Request::new_with_init(key, &init).ok()?;
        let response = self.0.get(&request, false).await.ok()??;
        (response.status_code() == 206).then_some(response)
    }

    /// Forgets what is stored for `key` (an entry, or a variants pointer: its
    /// variants are then unreachable and age out).
    async fn forget(&self, key: &str) {
        if let Err(e) = self.0.delete(key, false).await {
            worker::console_warn!("cache delete failed for {key}: {e}");
        }
    }

    async fn put(&self, key: &str, response: Response) -> bool {
        match self.0.put(key, response).await {
            Ok(()) => true,
            Err(e) => {
                worker::console_warn!("cache write failed for {key}: {e}");
                false
            }
        }
    }
}

/// The Cache API form of an entry: the representation's headers under their stored
/// names, the metadata, and a `max-age` that keeps it through its stale windows.
fn storable(
    meta: &Meta,
    headers: &[(String, String)],
    has_validators: bool,
    body: ResponseBody,
) -> Result<Response, EdgeError> {
    let out = Headers::new();
    for (name, value) in headers {
        out.append(stored::stored_name(name), value)
            .map_err(runtime)?;
    }
    out.set(stored::META, &meta.encode()).map_err(runtime)?;
    out.set(
        "cache-control",
        &format!(
            "public, max-age={}",
            meta.lifetimes.retention(has_validators).max(1)
        ),
    )
    .map_err(runtime)?;
    // Kept as a 200 whatever the status (the Cache API refuses some, and 204/304 take
    // no body): the entry's own status is in its metadata.
    Ok(Response::from_body(body)
        .map_err(runtime)?
        .with_status(200)
        .with_headers(out))
}

/// The representation's headers of a stored response.
fn replayed(response: &Response) -> Vec<(String, String)> {
    response
        .headers()
        .entries()
        .filter_map(|(n, v)| stored::replayed_name(&n).map(|n| (n.to_owned(), v)))
        .collect()
}

/// The headers of an upstream response worth keeping or passing on: not hop-by-hop,
/// not named in its `Connection`, not the edge's own.
fn upstream_headers(response: &Response) -> Vec<(String, String)> {
    let listed = flow::connection_listed(
        response
            .headers()
            .get("connection")
            .ok()
            .flatten()
            .as_deref(),
    );
    response
        .headers()
        .entries()
        .filter(|(n, _)| flow::replayable(n) && !listed.contains(n))
        .collect()
}

fn upstream_of(response: &Response, now: f64, request_cookie: bool) -> Upstream {
    let headers = response.headers();
    Upstream::read(
        response.status_code(),
        |name| headers.get(name).ok().flatten(),
        now,
        request_cookie,
    )
}

/// Serves one request of a cached class.
pub(super) async fn serve<S: Source>(
    ctx: &Context,
    plan: &Plan,
    source: &S,
    timing: &mut ServerTiming,
) -> Result<Served, EdgeError> {
    if let Start::Bypass(reason) = flow::start(plan.policy, &plan.ask) {
        return pass(ctx, plan, source, reason, timing).await;
    }
    let store = Store::new();
    let mut found = store.lookup(plan, timing).await;
    let mut followed = false;
    loop {
        let entry = found.as_ref().map(|(e, _)| e);
        let (verdict, checked_against) = match entry {
            Some(e) => {
                let started = now_ms();
                let checked = super::purge::check(&plan.purge_path, &plan.aliases, e).await;
                timing.add("purge-check", now_ms() - started);
                checked
            }
            None => (Verdict::Clean, None),
        };
        let now = now_ms();
        let decision = flow::on_checked_lookup(&plan.ask, entry, verdict, now);
        let decision = match decision {
            OnLookup::Refetch => {
                // A hard purge: the entry is gone for this request, stand-in included.
                found = None;
                OnLookup::Fetch { conditional: false }
            }
            other => other,
        };
        match decision {
            OnLookup::Serve {
                cache,
                answer,
                refresh,
            } => {
                let Some((entry, response)) = found else {
                    return Err(EdgeError::Runtime(String::from("served a missing entry")));
                };
                if refresh {
                    spawn_refresh(ctx, plan, source, &entry);
                }
                let served =
                    respond_stored(&store, plan, &entry, response, answer, cache, now).await?;
                // Which purge generation the copy was stored under, and which latest
                // generation of the ledger it was checked against (an operator's "why").
                let headers = served.response.headers();
                let _ = headers.set(GENERATION, &entry.meta.generation.to_string());
                if let Some(latest) = checked_against {
                    let _ = headers.set(CHECKED_AGAINST, &latest.to_string());
                }
                return Ok(served);
            }
            OnLookup::Fetch { conditional } => {
                let leading = if followed {
                    None
                } else {
                    match join(&plan.key, plan.follow_timeout) {
                        Role::Leader(leading) => Some(leading),
                        Role::Follower(id) => {
                            let started = now_ms();
                            follow(&plan.key, id, plan.follow_timeout).await;
                            timing.add("collapsed", now_ms() - started);
                            followed = true;
                            found = store.lookup(plan, timing).await;
                            continue;
                        }
                        Role::Alone => None,
                    }
                };
                return fetch(
                    ctx,
                    &store,
                    plan,
                    source,
                    found,
                    conditional,
                    leading,
                    timing,
                )
                .await;
            }
            OnLookup::Refetch => {
                return Err(EdgeError::Runtime(String::from("refetch was mapped above")));
            }
        }
    }
}

/// Goes upstream and performs what the core makes of the outcome.
#[allow(clippy::too_many_arguments)]
async fn fetch<S: Source>(
    ctx: &Context,
    store: &Store,
    plan: &Plan,
    source: &S,
    found: Option<(Entry, Response)>,
    conditional: bool,
    leading: Option<Leading>,
    timing: &mut ServerTiming,
) -> Result<Served, EdgeError> {
    let validators = found.as_ref().map(|(e, _)| e).filter(|_| conditional);
    // Read before the fetch: a purge landing while it runs makes the entry look older
    // than it is (one more check), never newer.
    let generation = super::purge::generation().await;
    let fetched = source.fetch(validators, timing).await;
    for work in source.deferred() {
        ctx.wait_until(work);
    }
    let now = now_ms();
    let entry = found.as_ref().map(|(e, _)| e);
    let (decision, upstream) = match &fetched {
        Ok(response) => {
            let up = upstream_of(response, now, source.request_cookie());
            let decision = flow::on_upstream(
                plan.class,
                plan.policy,
                &plan.ask,
                entry,
                Outcome::Answered(&up),
                now,
            );
            (decision, Some(up))
        }
        Err(_) => (
            flow::on_upstream(
                plan.class,
                plan.policy,
                &plan.ask,
                entry,
                Outcome::Failed,
                now,
            ),
            None,
        ),
    };
    match decision {
        OnUpstream::Revalidated { lifetimes, answer } => {
            let (Some((entry, stored)), Ok(not_modified), Some(up)) = (found, fetched, upstream)
            else {
                return Err(EdgeError::Runtime(String::from(
                    "revalidated without an entry",
                )));
            };
            let mut headers = replayed(&stored);
            flow::merge_not_modified(&mut headers, &upstream_headers(&not_modified));
            let entry = flow::revalidated_entry(&entry, &headers, &up, lifetimes, now, generation);
            let mut stored = stored;
            let copy = stored.cloned().map_err(runtime)?;
            keep(ctx, plan, &entry, &headers, copy, leading)?;
            let response = rebuild_from(stored, &headers)?;
            respond_stored(
                store,
                plan,
                &entry,
                response,
                answer,
                EdgeCacheStatus::Revalidated,
                now,
            )
            .await
        }
        OnUpstream::Store { lifetimes, answer } => {
            let (Ok(mut response), Some(up)) = (fetched, upstream) else {
                return Err(EdgeError::Runtime(String::from(
                    "stored without a response",
                )));
            };
            let headers = upstream_headers(&response);
            let made_from = header_in(&headers, SOURCE_VERSION);
            let entry = flow::new_entry(&up, made_from, lifetimes, now, generation);
            let wanted = answer;
            let answer = flow::range_on_miss(answer, entry.meta.length);
            if let (Answer::Partial { start, end, .. }, Answer::Full { .. }) = (wanted, answer)
                && let Some(part) = source.fetch_range(&entry, start, end, timing).await
            {
                // Too large to wait for: the part comes from upstream, the whole body
                // goes to the Cache API alone (no tee), and later ranges come from it.
                keep(ctx, plan, &entry, &headers, response, leading)?;
                return respond_with(
                    plan,
                    &entry,
                    &headers,
                    part.into_parts().1,
                    wanted,
                    EdgeCacheStatus::Miss,
                    Some(lifetimes),
                    entry.meta.initial_age,
                );
            }
            let copy = response.cloned().map_err(runtime)?;
            if let Answer::Partial { start, end, .. } = answer {
                // The range is cut by the Cache API from the whole body, once stored.
                let stored = storable(
                    &entry.meta,
                    &headers,
                    flow::has_validators(&entry),
                    copy.into_parts().1,
                )?;
                if store.keep(plan, &entry, stored).await
                    && let Some(part) = store.range(&plan.entry_key(&entry.vary), start, end).await
                {
                    drop(leading);
                    return respond_with(
                        plan,
                        &entry,
                        &headers,
                        part.into_parts().1,
                        answer,
                        EdgeCacheStatus::Miss,
                        Some(lifetimes),
                        entry.meta.initial_age,
                    );
                }
                drop(leading);
                return respond_with(
                    plan,
                    &entry,
                    &headers,
                    response.into_parts().1,
                    Answer::Full { head: false },
                    EdgeCacheStatus::Miss,
                    Some(lifetimes),
                    entry.meta.initial_age,
                );
            }
            keep(ctx, plan, &entry, &headers, copy, leading)?;
            respond_with(
                plan,
                &entry,
                &headers,
                response.into_parts().1,
                answer,
                EdgeCacheStatus::Miss,
                Some(lifetimes),
                entry.meta.initial_age,
            )
        }
        stood_in @ (OnUpstream::Confirmed { answer } | OnUpstream::ServeStale { answer }) => {
            drop(leading);
            let cache = if matches!(stood_in, OnUpstream::Confirmed { .. }) {
                EdgeCacheStatus::Revalidated
            } else {
                if let Err(e) = &fetched {
                    worker::console_warn!("serving stale for {}: {e}", plan.key);
                }
                EdgeCacheStatus::Stale
            };
            let Some((entry, response)) = found else {
                return Err(EdgeError::Runtime(String::from(
                    "served the stored copy without one",
                )));
            };
            respond_stored(store, plan, &entry, response, answer, cache, now).await
        }
        OnUpstream::Pass { reason } => {
            drop(leading);
            let response = fetched?;
            passed_on(
                plan,
                response,
                reason,
                EdgeCacheStatus::Miss,
                now,
                source.request_cookie(),
            )
        }
        OnUpstream::Fail => {
            drop(leading);
            Err(fetched.err().unwrap_or_else(|| {
                EdgeError::Runtime(String::from("upstream failed without an error"))
            }))
        }
    }
}

/// On a served copy: the purge generation it was stored under.
pub(super) const GENERATION: &str = "x-edge-generation";
/// On a served copy: the ledger's latest generation its purge check was made against
/// (absent when the ledger could not be asked).
pub(super) const CHECKED_AGAINST: &str = "x-edge-checked-against";

/// The header upstream sets on an edge-made response to name the version of what it
/// was made from (an image's source ETag); it becomes the entry's `source`.
pub(super) const SOURCE_VERSION: &str = "x-edge-source-version";

fn header_in(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// Stores `body` as the entry after the response (`wait_until`); the flight lands once
/// the entry is in, so followers find it.
fn keep(
    ctx: &Context,
    plan: &Plan,
    entry: &Entry,
    headers: &[(String, String)],
    body: Response,
    leading: Option<Leading>,
) -> Result<(), EdgeError> {
    let response = storable(
        &entry.meta,
        headers,
        flow::has_validators(entry),
        body.into_parts().1,
    )?;
    let plan = plan.clone();
    let entry = entry.clone();
    ctx.wait_until(async move {
        Store::new().keep(&plan, &entry, response).await;
        drop(leading);
    });
    Ok(())
}

/// A stored response with its headers replaced (they are immutable once fetched).
fn rebuild_from(response: Response, headers: &[(String, String)]) -> Result<Response, EdgeError> {
    let status = response.status_code();
    let out = Headers::new();
    for (name, value) in headers {
        out.append(name, value).map_err(runtime)?;
    }
    Ok(Response::from_body(response.into_parts().1)
        .map_err(runtime)?
        .with_status(status)
        .with_headers(out))
}

/// Serves a stored entry under `answer`.
async fn respond_stored(
    store: &Store,
    plan: &Plan,
    entry: &Entry,
    response: Response,
    answer: Answer,
    cache: EdgeCacheStatus,
    now: f64,
) -> Result<Served, EdgeError> {
    let headers = replayed(&response);
    let age = entry.meta.age_secs(now);
    let body = match answer {
        Answer::Partial {
            start,
            end,
            head: false,
            ..
        } => match store.range(&plan.entry_key(&entry.vary), start, end).await {
            Some(part) => part.into_parts().1,
            // Gone between the two reads: the whole entry, as a 200.
            None => {
                return respond_with(
                    plan,
                    entry,
                    &headers,
                    response.into_parts().1,
                    Answer::Full { head: false },
                    cache,
                    Some(entry.meta.lifetimes),
                    age,
                );
            }
        },
        _ => response.into_parts().1,
    };
    respond_with(
        plan,
        entry,
        &headers,
        body,
        answer,
        cache,
        Some(entry.meta.lifetimes),
        age,
    )
}

/// Builds the client's response for a representation (stored, or just stored).
#[allow(clippy::too_many_arguments)]
fn respond_with(
    plan: &Plan,
    entry: &Entry,
    headers: &[(String, String)],
    body: ResponseBody,
    answer: Answer,
    cache: EdgeCacheStatus,
    lifetimes: Option<Lifetimes>,
    age: u32,
) -> Result<Served, EdgeError> {
    let status = answer.status(entry.meta.status);
    let out = Headers::new();
    for (name, value) in headers {
        if !flow::omitted_from(answer, name)
            && name != stored::ORIGIN_CACHE_CONTROL
            && name != SOURCE_VERSION
        {
            out.append(name, value).map_err(runtime)?;
        }
    }
    let directives = OriginDirectives::parse(entry.origin_cache_control.as_deref(), None, false);
    let served_age = flow::served_age(cache != EdgeCacheStatus::Miss, age);
    apply(
        &out,
        flow::for_answer(
            flow::emitted(
                plan.policy,
                entry.meta.status,
                &directives,
                lifetimes,
                served_age,
            ),
            answer,
        ),
    )?;
    match answer {
        Answer::Full { .. } => {
            if let Some(length) = entry.meta.length {
                out.set("content-length", &length.to_string())
                    .map_err(runtime)?;
            }
        }
        Answer::Partial {
            start, end, size, ..
        } => {
            out.set("content-range", &format!("bytes {start}-{end}/{size}"))
                .map_err(runtime)?;
            out.set("content-length", &(end - start + 1).to_string())
                .map_err(runtime)?;
        }
        Answer::Unsatisfiable { size } => {
            out.set("content-range", &format!("bytes */{size}"))
                .map_err(runtime)?;
        }
        Answer::NotModified => {}
    }
    for (name, value) in &plan.extra {
        out.set(name, value).map_err(runtime)?;
    }
    let body = if answer.has_body() && !flow::null_body_status(status) {
        body
    } else {
        ResponseBody::Empty
    };
    Ok(Served {
        response: Response::from_body(body)
            .map_err(runtime)?
            .with_status(status)
            .with_headers(out),
        cache,
    })
}

fn apply(headers: &Headers, emitted: flow::Emitted) -> Result<(), EdgeError> {
    let edit = |name: &str, edit: Edit| match edit {
        Edit::Keep => Ok(()),
        Edit::Set(value) => headers.set(name, &value).map_err(runtime),
        Edit::Remove => headers.delete(name).map_err(runtime),
    };
    edit("cache-control", emitted.cache_control)?;
    edit("cdn-cache-control", emitted.cdn_cache_control)?;
    match emitted.age {
        Some(age) => headers.set("age", &age.to_string()).map_err(runtime),
        None => headers.delete("age").map_err(runtime),
    }
}

/// Passes upstream's answer on, unstored, under the class's headers.
fn passed_on(
    plan: &Plan,
    response: Response,
    reason: NoStoreReason,
    cache: EdgeCacheStatus,
    now: f64,
    request_cookie: bool,
) -> Result<Served, EdgeError> {
    let up = upstream_of(&response, now, request_cookie);
    let out = Headers::new();
    for (name, value) in upstream_headers(&response) {
        if name != SOURCE_VERSION {
            out.append(&name, &value).map_err(runtime)?;
        }
    }
    let age = (up.age > 0).then_some(up.age);
    apply(
        &out,
        flow::emitted(plan.policy, up.status, &up.directives, None, age),
    )?;
    if let Some(length) = up.length {
        out.set("content-length", &length.to_string())
            .map_err(runtime)?;
    }
    out.set(NO_STORE, reason.as_str()).map_err(runtime)?;
    for (name, value) in &plan.extra {
        out.set(name, value).map_err(runtime)?;
    }
    let status = up.status;
    let body = if plan.ask_is_head() || flow::null_body_status(status) {
        ResponseBody::Empty
    } else {
        response.into_parts().1
    };
    Ok(Served {
        response: Response::from_body(body)
            .map_err(runtime)?
            .with_status(status)
            .with_headers(out),
        cache,
    })
}

impl Plan {
    fn ask_is_head(&self) -> bool {
        self.ask.method == crate::route::Method::Head
    }
}

/// A request that bypasses the cache: upstream as is, never stored.
async fn pass<S: Source>(
    ctx: &Context,
    plan: &Plan,
    source: &S,
    reason: NoStoreReason,
    timing: &mut ServerTiming,
) -> Result<Served, EdgeError> {
    let response = source.fetch(None, timing).await;
    for work in source.deferred() {
        ctx.wait_until(work);
    }
    let response = response?;
    if flow::invalidates(plan.ask.method, response.status_code()) {
        let key = plan.key.clone();
        ctx.wait_until(async move { Store::new().forget(&key).await });
    }
    passed_on(
        plan,
        response,
        reason,
        EdgeCacheStatus::Bypass,
        now_ms(),
        source.request_cookie(),
    )
}

/// Refreshes an entry in the background (inside stale-while-revalidate); one refresh
/// per key in flight, shared with foreground misses through the same flights.
fn spawn_refresh<S: Source>(ctx: &Context, plan: &Plan, source: &S, entry: &Entry) {
    // Someone is already fetching this key: nothing to add (and no follower to count).
    if FLIGHTS.with(|f| f.borrow().busy(&plan.key)) {
        return;
    }
    let Role::Leader(leading) = join(&plan.key, plan.follow_timeout) else {
        return;
    };
    let plan = plan.clone();
    let source = source.clone();
    let entry = entry.clone();
    ctx.wait_until(async move {
        let mut timing = ServerTiming::new();
        let store = Store::new();
        let generation = super::purge::generation().await;
        let fetched = source.fetch(Some(&entry), &mut timing).await;
        let deferred = source.deferred();
        let now = now_ms();
        let Ok(response) = fetched else {
            worker::console_warn!("background refresh of {} failed", plan.key);
            return;
        };
        let up = upstream_of(&response, now, source.request_cookie());
        let get = Ask::get();
        match flow::on_upstream(
            plan.class,
            plan.policy,
            &get,
            Some(&entry),
            Outcome::Answered(&up),
            now,
        ) {
            OnUpstream::Revalidated { lifetimes, .. } => {
                let Some((_, stored)) = store.lookup(&plan, &mut timing).await else {
                    return;
                };
                let mut headers = replayed(&stored);
                flow::merge_not_modified(&mut headers, &upstream_headers(&response));
                let entry =
                    flow::revalidated_entry(&entry, &headers, &up, lifetimes, now, generation);
                if let Ok(fresh) = storable(&entry.meta, &headers, true, stored.into_parts().1) {
                    store.keep(&plan, &entry, fresh).await;
                }
            }
            OnUpstream::Store { lifetimes, .. } => {
                let headers = upstream_headers(&response);
                let source = header_in(&headers, SOURCE_VERSION);
                let entry = flow::new_entry(&up, source, lifetimes, now, generation);
                let body = response.into_parts().1;
                if let Ok(fresh) =
                    storable(&entry.meta, &headers, flow::has_validators(&entry), body)
                {
                    store.keep(&plan, &entry, fresh).await;
                }
            }
            other => {
                worker::console_warn!("background refresh of {}: {other:?}", plan.key);
            }
        }
        drop(leading);
        // R2 writes after the flight has landed: nobody waits for them.
        for work in deferred {
            work.await;
        }
    });
}
