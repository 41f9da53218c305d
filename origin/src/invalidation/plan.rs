//! The invalidator's decisions, pure and natively tested: what a content change purges,
//! which origin cache entries a purge evicts, how Cloudflare calls are cut to a plan's
//! limits, and when a failed delivery is tried again.

use std::time::Duration;

use protocol::CacheTag;
use protocol::purge::{Change, Mode, prefix_covers};

use crate::cache::{CacheKey, Domain, Eviction};
use crate::domain::{CatalogQuery, SearchQuery, Slug, VideoId};

/// What a course edit purges: the course, every list that shows it (catalog, search)
/// and every feed (they were recomputed in the same transaction). The course's own URL
/// and the catalog's first page are named too: the tags already cover them, the URLs
/// are what warming after the purge re-requests.
pub fn course_edited(course_id: i64, slug: &str, feed_segments: &[String]) -> Change {
    let mut tags = vec![
        CacheTag::Course(course_id).to_string(),
        CacheTag::Catalog.to_string(),
        CacheTag::Search.to_string(),
    ];
    tags.extend(
        feed_segments
            .iter()
            .map(|s| CacheTag::Feed(s.clone()).to_string()),
    );
    Change {
        tags,
        urls: vec![format!("/api/courses/{slug}"), String::from("/api/catalog")],
        mode: Mode::Hard,
        ..Change::default()
    }
}

/// What a sign-out revokes at the edge: the session, until its cookie would expire.
pub fn session_revoked(sid: &str, exp: i64) -> Change {
    Change {
        sessions: vec![protocol::purge::Revoked {
            sid: sid.to_owned(),
            exp,
        }],
        ..Change::default()
    }
}

/// What a video edit purges: its metadata (lessons name videos by id only).
pub fn video_edited(video_id: i64) -> Change {
    Change {
        tags: vec![CacheTag::Video(video_id).to_string()],
        urls: vec![format!("/api/videos/{video_id}")],
        mode: Mode::Hard,
        ..Change::default()
    }
}

/// The purged URLs worth re-requesting through the edge right after the purge, so the
/// first visitor does not pay the miss: those under one of `warm_prefixes` (path-segment
/// boundaries), at most `max`. Prefix purges and tags name no URL and warm nothing.
pub fn warm_urls(change: &Change, warm_prefixes: &[String], max: usize) -> Vec<String> {
    change
        .urls
        .iter()
        .filter(|url| {
            let path = url.split('?').next().unwrap_or(url);
            warm_prefixes.iter().any(|p| prefix_covers(p, path))
        })
        .take(max)
        .cloned()
        .collect()
}

/// What a feed rebuild purges: every feed.
pub fn feeds_rebuilt(feed_segments: &[String]) -> Change {
    Change {
        tags: feed_segments
            .iter()
            .map(|s| CacheTag::Feed(s.clone()).to_string())
            .collect(),
        mode: Mode::Hard,
        ..Change::default()
    }
}

/// The routes whose answers the origin caches, by path, with their domain.
const ROUTES: [(&str, Domain); 5] = [
    ("/api/catalog", Domain::Catalog),
    ("/api/courses/", Domain::Course),
    ("/api/search", Domain::Search),
    ("/api/videos/", Domain::Video),
    ("/api/feed", Domain::Feed),
];

/// The origin cache entries a change covers. Tags map one to one; a URL maps to its
/// key when the URL spells one (`/api/courses/intro`), else to its route's domain (a
/// URL without a query covers every query of it, and the feed's key is a header); a
/// prefix maps to the domains of the routes it covers, or to one key when it names a
/// single course or video. Anything else is not cached at the origin.
pub fn evictions(change: &Change) -> Vec<Eviction> {
    let mut out: Vec<Eviction> = Vec::new();
    let mut add = |e: Eviction| {
        if !out.contains(&e) {
            out.push(e);
        }
    };
    for tag in &change.tags {
        // Tags match case-insensitively, as at the edge (ours are lowercase).
        if let Some(tag) = CacheTag::parse(&tag.to_ascii_lowercase()) {
            add(Eviction::Tag(tag));
        }
    }
    for url in &change.urls {
        let (path, query) = match url.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (url.as_str(), None),
        };
        if let Some(e) = url_eviction(path, query) {
            add(e);
        }
    }
    for prefix in &change.prefixes {
        if let Some(key) = single_key(prefix) {
            add(Eviction::Key(key));
            continue;
        }
        let covered: Vec<Domain> = ROUTES
            .iter()
            .filter(|(route, _)| {
                prefix_covers(prefix, route.trim_end_matches('/'))
                    || (route.ends_with('/')
                        && prefix.starts_with(route)
                        && single_key(prefix).is_none())
            })
            .map(|(_, d)| *d)
            .collect();
        if covered.len() == ROUTES.len() {
            add(Eviction::All);
        } else {
            covered.into_iter().map(Eviction::Domain).for_each(&mut add);
        }
    }
    if out.contains(&Eviction::All) {
        return vec![Eviction::All];
    }
    out
}

