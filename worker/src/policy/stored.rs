//! The stored-entry format: what the edge writes next to a cached body so that a later
//! request can decide, without the origin, what the entry is worth. One header,
//! `x-ce-meta`, carries it in the Cache API; the validators (`ETag`, `Last-Modified`) and
//! the origin's own `Cache-Control` stay ordinary stored headers. [`super::flow`] reads
//! an [`Entry`] and nothing else.
//!
//! Format (version 2, space separated, `-` for none):
//! `2 <status> <stored-at ms> <initial age s> <edge> <swr> <sie> <length> <source> <generation>`.
//! `initial age` is the age the response already had when it arrived (RFC 9111 §4.2.3:
//! the upstream `Age`, or its `Date` when that says more); `source` is the version of
//! what an edge-made entry was produced from (an image's source ETag); `generation` is
//! the purge ledger's generation read before the answer was fetched (see
//! [`super::purge`]). Entries of version 1 read as misses.

use super::headers::Lifetimes;

/// The header that carries [`Meta`] in the Cache API.
pub const META: &str = "x-ce-meta";
/// The origin's `Cache-Control` as it came (pass-through replays it verbatim).
pub const ORIGIN_CACHE_CONTROL: &str = "x-ce-origin-cache-control";

/// Everything the decision core needs to know about a stored entry besides its headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub status: u16,
    /// When the edge stored (or last revalidated) it, ms since the epoch.
    pub stored_at_ms: f64,
    /// Age it already had on arrival, seconds.
    pub initial_age: u32,
    pub lifetimes: Lifetimes,
    /// Body length, when known (HEAD, ranges and `Content-Length` need it).
    pub length: Option<u64>,
    /// Version of the input an edge-made entry was produced from.
    pub source: Option<String>,
    /// The purge generation current before the answer was fetched.
    pub generation: u64,
}

/// A stored entry as the core sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub meta: Meta,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The origin's `Cache-Control`, for the pass-through class.
    pub origin_cache_control: Option<String>,
    /// The request headers the origin's `Vary` named (lowercase; see
    /// `OriginDirectives::vary`).
    pub vary: Vec<String>,
    /// The origin's cache tags (`Cache-Tag`), what tag purges match.
    pub tags: Vec<String>,
}

/// Whether a `Cache-Tag` value names more tags than an entry keeps (and a purge probes).
pub fn too_many_tags(value: Option<&str>) -> bool {
    value
        .unwrap_or("")
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .nth(super::purge::MAX_TAGS_PROBED)
        .is_some()
}

/// Tags from a `Cache-Tag` value (comma separated, Cloudflare's spelling), bounded.
pub fn tags_of(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 1024)
        .take(super::purge::MAX_TAGS_PROBED)
        .map(str::to_owned)
        .collect()
}

/// Upstream headers the Cache API itself would act on are kept under another name, so
/// that only the edge's own `Cache-Control` (the retention) steers the Cache API: the
/// origin's `Cache-Control`, `CDN-Cache-Control` and `Vary` are replayed as they came.
const RENAMED: [(&str, &str); 3] = [
    ("cache-control", ORIGIN_CACHE_CONTROL),
    ("cdn-cache-control", "x-ce-origin-cdn-cache-control"),
    ("vary", "x-ce-origin-vary"),
];

/// Marks the entry under a primary key as a pointer to variants: its value lists the
/// request headers (lowercase, comma separated) the variants are keyed by.
pub const VARIANTS: &str = "x-ce-variants";

/// Headers the Cache API adds on the way out, never part of the representation.
const ADDED_BY_THE_CACHE: [&str; 3] = ["cf-cache-status", "content-length", "age"];

/// The name an upstream header is stored under.
pub fn stored_name(name: &str) -> &str {
    RENAMED
        .iter()
        .find(|(from, _)| *from == name)
        .map_or(name, |(_, to)| to)
}

/// The representation's headers from a stored entry's headers: ours dropped, renamed
/// ones back under their own names. `None` for a header that is not replayed.
pub fn replayed_name(name: &str) -> Option<&str> {
    if let Some((from, _)) = RENAMED.iter().find(|(_, to)| *to == name) {
        return Some(from);
    }
    let ours = name == META
        || name == VARIANTS
        || name == "cache-control"
        || ADDED_BY_THE_CACHE.contains(&name);
    (!ours).then_some(name)
}

impl Entry {
    /// Reads an entry from a stored response's status and headers; `None` when it is
    /// not one of ours (a foreign or older-format entry is a miss, never an error).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        Some(Self {
            meta: Meta::decode(&get(META)?)?,
            etag: get("etag"),
            last_modified: get("last-modified"),
            origin_cache_control: get(ORIGIN_CACHE_CONTROL),
            vary: super::headers::OriginDirectives::parse(
                None,
                get(stored_name("vary")).as_deref(),
                false,
            )
            .vary,
            tags: tags_of(get(protocol::headers::CACHE_TAG).as_deref()),
        })
    }
}

