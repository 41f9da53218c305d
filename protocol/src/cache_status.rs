//! The values of the `x-edge-cache` response header.

use std::fmt;
use std::str::FromStr;

/// What the edge cache did for one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeCacheStatus {
    /// Served from the edge cache, fresh.
    Hit,
    /// Not in the edge cache (or not usable); fetched from the origin or R2.
    Miss,
    /// Served from the edge cache past its freshness, inside a stale window.
    Stale,
    /// The edge cache was not consulted for this request by policy.
    Bypass,
    /// A stale entry was revalidated with the origin, which answered 304.
    Revalidated,
}

impl EdgeCacheStatus {
    pub const ALL: [EdgeCacheStatus; 5] = [
        Self::Hit,
        Self::Miss,
        Self::Stale,
        Self::Bypass,
        Self::Revalidated,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Stale => "STALE",
            Self::Bypass => "BYPASS",
            Self::Revalidated => "REVALIDATED",
        }
    }
}

impl fmt::Display for EdgeCacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The header value was none of the five spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCacheStatus(pub String);

impl fmt::Display for UnknownCacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown x-edge-cache value {:?}", self.0)
    }
}

impl std::error::Error for UnknownCacheStatus {}

impl FromStr for EdgeCacheStatus {
    type Err = UnknownCacheStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownCacheStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_header_value() {
        for status in EdgeCacheStatus::ALL {
            assert_eq!(status.as_str().parse::<EdgeCacheStatus>(), Ok(status));
        }
    }

    #[test]
    fn header_values_are_case_sensitive() {
        assert!("hit".parse::<EdgeCacheStatus>().is_err());
    }
}
