//! The sans-I/O cache core: facts in, an action out. Every class the edge serves —
//! API, HTML, static files, video, `/media` originals, image derivatives and the
//! pass-through class — asks the same three questions, and the glue (`edge::cache`)
//! only performs what the answers say:
//!
//! 1. [`start`]: may the cache be used at all for this request (or bypass, and why)?
//! 2. [`on_lookup`]: with what the Cache API holds for the key (or nothing): serve it
//!    (fresh, or stale with a background refresh), or go upstream (conditionally when
//!    the entry has validators)?
//! 3. [`on_upstream`]: with what upstream (the origin, R2, or the image producer) did:
//!    revalidated, store and serve, pass through unstored, stand in with a stale copy,
//!    or fail.
//!
//! [`answer`] then says how the representation meets the client's own request (304 on
//! its conditionals, 206/416 on its range, no body for HEAD), and [`emitted`] which
//! caching headers go out. The clock is an argument everywhere; nothing here does I/O.

use protocol::EdgeCacheStatus;

use super::freshness::{self, Freshness};
use super::headers::{Lifetimes, NoStoreReason, OriginDirectives, Storage, storage};
use super::purge::Verdict;
use super::stored::{Entry, Meta};
use super::table::{Audience, ContentClass, Policy, default_policy};
use super::{http_date, not_modified};
use crate::assets::{ByteRange, Resolved};
use crate::route::Method;
use protocol::purge::Mode;

/// The one rule for upstream failures, used by storage, stale-if-error and the browser
/// headers alike: 5xx and 429 are failures — never stored, and a stored copy may stand
/// in for them.
pub const fn is_failure(status: u16) -> bool {
    status >= 500 || status == 429
}

/// What the client asked, parsed once from its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub method: Method,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub range: Option<ByteRange>,
    pub if_range: Option<String>,
    /// The request carries `Authorization`.
    pub authorization: bool,
}

impl Ask {
    pub fn get() -> Self {
        Self {
            method: Method::Get,
            if_none_match: None,
            if_modified_since: None,
            range: None,
            if_range: None,
            authorization: false,
        }
    }

    fn head(&self) -> bool {
        self.method == Method::Head
    }
}

/// How a representation meets the client's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The whole representation (headers only for HEAD).
    Full { head: bool },
    /// 304: the client's copy is current.
    NotModified,
    /// 206 with bytes `start..=end` of `size`.
    Partial {
        start: u64,
        end: u64,
        size: u64,
        head: bool,
    },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable { size: u64 },
}

impl Answer {
    pub const fn status(self, stored_status: u16) -> u16 {
        match self {
            Self::Full { .. } => stored_status,
            Self::NotModified => 304,
            Self::Partial { .. } => 206,
            Self::Unsatisfiable { .. } => 416,
        }
    }

    /// Whether a body is sent.
    pub const fn has_body(self) -> bool {
        matches!(
            self,
            Self::Full { head: false } | Self::Partial { head: false, .. }
        )
    }
}

/// The client's conditionals and range against a representation (RFC 9110 §13.2.2:
/// conditionals first, then the range; both only for a 200).
pub fn answer(
    ask: &Ask,
    status: u16,
    etag: Option<&str>,
    last_modified: Option<&str>,
    length: Option<u64>,
) -> Answer {
    let head = ask.head();
    if status != 200 {
        return Answer::Full { head };
    }
    if not_modified(
        ask.if_none_match.as_deref(),
        ask.if_modified_since.as_deref(),
        etag,
        last_modified,
    ) {
        return Answer::NotModified;
    }
    let (Some(range), Some(size)) = (ask.range, length) else {
        return Answer::Full { head };
    };
    if !if_range_holds(ask.if_range.as_deref(), etag, last_modified) {
        return Answer::Full { head };
    }
    match range.resolve(size) {
        Resolved::Partial { start, end } => Answer::Partial {
            start,
            end,
            size,
            head,
        },
        Resolved::Unsatisfiable => Answer::Unsatisfiable { size },
    }
}

