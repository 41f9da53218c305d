//! The cache-header policy: the declarative table ([`table`]), what may be stored and
//! the headers to emit ([`headers`]), freshness windows ([`freshness`]), the normalized
//! cache key ([`key`]); HTTP dates come from `protocol::http_date`. All pure; the glue in
//! `edge::cache` applies them.

pub mod flow;
pub mod forward;
pub mod freshness;
pub mod headers;
pub mod key;
pub mod purge;
pub mod stored;
pub mod table;

pub use freshness::Freshness;
pub use headers::{Lifetimes, NoStoreReason, OriginDirectives, Storage};
pub use key::CacheKey;
pub use protocol::http_date;
pub use table::{Audience, ContentClass, Policy, PolicyTable};

/// `If-None-Match` (weak comparison) or, without it, `If-Modified-Since`, against a
/// representation's validators: whether a 304 may be answered.
pub fn not_modified(
    if_none_match: Option<&str>,
    if_modified_since: Option<&str>,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> bool {
    if let Some(inm) = if_none_match {
        let Some(etag) = etag else { return false };
        let ours = etag.trim_start_matches("W/");
        return inm
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == ours);
    }
    match (
        if_modified_since.and_then(http_date::parse),
        last_modified.and_then(http_date::parse),
    ) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditionals() {
        let etag = Some("\"abc\"");
        assert!(not_modified(Some("\"abc\""), None, etag, None));
        assert!(not_modified(Some("W/\"abc\", \"x\""), None, etag, None));
        assert!(not_modified(Some("*"), None, etag, None));
        assert!(!not_modified(Some("\"x\""), None, etag, None));
        assert!(!not_modified(Some("\"abc\""), None, None, None));
        let lm = Some("Wed, 25 Nov 2026 10:00:00 GMT");
        assert!(not_modified(
            None,
            Some("Wed, 25 Nov 2026 10:00:00 GMT"),
            None,
            lm
        ));
        assert!(not_modified(
            None,
            Some("Thu, 26 Nov 2026 10:00:00 GMT"),
            None,
            lm
        ));
        assert!(!not_modified(
            None,
            Some("Tue, 24 Nov 2026 10:00:00 GMT"),
            None,
            lm
        ));
        // If-None-Match wins over If-Modified-Since.
        assert!(!not_modified(
            Some("\"x\""),
            Some("Thu, 26 Nov 2026 10:00:00 GMT"),
            etag,
            lm
        ));
    }
}
