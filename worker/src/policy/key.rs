//! The one spelling of an edge cache key: canonical scheme and host, the path, the
//! query with tracking parameters dropped and the rest sorted, and — for per-segment
//! classes — the segment as an order-insensitive variance part. The same normalized
//! query is what the origin is asked for, so a key always names what it holds.

/// Query parameters that never change a response (marketing attribution).
const TRACKING: [&str; 7] = [
    "fbclid", "gclid", "msclkid", "dclid", "gbraid", "wbraid", "mc_eid",
];
/// Prefix reserved for the edge's own variance parameters (dropped from client input).
const RESERVED: &str = "__ce_";

fn is_dropped(name: &str) -> bool {
    name.starts_with("utm_") || TRACKING.contains(&name) || name.starts_with(RESERVED)
}

/// Which query parameters of a class reach the key — and the origin, which is asked for
/// exactly what the key names. Anything else is dropped, so `?z=<random>` cannot mint
/// a new entry (or reach the origin) for a class that does not read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKeep {
    /// The class reads no parameters (R2 objects, images, feeds, video metadata).
    Nothing,
    /// Only these names.
    Only(&'static [&'static str]),
    /// Every parameter but tracking ones (the pass-through class: the URL is the key,
    /// RFC 9111 §4.1).
    AllButTracking,
}

impl QueryKeep {
    fn keeps(self, name: &str) -> bool {
        if is_dropped(name) {
            return false;
        }
        match self {
            Self::Nothing => false,
            Self::Only(names) => names.contains(&name),
            Self::AllButTracking => true,
        }
    }
}

/// The query with what the class does not read dropped and the rest sorted (stable,
/// bytewise); `None` when nothing is left.
pub fn normalize_query(query: Option<&str>, keep: QueryKeep) -> Option<String> {
    let mut pairs: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| keep.keeps(p.split_once('=').map_or(*p, |(n, _)| n)))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    pairs.sort_unstable();
    Some(pairs.join("&"))
}

