//! The audience segment: what the edge may vary shared content by. It is derived from
//! verified session claims (or `anon` without a session) and is deliberately coarse —
//! plan × locale — so an entry is shared by many users and never identifies one.

use std::fmt;

/// Subscription plan carried in session claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Free,
    Pro,
}

impl Plan {
    pub const ALL: [Plan; 2] = [Plan::Free, Plan::Pro];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Who a segment is for: visitors without a session, or a plan's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    Anon,
    Member(Plan),
}

impl Audience {
    pub const ALL: [Audience; 3] = [
        Audience::Anon,
        Audience::Member(Plan::Free),
        Audience::Member(Plan::Pro),
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Anon => "anon",
            Self::Member(plan) => plan.as_str(),
        }
    }
}

/// A two-letter lowercase language code (`en`, `de`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locale([u8; 2]);

impl Locale {
    pub fn parse(s: &str) -> Option<Self> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_lowercase() && b.is_ascii_lowercase() => Some(Self([*a, *b])),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII lowercase letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("en")
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Locale {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Locale {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Locale::parse(&s)
            .ok_or_else(|| serde::de::Error::custom("locale must be two lowercase letters"))
    }
}

/// `<audience>-<locale>`, e.g. `anon-en`, `pro-de`: the value of the segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Segment {
    pub audience: Audience,
    pub locale: Locale,
}

impl Segment {
    pub fn parse(s: &str) -> Option<Self> {
        let (audience, locale) = s.split_once('-')?;
        let audience = match audience {
            "anon" => Audience::Anon,
            other => Audience::Member(Plan::parse(other)?),
        };
        Some(Self {
            audience,
            locale: Locale::parse(locale)?,
        })
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.audience.as_str(), self.locale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip() {
        for s in ["anon-en", "free-de", "pro-fr"] {
            assert_eq!(Segment::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn malformed_segments_are_rejected() {
        for s in [
            "", "anon", "anon-", "-en", "gold-en", "pro-EN", "pro-eng", "pro-e1", "pro_en",
        ] {
            assert_eq!(Segment::parse(s), None, "{s}");
        }
    }
}
