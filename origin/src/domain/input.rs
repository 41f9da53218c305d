//! Request inputs, parsed once. Every constructor bounds its input and names the field.

use std::collections::HashMap;
use std::fmt;

use protocol::Locale;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InputError {
    pub field: &'static str,
    pub message: String,
}

impl InputError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Longest raw query string any route reads.
pub const MAX_QUERY_BYTES: usize = 1024;

/// Splits a raw query string into decoded pairs; the first occurrence of a name wins.
pub fn query_pairs(raw: Option<&str>) -> Result<HashMap<String, String>, InputError> {
    let raw = raw.unwrap_or("");
    if raw.len() > MAX_QUERY_BYTES {
        return Err(InputError::new(
            "query",
            format!("the query string is longer than {MAX_QUERY_BYTES} bytes"),
        ));
    }
    let mut pairs = HashMap::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let name =
            percent_decode(name).ok_or_else(|| InputError::new("query", "bad percent-encoding"))?;
        let value = percent_decode(value)
            .ok_or_else(|| InputError::new("query", "bad percent-encoding"))?;
        pairs.entry(name).or_insert(value);
    }
    Ok(pairs)
}

/// `application/x-www-form-urlencoded` decoding ('+' is a space); `None` on bad escapes
/// or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn bounded_u32(
    pairs: &HashMap<String, String>,
    field: &'static str,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, InputError> {
    match pairs.get(field) {
        None => Ok(default),
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(InputError::new(
                field,
                format!("{field} must be a whole number from {min} to {max}"),
            )),
        },
    }
}