/// `If-Range` (RFC 9110 §13.1.5): a strong ETag match, or an exact date match.
fn if_range_holds(if_range: Option<&str>, etag: Option<&str>, last_modified: Option<&str>) -> bool {
    let Some(condition) = if_range.map(str::trim) else {
        return true;
    };
    if condition.starts_with('"') {
        return etag.is_some_and(|e| !e.starts_with("W/") && e == condition);
    }
    match (
        http_date::parse(condition),
        last_modified.and_then(http_date::parse),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Step 1: whether the cache takes part at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Lookup,
    Bypass(NoStoreReason),
}

/// Writes never touch the cache; never-shared classes bypass it; `Authorization` only
/// matters where a class forwards it (the pass-through class). Shared classes neither
/// forward it nor vary on it, so it cannot make their answer personal.
pub fn start(policy: Policy, ask: &Ask) -> Start {
    if !ask.method.is_read() {
        Start::Bypass(NoStoreReason::Method)
    } else if matches!(policy.audience, Audience::Nobody | Audience::Private) {
        Start::Bypass(NoStoreReason::ClassPolicy)
    } else if ask.authorization && policy.audience == Audience::Origin {
        Start::Bypass(NoStoreReason::Authorization)
    } else {
        Start::Lookup
    }
}

/// Step 2's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLookup {
    /// Serve the stored entry; `refresh`: and refresh it in the background.
    Serve {
        cache: EdgeCacheStatus,
        answer: Answer,
        refresh: bool,
    },
    /// Go upstream, with the entry's validators when `conditional`.
    Fetch { conditional: bool },
    /// A hard purge covers the entry: go upstream unconditionally, and never let the
    /// entry stand in (not even on an upstream failure).
    Refetch,
}

/// Step 2 with the purge check: [`on_lookup`] for a clean entry; a hard-purged one is
/// refetched and may never stand in; a soft-purged one is served stale while one
/// revalidation runs (inside its stale-if-error window; past it, revalidated first); an
/// unconfirmed one (the ledger could not be asked) is revalidated before it is served,
/// and stands in only as stale-on-error.
pub fn on_checked_lookup(
    ask: &Ask,
    entry: Option<&Entry>,
    verdict: Verdict,
    now_ms: f64,
) -> OnLookup {
    let Some(e) = entry else {
        return OnLookup::Fetch { conditional: false };
    };
    match verdict {
        Verdict::Clean => on_lookup(ask, entry, now_ms),
        Verdict::Purged(Mode::Hard) => OnLookup::Refetch,
        Verdict::Purged(Mode::Soft)
            if has_validators(e)
                && freshness::usable_on_error(
                    f64::from(e.meta.age_secs(now_ms)),
                    e.meta.lifetimes,
                ) =>
        {
            OnLookup::Serve {
                cache: EdgeCacheStatus::Stale,
                answer: answer_from(ask, e),
                refresh: true,
            }
        }
        Verdict::Purged(Mode::Soft) => OnLookup::Refetch,
        Verdict::Unconfirmed => OnLookup::Fetch {
            conditional: has_validators(e),
        },
    }
}

/// Step 2: the stored entry (if any) against the clock.
pub fn on_lookup(ask: &Ask, entry: Option<&Entry>, now_ms: f64) -> OnLookup {
    let Some(entry) = entry else {
        return OnLookup::Fetch { conditional: false };
    };
    let age = entry.meta.age_secs(now_ms);
    let serve = |cache, refresh| OnLookup::Serve {
        cache,
        answer: answer_from(ask, entry),
        refresh,
    };
    match freshness::evaluate(f64::from(age), entry.meta.lifetimes) {
        Freshness::Fresh => serve(EdgeCacheStatus::Hit, false),
        Freshness::StaleRevalidate => serve(EdgeCacheStatus::Stale, true),
        Freshness::StaleIfError | Freshness::Expired => OnLookup::Fetch {
            conditional: has_validators(entry),
        },
    }
}

/// Whether upstream can answer "unchanged" for this entry (a 304, or the same source
/// version for an entry the edge made).
pub fn has_validators(entry: &Entry) -> bool {
    entry.etag.is_some() || entry.last_modified.is_some() || entry.meta.source.is_some()
}

fn answer_from(ask: &Ask, entry: &Entry) -> Answer {
    answer(
        ask,
        entry.meta.status,
        entry.etag.as_deref(),
        entry.last_modified.as_deref(),
        entry.meta.length,
    )
}

