//! What a purge is, spelled once for the origin (which sends it) and the edge (which
//! applies it): tags, URL paths and path prefixes, hard or soft, with the bounds both
//! sides enforce and the matching rules both sides mean.
//!
//! * A **tag** is a cache tag as the origin emits it in `Cache-Tag` (see [`crate::tags`]),
//!   or any other visible-ASCII word without commas (content teams tag what they like).
//! * A **URL** is a path with an optional query (`/api/courses/intro`); it covers every
//!   variant stored for that URL (segments, formats, arms).
//! * A **prefix** is a path that ends on a segment boundary: `/api/courses` covers
//!   `/api/courses`, `/api/courses/` and `/api/courses/intro`, never `/api/coursesx`.
//! * **Hard** purges are never served after the bound; **soft** purges may be served
//!   while one revalidation with their validator is in flight.
//! * A **revoked session** (`sessions`: id and expiry) stops its cookie working at the
//!   edge within the same bound; the edge keeps it until the cookie would have expired.

use serde::{Deserialize, Serialize};

/// Most tags, URLs or prefixes one purge may name (each list separately).
pub const MAX_ITEMS: usize = 100;
/// Longest tag (Cloudflare's own limit for a cache tag).
pub const MAX_TAG_BYTES: usize = 1024;
/// Longest URL path (with query) or prefix.
pub const MAX_PATH_BYTES: usize = 2048;
/// Longest purge id.
pub const MAX_ID_BYTES: usize = 64;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Never served again once the purge has taken effect.
    #[default]
    Hard,
    /// Served at most while one revalidation (with its validator) is in flight.
    Soft,
}

impl Mode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hard => "hard",
            Self::Soft => "soft",
        }
    }
}

/// What to invalidate. Construct with [`Change::parse`] (or build one and call
/// [`Change::check`]): every list is bounded and every item well-formed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub mode: Mode,
    /// Sessions signed out: only the origin's logout names these (never the admin API).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<Revoked>,
}

/// A session the edge must stop honouring, until `exp` (unix seconds, the cookie's own
/// expiry: after it the cookie fails verification anyway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    pub sid: String,
    pub exp: i64,
}

/// Whether `sid` is a session id a revocation may name (1-64 of A-Z a-z 0-9 - _).
pub fn is_session_id(sid: &str) -> bool {
    !sid.is_empty()
        && sid.len() <= MAX_ID_BYTES
        && sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A change as delivered to the edge: the outbox id makes a repeated delivery a no-op.
/// On the wire: `{"id": "...", "change": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purge {
    pub id: String,
    pub change: Change,
}

impl Purge {
    /// Parses and checks a delivered purge (the edge's side of the contract).
    pub fn parse(json: &[u8]) -> Result<Self, PurgeError> {
        let purge: Self = serde_json::from_slice(json)
            .map_err(|e| refuse("body", format!("not a purge: {e}")))?;
        if purge.id.is_empty()
            || purge.id.len() > MAX_ID_BYTES
            || !purge
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(refuse(
                "id",
                "an id is 1-64 characters of A-Z, a-z, 0-9, '-' and '_'",
            ));
        }
        purge.change.check()?;
        Ok(purge)
    }
}

/// Why a purge was refused, naming the field (`tags`, `urls[3]`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for PurgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for PurgeError {}

/// One list of a change: its name, items, the rule each item follows and the rule's words.
type ListRule<'a> = (
    &'static str,
    &'a Vec<String>,
    fn(&str) -> bool,
    &'static str,
);

fn refuse(field: impl Into<String>, message: impl Into<String>) -> PurgeError {
    PurgeError {
        field: field.into(),
        message: message.into(),
    }
}

