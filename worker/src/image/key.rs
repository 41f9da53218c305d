//! The one spelling of a derivative's identity: source key + source ETag + normalized
//! options + output format. It names the Cache API entry and the R2 object under
//! `derived/`. Including the source ETag means a replaced original can never serve an
//! old derivative: the new ETag is a new key, and the old entries simply age out.

use sha2::{Digest, Sha256};

use super::format::OutputFormat;
use super::options::ImageOptions;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivativeKey {
    /// `<source key>|<etag>|<normalized options>|<format>`, human-readable.
    identity: String,
    /// Hex SHA-256 of the identity (stable across machines; never `DefaultHasher`).
    digest: String,
}

impl DerivativeKey {
    pub fn new(
        source_key: &str,
        source_etag: &str,
        options: &ImageOptions,
        format: OutputFormat,
    ) -> Self {
        let identity = format!(
            "{source_key}|{}|{}|{}",
            source_etag.trim_matches('"'),
            options.pixels_identity(),
            format.as_str()
        );
        let digest = Sha256::digest(identity.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self { identity, digest }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The R2 object key: `derived/<2-char shard>/<digest>.<ext>`.
    pub fn r2_key(&self, format: OutputFormat) -> String {
        format!(
            "derived/{}/{}.{}",
            &self.digest[..2],
            self.digest,
            format.as_str()
        )
    }

    /// The edge cache key of a derivative: source key + options + format, *without* the
    /// source ETag — the entry records the version it was made from and is revalidated
    /// against the source's current ETag (`IMAGE_SOURCE_TTL`), so a hit needs no R2
    /// `head`. A URL on a reserved host, so it never collides with a page.
    pub fn edge_url(source_key: &str, options: &ImageOptions, format: OutputFormat) -> String {
        let identity = format!(
            "{source_key}|{}|{}",
            options.pixels_identity(),
            format.as_str()
        );
        let digest: String = Sha256::digest(identity.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("https://derived.course-edge.internal/{digest}")
    }

    /// A strong ETag for the derivative.
    pub fn etag(&self) -> String {
        format!("\"{}\"", &self.digest[..32])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &str) -> ImageOptions {
        ImageOptions::parse(s).unwrap().options
    }

    #[test]
    fn equivalent_urls_share_a_key_and_sig_is_not_part_of_it() {
        let a = DerivativeKey::new(
            "demo/a.jpg",
            "\"e1\"",
            &opts("width=800,quality=85"),
            OutputFormat::Webp,
        );
        let b = DerivativeKey::new(
            "demo/a.jpg",
            "e1",
            &opts("w=800,sig=abcd"),
            OutputFormat::Webp,
        );
        assert_eq!(a, b);
        assert_eq!(a.identity(), "demo/a.jpg|e1|w=800|webp");
    }

    #[test]
    fn source_version_options_and_format_all_change_the_key() {
        let base = DerivativeKey::new("k", "e1", &opts("w=800"), OutputFormat::Webp);
        for other in [
            DerivativeKey::new("k", "e2", &opts("w=800"), OutputFormat::Webp),
            DerivativeKey::new("k", "e1", &opts("w=801"), OutputFormat::Webp),
            DerivativeKey::new("k", "e1", &opts("w=800"), OutputFormat::Avif),
            DerivativeKey::new("k2", "e1", &opts("w=800"), OutputFormat::Webp),
        ] {
            assert_ne!(base, other);
        }
        assert!(base.r2_key(OutputFormat::Webp).starts_with("derived/"));
        assert!(base.r2_key(OutputFormat::Webp).ends_with(".webp"));
        assert_eq!(base.etag().len(), 34);
    }

    #[test]
    fn the_edge_key_names_everything_but_the_source_version() {
        let url = |k: &str, o: &str, f| DerivativeKey::edge_url(k, &opts(o), f);
        let base = url("k", "w=800", OutputFormat::Webp);
        assert_eq!(base, url("k", "width=800,sig=ab", OutputFormat::Webp));
        for other in [
            url("k", "w=801", OutputFormat::Webp),
            url("k", "w=800", OutputFormat::Avif),
            url("k2", "w=800", OutputFormat::Webp),
        ] {
            assert_ne!(base, other);
        }
        assert!(base.starts_with("https://derived.course-edge.internal/"));
    }
}