/// What upstream said, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub status: u16,
    pub directives: OriginDirectives,
    /// Age on arrival (see [`initial_age`]).
    pub age: u32,
    pub length: Option<u64>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The origin answered from a shed path (`x-origin-degraded`).
    pub degraded: bool,
    /// The origin saw the client's cookies (pass-through).
    pub request_cookie: bool,
    /// The origin's `Cache-Tag`.
    pub tags: Vec<String>,
}

impl Upstream {
    /// Reads upstream's answer from its status and headers (`get` looks a header up by
    /// its lowercase name). `request_cookie`: the origin saw the client's cookies.
    pub fn read(
        status: u16,
        get: impl Fn(&str) -> Option<String>,
        now_ms: f64,
        request_cookie: bool,
    ) -> Self {
        let mut directives = OriginDirectives::parse(
            get("cache-control").as_deref(),
            get("vary").as_deref(),
            get("set-cookie").is_some(),
        );
        directives.expires_in =
            expires_in(get("expires").as_deref(), get("date").as_deref(), now_ms);
        // An answer with more tags than an entry keeps could not be reached by a purge of
        // the tags it dropped: it is served but never stored.
        if super::stored::too_many_tags(get(protocol::headers::CACHE_TAG).as_deref()) {
            directives.no_store = true;
        }
        Self {
            status,
            age: initial_age(get("age").as_deref(), get("date").as_deref(), now_ms),
            length: get("content-length").and_then(|l| l.trim().parse::<u64>().ok()),
            etag: get("etag"),
            last_modified: get("last-modified"),
            degraded: get(protocol::headers::ORIGIN_DEGRADED).is_some(),
            request_cookie,
            tags: super::stored::tags_of(get(protocol::headers::CACHE_TAG).as_deref()),
            directives,
        }
    }
}

/// The entry a storable upstream answer becomes (`source`: the version of what an
/// edge-made answer was made from; `generation`: the purge generation read before the
/// fetch began).
pub fn new_entry(
    up: &Upstream,
    source: Option<String>,
    lifetimes: Lifetimes,
    now_ms: f64,
    generation: u64,
) -> Entry {
    Entry {
        meta: Meta {
            status: up.status,
            stored_at_ms: now_ms,
            initial_age: up.age,
            lifetimes,
            length: up.length,
            source,
            generation,
        },
        etag: up.etag.clone(),
        last_modified: up.last_modified.clone(),
        origin_cache_control: up.directives.raw_cache_control.clone(),
        vary: up.directives.vary.clone(),
        tags: up.tags.clone(),
    }
}

/// The entry after a 304: its headers already merged (`merge_not_modified`) into
/// `headers`, its validators and `Cache-Control` read from them, its clock restarted
/// with the 304's age.
pub fn revalidated_entry(
    entry: &Entry,
    headers: &[(String, String)],
    up: &Upstream,
    lifetimes: Lifetimes,
    now_ms: f64,
    generation: u64,
) -> Entry {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    Entry {
        meta: Meta {
            stored_at_ms: now_ms,
            initial_age: up.age,
            lifetimes,
            generation,
            ..entry.meta.clone()
        },
        etag: get("etag").or_else(|| entry.etag.clone()),
        last_modified: get("last-modified").or_else(|| entry.last_modified.clone()),
        origin_cache_control: get("cache-control"),
        vary: entry.vary.clone(),
        tags: super::stored::tags_of(get(protocol::headers::CACHE_TAG).as_deref())
            .into_iter()
            .chain(entry.tags.iter().cloned())
            .take(super::purge::MAX_TAGS_PROBED)
            .collect(),
    }
}

/// Step 3's input: an answer, or none (refused, timed out, broken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    Answered(&'a Upstream),
    Failed,
}

/// Step 3's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUpstream {
    /// Upstream confirmed the stored entry: refresh its metadata (and, for a 304, its
    /// headers — RFC 9111 §4.3.4) with these lifetimes, then serve it.
    Revalidated {
        lifetimes: Lifetimes,
        answer: Answer,
    },
    /// Store upstream's answer with these lifetimes, and serve it.
    Store {
        lifetimes: Lifetimes,
        answer: Answer,
    },
    /// Serve upstream's answer as it came, unstored.
    Pass { reason: NoStoreReason },
    /// Upstream confirmed the entry but forbids keeping it longer (a 304 with
    /// `Set-Cookie`, `private`, `no-store`, or no lifetime): serve it, write nothing.
    Confirmed { answer: Answer },
    /// Upstream failed; the stored copy stands in.
    ServeStale { answer: Answer },
    /// Upstream failed and nothing stands in.
    Fail,
}