fn is_tag(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TAG_BYTES
        && s.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

/// Whether `s` is a URL path (with an optional query) a purge may name.
pub fn is_path(s: &str) -> bool {
    s.starts_with('/')
        && !s.starts_with("//")
        && s.len() <= MAX_PATH_BYTES
        && !s.contains('#')
        && s.bytes().all(|b| b.is_ascii_graphic())
}

impl Change {
    /// Parses and checks a JSON body; an error names the field that was wrong.
    pub fn parse(json: &[u8]) -> Result<Self, PurgeError> {
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| refuse("body", format!("not JSON: {e}")))?;
        let serde_json::Value::Object(fields) = value else {
            return Err(refuse("body", "send a JSON object"));
        };
        let mut change = Self::default();
        for (name, value) in fields {
            let wrong = |e: serde_json::Error| refuse(name.clone(), e.to_string());
            match name.as_str() {
                "tags" => change.tags = serde_json::from_value(value).map_err(wrong)?,
                "urls" => change.urls = serde_json::from_value(value).map_err(wrong)?,
                "prefixes" => change.prefixes = serde_json::from_value(value).map_err(wrong)?,
                "mode" => change.mode = serde_json::from_value(value).map_err(wrong)?,
                _ => {
                    return Err(refuse(
                        name,
                        "unknown field (expected tags, urls, prefixes or mode)",
                    ));
                }
            }
        }
        change.check()?;
        Ok(change)
    }

    /// Bounds and well-formedness; a change that names nothing is refused too.
    pub fn check(&self) -> Result<(), PurgeError> {
        if self.is_empty() {
            return Err(refuse(
                "body",
                "name at least one of tags, urls or prefixes",
            ));
        }
        let lists: [ListRule<'_>; 3] = [
            (
                "tags",
                &self.tags,
                is_tag,
                "a tag is 1-1024 visible ASCII characters without commas",
            ),
            (
                "urls",
                &self.urls,
                is_path,
                "a URL is a path starting with one '/' (query allowed, no fragment), at most 2048 visible ASCII characters",
            ),
            (
                "prefixes",
                &self.prefixes,
                |p| is_path(p) && !p.contains('?'),
                "a prefix is a path starting with one '/', without a query, at most 2048 visible ASCII characters",
            ),
        ];
        if self.sessions.len() > MAX_ITEMS {
            return Err(refuse(
                "sessions",
                format!("at most {MAX_ITEMS} sessions per purge"),
            ));
        }
        if let Some(at) = self.sessions.iter().position(|r| !is_session_id(&r.sid)) {
            return Err(refuse(
                format!("sessions[{at}]"),
                "a session id is 1-64 characters of A-Z, a-z, 0-9, '-' and '_'",
            ));
        }
        for (name, items, valid, rule) in lists {
            if items.len() > MAX_ITEMS {
                return Err(refuse(
                    name,
                    format!("at most {MAX_ITEMS} {name} per purge (got {})", items.len()),
                ));
            }
            if let Some(at) = items.iter().position(|i| !valid(i)) {
                return Err(refuse(format!("{name}[{at}]"), rule));
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
            && self.urls.is_empty()
            && self.prefixes.is_empty()
            && self.sessions.is_empty()
    }

    /// `true` when this change covers an entry stored for `path` (with its query)
    /// carrying `tags`.
    pub fn covers<'a>(
        &self,
        path_and_query: &str,
        tags: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        let path = path_and_query.split('?').next().unwrap_or(path_and_query);
        self.urls.iter().any(|u| url_covers(u, path_and_query))
            || self.prefixes.iter().any(|p| prefix_covers(p, path))
            || tags
                .into_iter()
                .any(|t| self.tags.iter().any(|want| want.eq_ignore_ascii_case(t)))
    }
}

/// A URL purge names one URL: with a query, exactly that path and query; without one,
/// the path with any query (Cloudflare's `files` purge is exact; ours is per path
/// because the edge normalizes queries per class and cannot list the spellings).
pub fn url_covers(url: &str, path_and_query: &str) -> bool {
    if url.contains('?') {
        url == path_and_query
    } else {
        path_and_query.split('?').next() == Some(url)
    }
}

/// Prefix match on path-segment boundaries: `/a/b` covers `/a/b`, `/a/b/…`, not `/a/bc`.
/// A prefix ending in `/` covers what starts with it.
pub fn prefix_covers(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
    }
}