/// The key of one variant of a response that says `Vary: <names>` (RFC 9111 §4.1): the
/// primary key plus a digest of the request's values of those headers (absent and
/// empty differ). `header` looks a request header up by its lowercase name. Without
/// names, the primary key itself.
pub fn variant_key(
    primary: &str,
    names: &[String],
    header: impl Fn(&str) -> Option<String>,
) -> String {
    use sha2::{Digest, Sha256};
    if names.is_empty() {
        return primary.to_owned();
    }
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut hasher = Sha256::new();
    for name in sorted {
        hasher.update(name.as_bytes());
        match header(name) {
            Some(value) => {
                hasher.update(b"=");
                hasher.update(value.trim().as_bytes());
            }
            None => hasher.update(b"!"),
        }
        hasher.update(b"\n");
    }
    let digest: String = hasher.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let sep = if primary.contains('?') { '&' } else { '?' };
    format!("{primary}{sep}{RESERVED}variant={digest}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(String);

impl CacheKey {
    /// `host` is the canonical host (lowercased here); `segment` is the variance part
    /// for per-segment classes.
    /// `query` is the normalized query ([`normalize_query`]).
    pub fn new(host: &str, path: &str, query: Option<&str>, segment: Option<&str>) -> Self {
        let mut key = format!("https://{}{}", host.to_ascii_lowercase(), path);
        let mut sep = '?';
        if let Some(query) = query {
            key.push(sep);
            key.push_str(query);
            sep = '&';
        }
        if let Some(segment) = segment {
            key.push(sep);
            key.push_str(RESERVED);
            key.push_str("segment=");
            key.push_str(segment);
        }
        Self(key)
    }

    /// The key of the canary arm's copy: the stable arm keeps the plain key (so turning
    /// a canary on leaves the stable cache warm), the canary's answers get their own
    /// entries, and neither is ever served to the other arm.
    pub fn for_arm(self, arm: crate::canary::Arm) -> Self {
        match arm {
            crate::canary::Arm::Stable => self,
            crate::canary::Arm::Canary => {
                let sep = if self.0.contains('?') { '&' } else { '?' };
                Self(format!("{}{sep}{RESERVED}arm=canary", self.0))
            }
        }
    }

    /// The key of an R2 object served as stored (`url_path`: its escaped path): a
    /// reserved host, so one entry serves the object whatever host or query the
    /// request came with. `uploaded` (`/media/`, served with the active-content guard)
    /// is its own entry: the same object read as a site asset under `/static/` must
    /// never take the upload's headers, nor the upload lose them.
    pub fn object(url_path: &str, uploaded: bool) -> Self {
        let door = if uploaded { "media" } else { "site" };
        Self(format!(
            "https://objects.course-edge.internal/{door}/{url_path}"
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: QueryKeep = QueryKeep::AllButTracking;

    fn key(host: &str, path: &str, query: Option<&str>, segment: Option<&str>) -> CacheKey {
        CacheKey::new(host, path, normalize_query(query, ALL).as_deref(), segment)
    }

    #[test]
    fn reordered_and_tracked_urls_share_one_key() {
        let a = key(
            "Edge.Example",
            "/api/catalog",
            Some("locale=en&page=2"),
            None,
        );
        let b = key(
            "edge.example",
            "/api/catalog",
            Some("utm_source=x&page=2&fbclid=1&locale=en&gclid=2&utm_medium=y"),
            None,
        );
        assert_eq!(a, b);
        assert_eq!(
            a.as_str(),
            "https://edge.example/api/catalog?locale=en&page=2"
        );
    }

    #[test]
    fn different_values_and_paths_differ() {
        let a = key("h", "/api/catalog", Some("page=1"), None);
        for other in [
            key("h", "/api/catalog", Some("page=2"), None),
            key("h", "/api/search", Some("page=1"), None),
            key("h", "/api/catalog", None, None),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn segments_vary_the_key_and_cannot_be_forged_through_the_query() {
        let anon = key("h", "/api/feed", None, Some("anon-en"));
        let pro = key("h", "/api/feed", None, Some("pro-en"));
        assert_ne!(anon, pro);
        assert_eq!(anon.as_str(), "https://h/api/feed?__ce_segment=anon-en");
        let forged = key(
            "h",
            "/api/feed",
            Some("__ce_segment=pro-en"),
            Some("anon-en"),
        );
        assert_eq!(forged, anon);
    }

    #[test]
    fn the_canary_arm_has_its_own_keys_and_the_stable_arm_keeps_its_own() {
        use crate::canary::Arm;
        let plain = key("h", "/api/catalog", Some("page=2"), None);
        assert_eq!(plain.clone().for_arm(Arm::Stable), plain);
        assert_eq!(
            plain.clone().for_arm(Arm::Canary).as_str(),
            "https://h/api/catalog?page=2&__ce_arm=canary"
        );
        assert_eq!(
            key("h", "/", None, Some("anon-en"))
                .for_arm(Arm::Canary)
                .as_str(),
            "https://h/?__ce_segment=anon-en&__ce_arm=canary"
        );
        assert_eq!(
            key("h", "/x", None, None).for_arm(Arm::Canary).as_str(),
            "https://h/x?__ce_arm=canary"
        );
        // A client cannot ask for the canary's copy through the query.
        assert_eq!(
            key("h", "/api/catalog", Some("page=2&__ce_arm=canary"), None),
            plain
        );
    }

    #[test]
    fn an_empty_query_is_no_query() {
        assert_eq!(normalize_query(Some("&&utm_x=1"), ALL), None);
        assert_eq!(
            normalize_query(Some("b=2&a=1"), ALL).as_deref(),
            Some("a=1&b=2")
        );
    }

    #[test]
    fn a_class_keys_only_the_parameters_it_reads() {
        let catalog = QueryKeep::Only(&["page", "locale"]);
        assert_eq!(
            normalize_query(Some("z=8123&page=2&locale=en&utm_x=1"), catalog).as_deref(),
            Some("locale=en&page=2")
        );
        assert_eq!(
            normalize_query(Some("z=1&page"), catalog).as_deref(),
            Some("page")
        );
        assert_eq!(normalize_query(Some("v=1&w=2"), QueryKeep::Nothing), None);
        assert_eq!(
            normalize_query(Some("__ce_segment=pro-en"), ALL),
            None,
            "the edge's own names never come from a client"
        );
    }

    #[test]
    fn variants_are_keyed_by_the_named_headers_only() {
        let names = vec![String::from("accept-language"), String::from("x-mode")];
        let h = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            }
        };
        let en = variant_key("https://h/p?a=1", &names, h(&[("accept-language", "en")]));
        assert!(en.starts_with("https://h/p?a=1&__ce_variant="), "{en}");
        assert_eq!(
            en,
            variant_key(
                "https://h/p?a=1",
                &[String::from("x-mode"), String::from("accept-language")],
                h(&[("accept-language", " en "), ("cookie", "other")])
            ),
            "order, surrounding space and unnamed headers do not matter"
        );
        for other in [
            variant_key("https://h/p?a=1", &names, h(&[("accept-language", "de")])),
            variant_key("https://h/p?a=1", &names, h(&[])),
            variant_key(
                "https://h/p?a=1",
                &names,
                h(&[("accept-language", "en"), ("x-mode", "")]),
            ),
        ] {
            assert_ne!(en, other);
        }
        assert_eq!(variant_key("https://h/p", &[], h(&[])), "https://h/p");
    }

    #[test]
    fn an_upload_and_a_site_asset_are_different_entries() {
        assert_ne!(
            CacheKey::object("static/app.js", true),
            CacheKey::object("static/app.js", false)
        );
    }
}