/// Largest body kept in the Cache API (Cloudflare's per-object limit is 512 MB). A body
/// without a declared length is streamed through unstored: the entry must know its size
/// to answer HEAD and ranges.
pub const MAX_STORED_BYTES: u64 = 512 * 1024 * 1024;

/// How long an image that failed to transform (415/422) is remembered, per source
/// version and options, so a broken upload is not decoded again on every request.
pub const FAILED_TRANSFORM_SECS: u32 = 60;

/// Step 3: what to do with upstream's outcome.
pub fn on_upstream(
    class: ContentClass,
    policy: Policy,
    ask: &Ask,
    entry: Option<&Entry>,
    outcome: Outcome<'_>,
    now_ms: f64,
) -> OnUpstream {
    let stale = || {
        entry
            .filter(|e| {
                freshness::usable_on_error(f64::from(e.meta.age_secs(now_ms)), e.meta.lifetimes)
            })
            .map(|e| OnUpstream::ServeStale {
                answer: answer_from(ask, e),
            })
    };
    let up = match outcome {
        Outcome::Failed => return stale().unwrap_or(OnUpstream::Fail),
        Outcome::Answered(up) => up,
    };
    if is_failure(up.status) {
        return stale().unwrap_or(OnUpstream::Pass {
            reason: NoStoreReason::Status,
        });
    }
    if up.status == 304 {
        let Some(entry) = entry else {
            // Nothing of ours was conditional: not a response we can use or store.
            return OnUpstream::Pass {
                reason: NoStoreReason::Status,
            };
        };
        let answer = answer_from(ask, entry);
        let d = &up.directives;
        if d.set_cookie || d.no_store || d.private {
            // The 304's own prohibitions win: served, never written back.
            return OnUpstream::Confirmed { answer };
        }
        // The entry's own status, with what the 304 says now (RFC 9111 §4.3.4): the
        // class's rules apply as to a full answer — degraded, failed transforms, 404s.
        let as_stored = Upstream {
            status: entry.meta.status,
            length: entry.meta.length,
            ..up.clone()
        };
        let lifetimes = match storage_of(class, policy, &as_stored) {
            Storage::Store(lifetimes) => lifetimes,
            // A pass-through 304 without freshness of its own: the entry keeps its own.
            Storage::NoStore(NoStoreReason::NoLifetime) if policy.audience == Audience::Origin => {
                entry.meta.lifetimes
            }
            Storage::NoStore(_) => return OnUpstream::Confirmed { answer },
        };
        return OnUpstream::Revalidated { lifetimes, answer };
    }
    let stored = match storage_of(class, policy, up) {
        Storage::Store(lifetimes) => lifetimes,
        Storage::NoStore(reason) => return OnUpstream::Pass { reason },
    };
    OnUpstream::Store {
        lifetimes: stored,
        answer: answer(
            ask,
            up.status,
            up.etag.as_deref(),
            up.last_modified.as_deref(),
            up.length,
        ),
    }
}

/// Whether and how long to keep an upstream answer: the policy table's `storage`, plus
/// the two rules that only the flow knows — a degraded answer is never kept longer than
/// the origin itself allows, and an image that cannot be transformed is remembered
/// briefly.
fn storage_of(class: ContentClass, policy: Policy, up: &Upstream) -> Storage {
    let sized = match up.length {
        Some(n) => n <= MAX_STORED_BYTES,
        None => up.status == 204,
    };
    match unsized_storage(class, policy, up) {
        Storage::Store(_) if !sized => Storage::NoStore(NoStoreReason::Size),
        other => other,
    }
}