fn url_eviction(path: &str, query: Option<&str>) -> Option<Eviction> {
    if let Some(key) = single_key(path) {
        return Some(Eviction::Key(key));
    }
    match (path, query) {
        ("/api/catalog", Some(q)) => CatalogQuery::parse(Some(q))
            .ok()
            .map(|q| Eviction::Key(CacheKey::catalog(&q))),
        ("/api/search", Some(q)) => SearchQuery::parse(Some(q))
            .ok()
            .map(|q| Eviction::Key(CacheKey::search(&q))),
        ("/api/catalog", None) => Some(Eviction::Domain(Domain::Catalog)),
        ("/api/search", None) => Some(Eviction::Domain(Domain::Search)),
        ("/api/feed", _) => Some(Eviction::Domain(Domain::Feed)),
        _ => None,
    }
}

/// `/api/courses/<slug>` or `/api/videos/<id>` (nothing deeper exists).
fn single_key(path: &str) -> Option<CacheKey> {
    if let Some(slug) = path.strip_prefix("/api/courses/") {
        return Slug::parse(slug).ok().map(|s| CacheKey::course(&s));
    }
    if let Some(id) = path.strip_prefix("/api/videos/") {
        return VideoId::parse(id).ok().map(CacheKey::video);
    }
    None
}

/// A purge plan's documented per-call limits (Cloudflare: "max operations per request";
/// the free plan's are the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Tags, prefixes or hosts in one call.
    pub max_items: usize,
    /// URLs (`files`) in one call.
    pub max_urls: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            max_items: 100,
            max_urls: 100,
        }
    }
}

/// One `purge_cache` call's body: exactly one kind per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudflareCall {
    Tags(Vec<String>),
    Prefixes(Vec<String>),
    Files(Vec<String>),
}

impl CloudflareCall {
    pub fn body(&self) -> serde_json::Value {
        match self {
            Self::Tags(items) => serde_json::json!({ "tags": items }),
            Self::Prefixes(items) => serde_json::json!({ "prefixes": items }),
            Self::Files(items) => serde_json::json!({ "files": items }),
        }
    }
}

/// Cuts a change into `purge_cache` calls within `limits`. URLs become absolute on
/// `public_base` (`https://courses.example.com`); prefixes are host + path without the
/// scheme, as Cloudflare's prefix purge expects. The order is fixed, so a call's index
/// names it across retries (acknowledged calls are not repeated).
pub fn cloudflare_calls(
    change: &Change,
    public_base: &str,
    limits: CallLimits,
) -> Vec<CloudflareCall> {
    let base = public_base.trim_end_matches('/');
    let host_and_path = base
        .split_once("://")
        .map_or(base, |(_, rest)| rest)
        .to_owned();
    let mut calls = Vec::new();
    for chunk in change.tags.chunks(limits.max_items.max(1)) {
        calls.push(CloudflareCall::Tags(chunk.to_vec()));
    }
    let prefixes: Vec<String> = change
        .prefixes
        .iter()
        .map(|p| format!("{host_and_path}{p}"))
        .collect();
    for chunk in prefixes.chunks(limits.max_items.max(1)) {
        calls.push(CloudflareCall::Prefixes(chunk.to_vec()));
    }
    let files: Vec<String> = change.urls.iter().map(|u| format!("{base}{u}")).collect();
    for chunk in files.chunks(limits.max_urls.max(1)) {
        calls.push(CloudflareCall::Files(chunk.to_vec()));
    }
    calls
}

