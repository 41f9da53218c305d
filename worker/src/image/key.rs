//! The one spelling of a derivative's identity: source key + source ETag + normalized
//! options + output format. It names the Cache API entry and the R2 object under
//! `derived/`. Including the source ETag means a replaced original can never serve an
//! old derivative: the new ETag is a new key. R2 files every derivative of one source
//! under one folder ([`DerivativeKey::r2_prefix`]), so replacing the source deletes its
//! old derivatives with one listing.

use sha2::{Digest, Sha256};

use super::format::OutputFormat;
use super::options::ImageOptions;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivativeKey {
    /// `<source key>|<etag>|<normalized options>|<format>`, human-readable.
    identity: String,
    /// Hex SHA-256 of the identity (stable across machines; never `DefaultHasher`).
    digest: String,
    /// The source's folder under `derived/`.
    prefix: String,
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
        let digest = hex_sha256(&identity);
        Self {
            identity,
            digest,
            prefix: Self::r2_prefix(source_key),
        }
    }

    /// The folder of every derivative of `source_key`: `derived/<32 hex of its SHA-256>/`
    /// (a fixed length, so any key up to R2's 1024 bytes fits, and no key can reach
    /// another's folder).
    pub fn r2_prefix(source_key: &str) -> String {
        format!("derived/{}/", &hex_sha256(source_key)[..32])
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The R2 object key: `<r2_prefix>/<digest>.<ext>`.
    pub fn r2_key(&self, format: OutputFormat) -> String {
        format!("{}{}.{}", self.prefix, self.digest, format.as_str())
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
        format!(
            "https://derived.course-edge.internal/{}",
            hex_sha256(&identity)
        )
    }

    /// The edge cache key of a `format=json` description: every option counts (the
    /// description names no output format), kept apart from the derivatives' keys.
    pub fn description_url(source_key: &str, options: &ImageOptions) -> String {
        // What the description depends on: the pixels' options (a placeholder included),
        // never `v=` or `onerror`, which would let anyone mint entries.
        let identity = format!("{source_key}|{}|description", options.pixels_identity());
        format!(
            "https://derived.course-edge.internal/{}",
            hex_sha256(&identity)
        )
    }

    /// Where the working copy of a source version lives (`image::working`): in the source's
    /// folder like its derivatives, so replacing, purging or sweeping the source reaches it.
    pub fn working_copy(source_key: &str, source_etag: &str) -> String {
        let identity = format!(
            "{source_key}|{}|working-copy",
            source_etag.trim_matches('"')
        );
        format!(
            "{}{}.jpeg",
            Self::r2_prefix(source_key),
            hex_sha256(&identity)
        )
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
    fn the_format_request_is_not_part_of_the_key_the_output_format_is() {
        // f=webp, f=auto answered with WebP and f=avif's WebP stand-in are one object;
        // compression=fast's JPEG is f=jpeg's.
        let key = |o: &str, f| DerivativeKey::new("k", "e1", &opts(o), f);
        let webp = key("w=800,f=webp", OutputFormat::Webp);
        assert_eq!(webp, key("w=800", OutputFormat::Webp));
        assert_eq!(webp, key("w=800,f=avif", OutputFormat::Webp));
        assert_eq!(
            key("w=800,compression=fast", OutputFormat::Jpeg),
            key("w=800,f=jpeg", OutputFormat::Jpeg)
        );
        assert_ne!(webp, key("w=800,f=avif", OutputFormat::Avif));
        let edge = |o: &str, f| DerivativeKey::edge_url("k", &opts(o), f);
        assert_eq!(
            edge("w=800,f=avif", OutputFormat::Webp),
            edge("w=800,f=webp", OutputFormat::Webp)
        );
    }

    #[test]
    fn a_description_is_keyed_apart_from_every_derivative() {
        let description = DerivativeKey::description_url("k", &opts("w=800,f=json").canonical());
        for format in [
            OutputFormat::Webp,
            OutputFormat::Avif,
            OutputFormat::Jpeg,
            OutputFormat::Png,
        ] {
            assert_ne!(
                description,
                DerivativeKey::edge_url("k", &opts("w=800").canonical(), format)
            );
        }
        // The placeholder is part of it; equivalent spellings share it.
        assert_ne!(
            description,
            DerivativeKey::description_url(
                "k",
                &opts("w=800,f=json,placeholder=thumbhash").canonical()
            )
        );
        assert_eq!(
            description,
            DerivativeKey::description_url("k", &opts("width=400,dpr=2,format=json").canonical())
        );
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
    fn every_derivative_of_a_source_lives_in_that_source_s_folder() {
        let folder = DerivativeKey::r2_prefix("demo/a.jpg");
        assert_eq!(folder.len(), "derived/".len() + 33);
        for (etag, o, f) in [
            ("e1", "w=800", OutputFormat::Webp),
            ("e2", "w=100,fit=cover", OutputFormat::Avif),
        ] {
            let key = DerivativeKey::new("demo/a.jpg", etag, &opts(o), f).r2_key(f);
            assert!(key.starts_with(&folder), "{key}");
            assert!(!key[folder.len()..].contains('/'), "{key}");
        }
        assert_ne!(folder, DerivativeKey::r2_prefix("demo/a.jpg/x"));
        assert_ne!(folder, DerivativeKey::r2_prefix("demo/b.jpg"));
        // The longest key a source may have still gives a key R2 accepts (1024 bytes).
        let long = "k".repeat(1024);
        let key = DerivativeKey::new(&long, "e", &opts("w=1"), OutputFormat::Webp);
        assert!(key.r2_key(OutputFormat::Webp).len() <= 1024);
    }

    #[test]
    fn a_working_copy_lives_in_its_source_s_folder_once_per_version() {
        let copy = DerivativeKey::working_copy("demo/a.jpg", "\"e1\"");
        assert!(copy.starts_with(&DerivativeKey::r2_prefix("demo/a.jpg")));
        assert!(copy.ends_with(".jpeg"));
        assert_eq!(copy, DerivativeKey::working_copy("demo/a.jpg", "e1"));
        assert_ne!(copy, DerivativeKey::working_copy("demo/a.jpg", "e2"));
        let derivative = DerivativeKey::new("demo/a.jpg", "e1", &opts(""), OutputFormat::Jpeg);
        assert_ne!(copy, derivative.r2_key(OutputFormat::Jpeg));
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