fn unsized_storage(class: ContentClass, policy: Policy, up: &Upstream) -> Storage {
    if class == ContentClass::Image && matches!(up.status, 415 | 422) {
        return Storage::Store(Lifetimes {
            edge: FAILED_TRANSFORM_SECS.min(policy.edge.max(1)),
            swr: 0,
            sie: 0,
        });
    }
    if up.degraded {
        let origin = up.directives.max_age_or_expires().unwrap_or(0);
        return match storage(class, policy, up.status, &up.directives, up.request_cookie) {
            Storage::Store(l) if origin > 0 => Storage::Store(Lifetimes {
                edge: l.edge.min(origin),
                swr: 0,
                sie: 0,
            }),
            Storage::Store(_) => Storage::NoStore(NoStoreReason::Degraded),
            other => other,
        };
    }
    storage(class, policy, up.status, &up.directives, up.request_cookie)
}

/// The request headers whose values must key a variant of a response whose `Vary`
/// names `vary`: those beyond what the class's key already carries. Non-empty only for
/// the pass-through class (other classes do not store such answers).
pub fn variant_names(class: ContentClass, vary: &[String]) -> Vec<String> {
    vary.iter()
        .filter(|name| !class.keyed_headers().contains(&name.as_str()))
        .cloned()
        .collect()
}

/// The age a response already has on arrival (RFC 9111 §4.2.3): the larger of its
/// `Age` and how far its `Date` lies in the past. `response_delay` is not added: the
/// origin sits next to the edge.
pub fn initial_age(age: Option<&str>, date: Option<&str>, now_ms: f64) -> u32 {
    let age_value = age
        .and_then(|a| a.trim().parse::<u64>().ok())
        .map_or(0, |a| u32::try_from(a).unwrap_or(u32::MAX));
    let apparent = date
        .and_then(http_date::parse)
        .map_or(0, |d| ((now_ms / 1000.0).floor() as i64 - d).max(0));
    age_value.max(u32::try_from(apparent).unwrap_or(u32::MAX))
}

/// `Expires` as a lifetime (RFC 9111 §4.2.1, §5.3): `Expires − Date`, with the time of
/// receipt standing in for a missing `Date`; an unparsable `Expires` is already expired.
pub fn expires_in(expires: Option<&str>, date: Option<&str>, now_ms: f64) -> Option<i64> {
    let expires = expires?;
    let Some(at) = http_date::parse(expires) else {
        return Some(0);
    };
    let date = date
        .and_then(http_date::parse)
        .unwrap_or_else(|| (now_ms / 1000.0).floor() as i64);
    Some(at - date)
}

/// What to do with one response header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Leave what upstream sent.
    Keep,
    Set(String),
    Remove,
}

/// The caching headers a response carries to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    pub cache_control: Edit,
    /// `CDN-Cache-Control`: what this edge does with the entry.
    pub cdn_cache_control: Edit,
    /// `Age`; `None` removes it.
    pub age: Option<u32>,
}

/// Headers for a response of `status` with the origin's `directives`, stored with
/// `lifetimes` (None: not stored). `age`: the response's age when it is served from a
/// stored entry or arrived with one (None: a fresh answer, no `Age`). A policy class's
/// browser `max-age` is raised by the age, so browsers keep it the class's time
/// whatever the entry's age; the pass-through class keeps the origin's `Cache-Control`
/// and `CDN-Cache-Control` verbatim (RFC 9111: a shared cache does not rewrite them).
pub fn emitted(
    policy: Policy,
    status: u16,
    directives: &OriginDirectives,
    lifetimes: Option<Lifetimes>,
    age: Option<u32>,
) -> Emitted {
    if policy.audience == Audience::Origin {
        return Emitted {
            cache_control: Edit::Keep,
            cdn_cache_control: Edit::Keep,
            age,
        };
    }
    let browser =
        super::headers::browser_cache_control_aged(policy, status, directives, age.unwrap_or(0));
    Emitted {
        cache_control: browser.map_or(Edit::Remove, Edit::Set),
        cdn_cache_control: lifetimes.map_or(Edit::Remove, |l| Edit::Set(l.cdn_cache_control())),
        age,
    }
}

/// The caching headers of a representation, fitted to how it answers the client: a
/// 416 is never kept by anyone; a part (206) is not for a downstream CDN to keep as the
/// whole (`CDN-Cache-Control` removed).
pub fn for_answer(emitted: Emitted, answer: Answer) -> Emitted {
    match answer {
        Answer::Unsatisfiable { .. } => Emitted {
            cache_control: Edit::Set(String::from("no-store")),
            cdn_cache_control: Edit::Remove,
            ..emitted
        },
        Answer::Partial { .. } => Emitted {
            cdn_cache_control: Edit::Remove,
            ..emitted
        },
        Answer::Full { .. } | Answer::NotModified => emitted,
    }
}