impl Meta {
    /// Current age (RFC 9111 §4.2.3): the age on arrival plus the time resident here.
    pub fn age_secs(&self, now_ms: f64) -> u32 {
        let resident = ((now_ms - self.stored_at_ms) / 1000.0).max(0.0).floor();
        // Saturating: a clock that runs backwards gives age 0, never a panic.
        let resident = if resident >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            resident as u32
        };
        self.initial_age.saturating_add(resident)
    }

    pub fn encode(&self) -> String {
        let l = self.lifetimes;
        let length = self
            .length
            .map_or_else(|| String::from("-"), |n| n.to_string());
        let source = self.source.as_deref().unwrap_or("-");
        format!(
            "2 {} {:.0} {} {} {} {} {length} {source} {}",
            self.status, self.stored_at_ms, self.initial_age, l.edge, l.swr, l.sie, self.generation
        )
    }

    /// `None` for anything this version did not write (the entry is then a miss).
    pub fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.split(' ');
        if parts.next()? != "2" {
            return None;
        }
        let status = parts.next()?.parse::<u16>().ok()?;
        let stored_at_ms = parts
            .next()?
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite())?;
        let mut num = || parts.next()?.parse::<u32>().ok();
        let initial_age = num()?;
        let lifetimes = Lifetimes {
            edge: num()?,
            swr: num()?,
            sie: num()?,
        };
        let length = match parts.next()? {
            "-" => None,
            n => Some(n.parse::<u64>().ok()?),
        };
        let source = match parts.next()? {
            "-" => None,
            s if s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic()) => Some(s.to_owned()),
            _ => return None,
        };
        let generation = parts.next()?.parse::<u64>().ok()?;
        if parts.next().is_some() || !(100..=599).contains(&status) {
            return None;
        }
        Some(Self {
            status,
            stored_at_ms,
            initial_age,
            lifetimes,
            length,
            source,
            generation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            status: 200,
            stored_at_ms: 1_764_000_000_123.0,
            initial_age: 7,
            lifetimes: Lifetimes {
                edge: 300,
                swr: 60,
                sie: 86_400,
            },
            length: Some(1234),
            source: Some(String::from("\"abc\"")),
            generation: 42,
        }
    }

    #[test]
    fn meta_round_trips() {
        let m = meta();
        assert_eq!(
            m.encode(),
            "2 200 1764000000123 7 300 60 86400 1234 \"abc\" 42"
        );
        assert_eq!(Meta::decode(&m.encode()), Some(m.clone()));
        let bare = Meta {
            length: None,
            source: None,
            ..m
        };
        assert_eq!(Meta::decode(&bare.encode()), Some(bare));
    }

    #[test]
    fn anything_else_is_not_an_entry() {
        for bad in [
            "",
            "1 200 1 0 1 1 1 - -",
            "3 200 1 0 1 1 1 - - 0",
            "2 200 1 0 1 1 1 - -",
            "2 200 1 0 1 1 1 - - 0 extra",
            "2 99 1 0 1 1 1 - - 0",
            "2 200 NaN 0 1 1 1 - - 0",
            "2 200 1 -3 1 1 1 - - 0",
            "2 200 1 0 1 1 1 x - 0",
            "2 200 1 0 1 1 1 - - -1",
        ] {
            assert_eq!(Meta::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn stored_names_round_trip_and_ours_are_never_replayed() {
        for name in [
            "cache-control",
            "cdn-cache-control",
            "vary",
            "etag",
            "x-custom",
        ] {
            assert_eq!(replayed_name(stored_name(name)), Some(name), "{name}");
        }
        for ours in [META, "cache-control", "cf-cache-status", "content-length"] {
            assert_eq!(replayed_name(ours), None, "{ours}");
        }
        let headers = [
            (META, "2 200 5 0 60 0 0 3 - 9"),
            ("cache-tag", "course:1, catalog,,search"),
            ("etag", "\"e\""),
            (ORIGIN_CACHE_CONTROL, "max-age=60"),
            ("x-ce-origin-vary", "Accept-Language, X-Mode"),
        ];
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        };
        let entry = Entry::read(get).unwrap();
        assert_eq!(entry.meta.length, Some(3));
        assert_eq!(entry.etag.as_deref(), Some("\"e\""));
        assert_eq!(entry.origin_cache_control.as_deref(), Some("max-age=60"));
        assert_eq!(entry.vary, ["accept-language", "x-mode"]);
        assert_eq!(entry.tags, ["course:1", "catalog", "search"]);
        assert_eq!(entry.meta.generation, 9);
        assert_eq!(Entry::read(|_| None), None);
    }

    #[test]
    fn age_adds_the_arrival_age_and_never_goes_negative() {
        let m = meta();
        assert_eq!(m.age_secs(m.stored_at_ms), 7);
        assert_eq!(m.age_secs(m.stored_at_ms + 10_999.0), 17);
        assert_eq!(m.age_secs(m.stored_at_ms - 50_000.0), 7);
        assert_eq!(m.age_secs(f64::MAX), u32::MAX);
    }
}