/// The prefixes a path could be purged by, longest first: `/a/b/c` → `/a/b/c`,
/// `/a/b`, `/a`, `/`. A store of purged prefixes is probed with these, so the cost of
/// a check is the path's depth (bounded by [`MAX_PATH_BYTES`]), never the number of
/// prefixes ever purged. Prefixes ending in `/` are normalized away first
/// ([`normalize_prefix`]).
pub fn prefixes_of(path: &str) -> impl Iterator<Item = &str> {
    let path = path.split('?').next().unwrap_or(path);
    let trimmed = path.trim_end_matches('/');
    let mut end = Some(trimmed.len());
    std::iter::from_fn(move || {
        let at = end?;
        let here = if at == 0 { "/" } else { &trimmed[..at] };
        end = if at == 0 {
            None
        } else {
            Some(trimmed[..at].rfind('/').unwrap_or(0))
        };
        Some(here)
    })
}

/// The one spelling of a prefix for storage and probing: no trailing `/` (except the
/// root). `/a/b/` and `/a/b` purge the same things under [`prefix_covers`] apart from
/// `/a/b` itself, which a trailing-slash prefix leaves: the edge treats both alike and
/// also drops `/a/b` (a conservative over-purge, never an under-purge).
pub fn normalize_prefix(prefix: &str) -> &str {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() { "/" } else { trimmed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(json: &str) -> Result<Change, PurgeError> {
        Change::parse(json.as_bytes())
    }

    #[test]
    fn a_purge_names_something_and_every_item_is_checked() {
        assert_eq!(change("{}").unwrap_err().field, "body");
        assert_eq!(
            change(r#"{"tags":["ok","a,b"]}"#).unwrap_err().field,
            "tags[1]"
        );
        assert_eq!(
            change(r#"{"urls":["api/x"]}"#).unwrap_err().field,
            "urls[0]"
        );
        assert_eq!(
            change(r#"{"urls":["//evil.example/x"]}"#)
                .unwrap_err()
                .field,
            "urls[0]"
        );
        assert_eq!(
            change(r#"{"prefixes":["/a?b=1"]}"#).unwrap_err().field,
            "prefixes[0]"
        );
        assert_eq!(
            change(r#"{"tags":["x"],"mode":"later"}"#)
                .unwrap_err()
                .field,
            "mode"
        );
        assert_eq!(
            change(r#"{"tags":["x"],"extra":1}"#).unwrap_err().field,
            "extra"
        );
        assert_eq!(change(r#"{"tags":"x"}"#).unwrap_err().field, "tags");
        assert_eq!(change("[]").unwrap_err().field, "body");
        assert_eq!(change("not json").unwrap_err().field, "body");
        let many = format!(r#"{{"tags":[{}]}}"#, vec!["\"t\""; MAX_ITEMS + 1].join(","));
        assert_eq!(change(&many).unwrap_err().field, "tags");
        let ok = change(r#"{"tags":["course:1"],"urls":["/api/feed?x=1"],"prefixes":["/media/"],"mode":"soft"}"#)
            .unwrap();
        assert_eq!(ok.mode, Mode::Soft);
        assert_eq!(change(r#"{"tags":["x"]}"#).unwrap().mode, Mode::Hard);
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_covers("/api/courses", "/api/courses"));
        assert!(prefix_covers("/api/courses", "/api/courses/intro"));
        assert!(!prefix_covers("/api/courses", "/api/coursesx"));
        assert!(prefix_covers("/media/", "/media/a.jpg"));
        assert!(!prefix_covers("/media/", "/media"));
        assert!(prefix_covers("/", "/anything"));
    }

    #[test]
    fn prefixes_of_a_path_are_its_ancestors_longest_first() {
        let all: Vec<&str> = prefixes_of("/a/b/c?q=1").collect();
        assert_eq!(all, ["/a/b/c", "/a/b", "/a", "/"]);
        assert_eq!(prefixes_of("/").collect::<Vec<_>>(), ["/"]);
        assert_eq!(prefixes_of("/a/").collect::<Vec<_>>(), ["/a", "/"]);
        // Every prefix that covers a path is found among its probes once normalized.
        for path in ["/api/courses/intro", "/media/x/y.jpg", "/", "/a//b"] {
            for prefix in [
                "/",
                "/api",
                "/api/",
                "/api/courses",
                "/media/x/",
                "/a",
                "/a/",
            ] {
                let probed = prefixes_of(path).any(|p| p == normalize_prefix(prefix));
                if prefix_covers(prefix, path) {
                    assert!(probed, "{prefix} covers {path} but is not probed");
                }
            }
        }
    }

    #[test]
    fn covers_by_url_prefix_or_tag() {
        let c = change(
            r#"{"tags":["Course:7"],"urls":["/api/videos/3"],"prefixes":["/media/covers"]}"#,
        )
        .unwrap();
        assert!(c.covers("/api/videos/3", []));
        assert!(c.covers("/api/videos/3?x=1", []));
        assert!(!c.covers("/api/videos/30", []));
        assert!(c.covers("/media/covers/a.jpg", []));
        assert!(c.covers("/api/courses/x", ["catalog", "course:7"]));
        assert!(!c.covers("/api/courses/x", ["course:8"]));
        let exact = change(r#"{"urls":["/api/search?q=rust"]}"#).unwrap();
        assert!(exact.covers("/api/search?q=rust", []));
        assert!(!exact.covers("/api/search?q=go", []));
    }

    #[test]
    fn a_purge_round_trips_with_its_id() {
        let purge = Purge {
            id: "o1-42".into(),
            change: change(r#"{"tags":["catalog"]}"#).unwrap(),
        };
        let json = serde_json::to_string(&purge).unwrap();
        assert_eq!(Purge::parse(json.as_bytes()).unwrap(), purge);
        let bad_id = json.replace("o1-42", "o1/42");
        assert_eq!(Purge::parse(bad_id.as_bytes()).unwrap_err().field, "id");
    }

    #[test]
    fn a_revocation_is_delivered_by_the_origin_and_never_accepted_from_the_admin_api() {
        let purge =
            Purge::parse(br#"{"id":"o2-1","change":{"sessions":[{"sid":"ab12","exp":99}]}}"#)
                .unwrap();
        assert_eq!(purge.change.sessions[0].sid, "ab12");
        assert!(!purge.change.is_empty());
        let json = serde_json::to_string(&purge).unwrap();
        assert_eq!(Purge::parse(json.as_bytes()).unwrap(), purge);
        // Content purges do not spell the field at all.
        let plain = serde_json::to_string(&change(r#"{"tags":["t"]}"#).unwrap()).unwrap();
        assert!(!plain.contains("sessions"), "{plain}");
        let bad = Purge::parse(br#"{"id":"o2-1","change":{"sessions":[{"sid":"a/b","exp":1}]}}"#);
        assert_eq!(bad.unwrap_err().field, "sessions[0]");
        let many: Vec<String> = (0..=MAX_ITEMS)
            .map(|i| format!(r#"{{"sid":"s{i}","exp":1}}"#))
            .collect();
        let too_many = format!(
            r#"{{"id":"x","change":{{"sessions":[{}]}}}}"#,
            many.join(",")
        );
        assert_eq!(
            Purge::parse(too_many.as_bytes()).unwrap_err().field,
            "sessions"
        );
        assert_eq!(
            change(r#"{"sessions":[{"sid":"ab12","exp":99}]}"#)
                .unwrap_err()
                .field,
            "sessions"
        );
    }
}