/// When to try a delivery again after `attempts` failed ones: exponential from `base`,
/// capped at `max`, never sooner than a `Retry-After` the target sent, plus up to a
/// quarter of jitter (`jitter` in 0..1) so instances do not retry in step.
pub fn retry_delay(
    attempts: u32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let delay = exp.min(max);
    let delay = delay + delay.mul_f64(jitter.clamp(0.0, 1.0) / 4.0);
    match retry_after {
        // A target's Retry-After is honoured up to the configured maximum.
        Some(after) if after > delay => after.min(max),
        _ => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Segment;

    fn change(json: &str) -> Change {
        Change::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn a_course_edit_purges_the_course_its_lists_and_every_feed() {
        let c = course_edited(7, "intro", &["free-en".into(), "pro-en".into()]);
        assert_eq!(c.urls, ["/api/courses/intro", "/api/catalog"]);
        assert_eq!(
            c.tags,
            [
                "course:7",
                "catalog",
                "search",
                "feed:free-en",
                "feed:pro-en"
            ]
        );
        assert!(c.check().is_ok());
        assert_eq!(video_edited(3).tags, ["video:3"]);
        assert_eq!(feeds_rebuilt(&["anon-de".into()]).tags, ["feed:anon-de"]);
    }

    #[test]
    fn warming_takes_the_purged_urls_under_the_configured_prefixes() {
        let c = course_edited(7, "intro", &[]);
        let prefixes = vec![String::from("/api/courses")];
        assert_eq!(warm_urls(&c, &prefixes, 10), ["/api/courses/intro"]);
        let all = vec![String::from("/")];
        assert_eq!(warm_urls(&c, &all, 10).len(), 2);
        assert_eq!(warm_urls(&c, &all, 1).len(), 1);
        assert!(warm_urls(&c, &[], 10).is_empty());
        let cat = vec![String::from("/api/cat")];
        assert!(warm_urls(&c, &cat, 10).is_empty(), "segment boundaries");
    }

    #[test]
    fn urls_map_to_keys_or_domains() {
        let slug = Slug::parse("intro").unwrap();
        let e = evictions(&change(
            r#"{"urls":["/api/courses/intro","/api/videos/3","/api/catalog?page=2","/api/search","/api/feed","/static/app.js"]}"#,
        ));
        let page2 = CatalogQuery::parse(Some("page=2")).unwrap();
        assert_eq!(
            e,
            [
                Eviction::Key(CacheKey::course(&slug)),
                Eviction::Key(CacheKey::video(VideoId(3))),
                Eviction::Key(CacheKey::catalog(&page2)),
                Eviction::Domain(Domain::Search),
                Eviction::Domain(Domain::Feed),
            ]
        );
    }

    #[test]
    fn prefixes_map_to_the_routes_they_cover() {
        assert_eq!(evictions(&change(r#"{"prefixes":["/"]}"#)), [Eviction::All]);
        assert_eq!(
            evictions(&change(r#"{"prefixes":["/api"]}"#)),
            [Eviction::All]
        );
        assert_eq!(
            evictions(&change(r#"{"prefixes":["/api/courses"]}"#)),
            [Eviction::Domain(Domain::Course)]
        );
        assert_eq!(
            evictions(&change(r#"{"prefixes":["/api/courses/"]}"#)),
            [Eviction::Domain(Domain::Course)]
        );
        let slug = Slug::parse("intro").unwrap();
        assert_eq!(
            evictions(&change(r#"{"prefixes":["/api/courses/intro"]}"#)),
            [Eviction::Key(CacheKey::course(&slug))]
        );
        // Segment boundaries: /api/cat is not /api/catalog.
        assert!(evictions(&change(r#"{"prefixes":["/api/cat"]}"#)).is_empty());
        assert!(evictions(&change(r#"{"prefixes":["/media/"]}"#)).is_empty());
    }

    #[test]
    fn tags_map_one_to_one_and_unknown_tags_are_edge_only() {
        let seg = Segment::parse("pro-en").unwrap();
        assert_eq!(
            evictions(&change(
                r#"{"tags":["feed:pro-en","Catalog","catalog","hero-banner"]}"#
            )),
            [
                Eviction::Tag(CacheTag::Feed(seg.to_string())),
                Eviction::Tag(CacheTag::Catalog)
            ]
        );
    }

    #[test]
    fn cloudflare_calls_respect_the_plan_and_keep_one_kind_each() {
        let tags: Vec<String> = (0..250).map(|i| format!("t{i}")).collect();
        let c = Change {
            tags,
            urls: vec!["/api/feed".into()],
            prefixes: vec!["/media/covers".into()],
            mode: Mode::Hard,
            ..Change::default()
        };
        let calls = cloudflare_calls(&c, "https://courses.example.com/", CallLimits::default());
        assert_eq!(calls.len(), 5);
        assert!(matches!(&calls[0], CloudflareCall::Tags(t) if t.len() == 100));
        assert!(matches!(&calls[2], CloudflareCall::Tags(t) if t.len() == 50));
        assert_eq!(
            calls[3],
            CloudflareCall::Prefixes(vec!["courses.example.com/media/covers".into()])
        );
        assert_eq!(
            calls[4],
            CloudflareCall::Files(vec!["https://courses.example.com/api/feed".into()])
        );
        assert_eq!(
            calls[3].body(),
            serde_json::json!({"prefixes":["courses.example.com/media/covers"]})
        );
    }

    #[test]
    fn retries_back_off_exponentially_within_bounds() {
        let base = Duration::from_millis(500);
        let max = Duration::from_secs(300);
        let d = |n, after| retry_delay(n, base, max, after, 0.0);
        assert_eq!(d(1, None), Duration::from_millis(500));
        assert_eq!(d(2, None), Duration::from_secs(1));
        assert_eq!(d(5, None), Duration::from_secs(8));
        assert_eq!(d(40, None), max);
        assert_eq!(d(1, Some(Duration::from_secs(30))), Duration::from_secs(30));
        assert_eq!(
            d(1, Some(Duration::from_secs(86_400))),
            max,
            "Retry-After is capped"
        );
        let jittered = retry_delay(3, base, max, None, 1.0);
        assert_eq!(jittered, Duration::from_millis(2500));
        for n in 0..64 {
            assert!(retry_delay(n, base, max, None, 1.0) <= max + max / 4);
        }
    }
}
