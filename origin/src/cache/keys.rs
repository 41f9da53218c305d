//! The one spelling of every origin cache key, built only from parsed inputs. Two
//! requests that mean the same thing (parameter order, defaults spelled out or not)
//! get the same key because the parsed value is what is spelled.

use protocol::Segment;

use super::Domain;
use crate::domain::{CatalogQuery, SearchQuery, Slug, VideoId};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub domain: Domain,
    text: String,
}

impl CacheKey {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn catalog(q: &CatalogQuery) -> Self {
        let text = format!(
            "catalog:p={}&n={}&locale={}&level={}&tag={}",
            q.page,
            q.per_page,
            q.locale.as_ref().map_or("", |l| l.as_str()),
            q.level.map_or("", |l| l.as_str()),
            q.tag.as_ref().map_or("", |t| t.as_str()),
        );
        Self {
            domain: Domain::Catalog,
            text,
        }
    }

    pub fn course(slug: &Slug) -> Self {
        Self {
            domain: Domain::Course,
            text: format!("course:{slug}"),
        }
    }

    pub fn search(q: &SearchQuery) -> Self {
        Self {
            domain: Domain::Search,
            text: format!("search:{}&n={}", q.normalized(), q.limit),
        }
    }

    pub fn video(id: VideoId) -> Self {
        Self {
            domain: Domain::Video,
            text: format!("video:{}", id.0),
        }
    }

    pub fn feed(segment: &Segment) -> Self {
        Self {
            domain: Domain::Feed,
            text: format!("feed:{segment}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalent_catalog_queries_share_a_key() {
        let a = CatalogQuery::parse(Some("locale=en&page=1")).unwrap();
        let b = CatalogQuery::parse(Some("per_page=20&locale=en&utm_source=x")).unwrap();
        assert_eq!(CacheKey::catalog(&a), CacheKey::catalog(&b));
        let c = CatalogQuery::parse(Some("locale=de")).unwrap();
        assert_ne!(CacheKey::catalog(&a), CacheKey::catalog(&c));
    }

    #[test]
    fn equivalent_searches_share_a_key() {
        let a = SearchQuery::parse(Some("q=Rust%20%20Web")).unwrap();
        let b = SearchQuery::parse(Some("q=rust,web")).unwrap();
        assert_eq!(CacheKey::search(&a), CacheKey::search(&b));
        assert_eq!(CacheKey::search(&a).as_str(), "search:rust web&n=10");
    }

    #[test]
    fn keys_are_prefixed_by_domain() {
        let slug = Slug::parse("intro").unwrap();
        assert_eq!(CacheKey::course(&slug).as_str(), "course:intro");
        assert_eq!(CacheKey::video(VideoId(3)).as_str(), "video:3");
        let seg = Segment::parse("pro-en").unwrap();
        assert_eq!(CacheKey::feed(&seg).as_str(), "feed:pro-en");
    }
}