/// Largest body a ranged miss waits for: the range is cut by the Cache API from the
/// stored whole, so the client waits for the whole body to be stored first.
pub const RANGE_AFTER_STORE_MAX: u64 = 8 * 1024 * 1024;

/// How a miss answers a range: cut from the stored copy when the body is small enough
/// to wait for; else the whole representation (a 200, which RFC 9110 §14.2 allows),
/// streamed while it is stored — the next request gets its 206 from the entry.
pub fn range_on_miss(answer: Answer, length: Option<u64>) -> Answer {
    match answer {
        Answer::Partial { head, .. } if length.is_none_or(|n| n > RANGE_AFTER_STORE_MAX) => {
            Answer::Full { head }
        }
        other => other,
    }
}

/// Representation headers a 304 does not carry (RFC 9110 §15.4.5): it describes the
/// client's copy, not a body.
pub fn omitted_from(answer: Answer, name: &str) -> bool {
    answer == Answer::NotModified
        && matches!(name, "content-type" | "content-encoding" | "content-length")
}

/// `Age` on an answer: always when served from a stored entry (RFC 9111 §5.1), else
/// only when upstream's answer was already aged.
pub fn served_age(from_store: bool, age: u32) -> Option<u32> {
    (from_store || age > 0).then_some(age)
}

/// Statuses whose responses cannot carry a body.
pub const fn null_body_status(status: u16) -> bool {
    matches!(status, 101 | 103 | 204 | 205 | 304)
}

/// A successful unsafe request invalidates what the cache holds for its URL
/// (RFC 9111 §4.4).
pub fn invalidates(method: Method, status: u16) -> bool {
    !method.is_read() && (200..400).contains(&status)
}

/// The image class as the edge stores derivatives: the table's row, with freshness
/// capped at how long a source's version is trusted without asking R2 again
/// (`IMAGE_SOURCE_TTL`): past it, the entry is revalidated against the source's ETag
/// (in the background inside stale-while-revalidate).
pub fn image_policy(row: Policy, source_ttl_secs: u32) -> Policy {
    Policy {
        edge: row.edge.min(source_ttl_secs.max(1)),
        ..row
    }
}

/// The policy a versioned (`v=`) image URL is served under: the URL names one version
/// forever, so browsers get the hashed-static row; the edge still revalidates its copy.
pub fn versioned_image_policy(row: Policy) -> Policy {
    let hashed = default_policy(ContentClass::HashedStatic);
    Policy {
        browser: hashed.browser,
        immutable: true,
        ..row
    }
}

/// Response headers an edge never replays from upstream or from a stored entry: hop by
/// hop ones (RFC 9110 §7.6.1), framing, and what the edge sets itself.
pub fn replayable(name: &str) -> bool {
    !matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "content-length"
            | "age"
            | "server-timing"
            | "x-edge-cache"
            | "x-edge-no-store"
            | super::stored::META
    )
}

/// Header names a `Connection` header lists (RFC 9110 §7.6.1): hop-by-hop for this
/// message only, never forwarded or stored.
pub fn connection_listed(connection: Option<&str>) -> Vec<String> {
    connection
        .unwrap_or("")
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// RFC 9111 §3.2 / §4.3.4: the stored headers updated from a 304 (or a HEAD): every
/// header the 304 carries replaces the stored one, except framing and hop-by-hop ones.
pub fn merge_not_modified(stored: &mut Vec<(String, String)>, update: &[(String, String)]) {
    let listed = connection_listed(
        update
            .iter()
            .find(|(n, _)| n == "connection")
            .map(|(_, v)| v.as_str()),
    );
    let takes = |name: &str| {
        replayable(name)
            && !listed.iter().any(|l| l == name)
            && !matches!(
                name,
                "content-encoding" | "content-type" | "content-range" | "vary" | "set-cookie"
            )
    };
    let names: Vec<&str> = update
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| takes(n))
        .collect();
    stored.retain(|(n, _)| !names.contains(&n.as_str()));
    for (name, value) in update.iter().filter(|(n, _)| takes(n)) {
        stored.push((name.clone(), value.clone()));
    }
}

#[cfg(test)]
mod tests;
