//! Cache-tag spelling. The origin puts these on responses (`Cache-Tag`), the edge keeps
//! them with its cache entries, and invalidation purges by them: one spelling here.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CacheTag {
    Catalog,
    Course(i64),
    Video(i64),
    Feed(String),
    Search,
}

impl fmt::Display for CacheTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Catalog => f.write_str("catalog"),
            Self::Course(id) => write!(f, "course:{id}"),
            Self::Video(id) => write!(f, "video:{id}"),
            Self::Feed(segment) => write!(f, "feed:{segment}"),
            Self::Search => f.write_str("search"),
        }
    }
}

impl CacheTag {
    /// The `Cache-Tag` header value for a set of tags (comma-separated, Cloudflare's form).
    pub fn header_value<'a>(tags: impl IntoIterator<Item = &'a CacheTag>) -> String {
        tags.into_iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parses one tag as spelled by [`fmt::Display`]; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once(':') {
            None if s == "catalog" => Some(Self::Catalog),
            None if s == "search" => Some(Self::Search),
            Some(("course", id)) => id.parse().ok().map(Self::Course),
            Some(("video", id)) => id.parse().ok().map(Self::Video),
            Some(("feed", seg)) if !seg.is_empty() => Some(Self::Feed(seg.to_owned())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_through_their_spelling() {
        for tag in [
            CacheTag::Catalog,
            CacheTag::Course(42),
            CacheTag::Video(7),
            CacheTag::Feed("free-en".into()),
            CacheTag::Search,
        ] {
            assert_eq!(CacheTag::parse(&tag.to_string()), Some(tag));
        }
    }

    #[test]
    fn header_value_joins_with_commas() {
        let tags = [CacheTag::Catalog, CacheTag::Course(3)];
        assert_eq!(CacheTag::header_value(&tags), "catalog,course:3");
    }

    #[test]
    fn malformed_tags_are_rejected() {
        for bad in ["", "course:", "course:x", "feed:", "videos:1", "catalog:1"] {
            assert_eq!(CacheTag::parse(bad), None, "{bad}");
        }
    }
}
