//! The stored-entry format: what the edge writes next to a cached body so that a later
//! request can decide, without the origin, what the entry is worth. One header,
//! `x-ce-meta`, carries it in the Cache API; the validators (`ETag`, `Last-Modified`) and
//! the origin's own `Cache-Control` stay ordinary stored headers. [`super::flow`] reads
//! an [`Entry`] and nothing else.
//!
//! Format (version 1, space separated, `-` for none):
//! `1 <status> <stored-at ms> <initial age s> <edge> <swr> <sie> <length> <source>`.
//! `initial age` is the age the response already had when it arrived (RFC 9111 §4.2.3:
//! the upstream `Age`, or its `Date` when that says more); `source` is the version of
//! what an edge-made entry was produced from (an image's source ETag).

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
}

/// A stored entry as the core sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub meta: Meta,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The origin's `Cache-Control`, for the pass-through class.
    pub origin_cache_control: Option<String>,
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
            "1 {} {:.0} {} {} {} {} {length} {source}",
            self.status, self.stored_at_ms, self.initial_age, l.edge, l.swr, l.sie
        )
    }

    /// `None` for anything this version did not write (the entry is then a miss).
    pub fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.split(' ');
        if parts.next()? != "1" {
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
        }
    }

    #[test]
    fn meta_round_trips() {
        let m = meta();
        assert_eq!(
            m.encode(),
            "1 200 1764000000123 7 300 60 86400 1234 \"abc\""
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
            "2 200 1 0 1 1 1 - -",
            "1 200 1 0 1 1 1 -",
            "1 200 1 0 1 1 1 - - extra",
            "1 99 1 0 1 1 1 - -",
            "1 200 NaN 0 1 1 1 - -",
            "1 200 1 -3 1 1 1 - -",
            "1 200 1 0 1 1 1 x -",
        ] {
            assert_eq!(Meta::decode(bad), None, "{bad:?}");
        }
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