fn is_slug_like(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A course slug: `[a-z0-9-]{1,80}`, no leading or trailing dash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Slug(String);

impl Slug {
    pub const MAX: usize = 80;

    pub fn parse(s: &str) -> Result<Self, InputError> {
        if is_slug_like(s, Self::MAX) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InputError::new(
                "slug",
                format!("a slug is 1-{} characters of a-z, 0-9 and '-'", Self::MAX),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A topic tag: `[a-z0-9-]{1,32}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Self, InputError> {
        if is_slug_like(s, 32) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InputError::new(
                "tag",
                "a tag is 1-32 characters of a-z, 0-9 and '-'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Beginner,
    Intermediate,
    Advanced,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Beginner, Level::Intermediate, Level::Advanced];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Beginner => "beginner",
            Self::Intermediate => "intermediate",
            Self::Advanced => "advanced",
        }
    }

    pub fn parse(s: &str) -> Result<Self, InputError> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| InputError::new("level", "level is beginner, intermediate or advanced"))
    }
}

/// `GET /api/catalog` parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CatalogQuery {
    pub page: u32,
    pub per_page: u32,
    pub locale: Option<Locale>,
    pub level: Option<Level>,
    pub tag: Option<Tag>,
}

impl Default for CatalogQuery {
    fn default() -> Self {
        Self {
            page: 1,
            per_page: Self::DEFAULT_PER_PAGE,
            locale: None,
            level: None,
            tag: None,
        }
    }
}

impl CatalogQuery {
    pub const DEFAULT_PER_PAGE: u32 = 20;
    pub const MAX_PER_PAGE: u32 = 50;
    pub const MAX_PAGE: u32 = 500;

    pub fn parse(raw: Option<&str>) -> Result<Self, InputError> {
        let pairs = query_pairs(raw)?;
        let locale = match pairs.get("locale") {
            None => None,
            Some(s) => Some(Locale::parse(s).ok_or_else(|| {
                InputError::new("locale", "locale is two lowercase letters, e.g. en")
            })?),
        };
        Ok(Self {
            page: bounded_u32(&pairs, "page", 1, 1, Self::MAX_PAGE)?,
            per_page: bounded_u32(
                &pairs,
                "per_page",
                Self::DEFAULT_PER_PAGE,
                1,
                Self::MAX_PER_PAGE,
            )?,
            locale,
            level: pairs.get("level").map(|s| Level::parse(s)).transpose()?,
            tag: pairs.get("tag").map(|s| Tag::parse(s)).transpose()?,
        })
    }

    pub fn offset(&self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.per_page)
    }
}

/// `GET /api/search?q=` parameters: the query reduced to at most 8 lowercase word
/// tokens (letters and digits; everything else separates), each matched as a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SearchQuery {
    tokens: Vec<String>,
    pub limit: u32,
}

impl SearchQuery {
    pub const MAX_CHARS: usize = 100;
    pub const MAX_TOKENS: usize = 8;
    pub const DEFAULT_LIMIT: u32 = 10;

    pub fn parse(raw: Option<&str>) -> Result<Self, InputError> {
        let pairs = query_pairs(raw)?;
        let q = pairs.get("q").map(|s| s.trim()).unwrap_or("");
        if q.is_empty() {
            return Err(InputError::new("q", "q is required: what to search for"));
        }
        if q.chars().count() > Self::MAX_CHARS {
            return Err(InputError::new(
                "q",
                format!("q is longer than {} characters", Self::MAX_CHARS),
            ));
        }
        let tokens: Vec<String> = q
            .split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
            .take(Self::MAX_TOKENS)
            .map(str::to_lowercase)
            .collect();
        if tokens.is_empty() {
            return Err(InputError::new(
                "q",
                "q has no letters or digits to search for",
            ));
        }
        Ok(Self {
            tokens,
            limit: bounded_u32(&pairs, "limit", Self::DEFAULT_LIMIT, 1, 50)?,
        })
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The normalized query text: tokens joined by one space.
    pub fn normalized(&self) -> String {
        self.tokens.join(" ")
    }
}

/// A positive video id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoId(pub i64);

impl VideoId {
    pub fn parse(s: &str) -> Result<Self, InputError> {
        match s.parse::<i64>() {
            Ok(n) if n > 0 && s.len() <= 18 && !s.starts_with('+') => Ok(Self(n)),
            _ => Err(InputError::new(
                "id",
                "a video id is a positive whole number",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_defaults_and_filters() {
        assert_eq!(CatalogQuery::parse(None).unwrap(), CatalogQuery::default());
        let q = CatalogQuery::parse(Some("page=2&per_page=5&locale=de&level=advanced&tag=rust"))
            .unwrap();
        assert_eq!((q.page, q.per_page, q.offset()), (2, 5, 5));
        assert_eq!(q.locale.unwrap().as_str(), "de");
        assert_eq!(q.level, Some(Level::Advanced));
        assert_eq!(q.tag.unwrap().as_str(), "rust");
    }

    #[test]
    fn bad_catalog_parameters_name_their_field() {
        let table = [
            ("page=0", "page"),
            ("page=-1", "page"),
            ("page=abc", "page"),
            ("page=501", "page"),
            ("per_page=0", "per_page"),
            ("per_page=51", "per_page"),
            ("locale=EN", "locale"),
            ("locale=eng", "locale"),
            ("level=expert", "level"),
            ("tag=Rust!", "tag"),
            ("tag=", "tag"),
            ("page=%zz", "query"),
        ];
        for (raw, field) in table {
            let err = CatalogQuery::parse(Some(raw)).unwrap_err();
            assert_eq!(err.field, field, "{raw}");
        }
        let long = "a=".to_owned() + &"b".repeat(MAX_QUERY_BYTES);
        assert_eq!(CatalogQuery::parse(Some(&long)).unwrap_err().field, "query");
    }

    #[test]
    fn search_queries_are_tokenized_and_bounded() {
        let q = SearchQuery::parse(Some("q=Rust+%26+Web-Assembly%21")).unwrap();
        assert_eq!(q.tokens(), ["rust", "web", "assembly"]);
        assert_eq!(q.normalized(), "rust web assembly");
        let q = SearchQuery::parse(Some("q=a+b+c+d+e+f+g+h+i+j")).unwrap();
        assert_eq!(q.tokens().len(), SearchQuery::MAX_TOKENS);
        for bad in ["", "q=", "q=+++", "q=%22%27%3A", "limit=3"] {
            assert_eq!(
                SearchQuery::parse(Some(bad)).unwrap_err().field,
                "q",
                "{bad}"
            );
        }
        let long = format!("q={}", "x".repeat(101));
        assert_eq!(SearchQuery::parse(Some(&long)).unwrap_err().field, "q");
        assert_eq!(
            SearchQuery::parse(Some("q=x&limit=99")).unwrap_err().field,
            "limit"
        );
    }

    #[test]
    fn slugs_and_ids() {
        assert!(Slug::parse("intro-to-rust-2").is_ok());
        for bad in ["", "-a", "a-", "A", "a/b", "a b", "..", &"a".repeat(81)] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(VideoId::parse("42"), Ok(VideoId(42)));
        for bad in ["0", "-1", "+1", "x", "99999999999999999999", ""] {
            assert!(VideoId::parse(bad).is_err(), "{bad}");
        }
    }
}
