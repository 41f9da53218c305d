//! The lifecycle of `derived/`: every derivative in R2 records the source key and ETag it
//! was made from (custom metadata), and the sweeper (a cron trigger, `edge::sweep`) deletes
//! those whose source is gone or replaced — a replaced source's derivatives can never be
//! served again (their key holds the old ETag), so they are only cost. Production adds an
//! age-based R2 lifecycle rule on `derived/` as the backstop (see the README).

use std::collections::HashMap;

/// Custom-metadata names on a `derived/` object.
pub const SOURCE_KEY: &str = "source-key";
pub const SOURCE_ETAG: &str = "source-etag";
/// The purge ledger's generation read before the derivative was made: a purge of its
/// source (or of a URL it answers for) with a newer generation means it must be made
/// again (`policy::purge::reuse`), whether or not the source changed.
pub const PURGE_GENERATION: &str = "purge-generation";
/// Where the sweeper keeps its place between runs (inside `derived/`, which no route
/// serves; the sweeper skips it).
pub const CURSOR_KEY: &str = "derived/_sweep-cursor";

/// Whether a `derived/` key is the edge's own bookkeeping (the sweep cursor, the upload
/// purge outbox), never a derivative: derivative folders are hex, so `derived/_` is free.
pub fn is_internal(key: &str) -> bool {
    key.starts_with("derived/_")
}

/// What a derivative was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedFrom {
    pub source_key: String,
    /// The source's ETag, without quotes.
    pub source_etag: String,
    /// The purge ledger's generation read before it was made (0 when unknown: written
    /// before derivatives recorded it, or with the ledger unreachable; every purge that
    /// covers its source is then newer).
    pub generation: u64,
}

impl DerivedFrom {
    pub fn new(source_key: &str, source_etag: &str) -> Self {
        Self {
            source_key: source_key.to_owned(),
            source_etag: source_etag.trim_matches('"').to_owned(),
            generation: 0,
        }
    }

    /// The same, made under purge generation `generation`.
    pub fn at_generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    pub fn to_metadata(&self) -> HashMap<String, String> {
        HashMap::from([
            (SOURCE_KEY.to_owned(), self.source_key.clone()),
            (SOURCE_ETAG.to_owned(), self.source_etag.clone()),
            (PURGE_GENERATION.to_owned(), self.generation.to_string()),
        ])
    }

    /// What a stored object says it was made from; an unreadable generation reads as 0
    /// (checked against every purge of its source: the safe side).
    pub fn from_metadata(meta: &HashMap<String, String>) -> Option<Self> {
        let generation = meta
            .get(PURGE_GENERATION)
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        Some(Self::new(meta.get(SOURCE_KEY)?, meta.get(SOURCE_ETAG)?).at_generation(generation))
    }
}

/// What the sweeper does with one `derived/` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Delete(Reason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The source object no longer exists.
    SourceGone,
    /// The source was replaced (another ETag): this derivative's key can never be asked.
    SourceReplaced,
    /// No record of its source (written before sources were recorded): it is rebuilt on
    /// demand if still wanted.
    Unattributed,
    /// Not in its source's folder (the layout before per-source folders): no listing
    /// of that folder would find it when the source is replaced.
    Misfiled,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SourceGone => "source-gone",
            Self::SourceReplaced => "source-replaced",
            Self::Unattributed => "unattributed",
            Self::Misfiled => "misfiled",
        }
    }
}

/// The verdict for the derivative at `key`, made `from` a source whose current ETag is
/// `current_etag` (`None`: the source is gone).
pub fn verdict(key: &str, from: Option<&DerivedFrom>, current_etag: Option<&str>) -> Verdict {
    let Some(from) = from else {
        return Verdict::Delete(Reason::Unattributed);
    };
    if !key.starts_with(&super::key::DerivativeKey::r2_prefix(&from.source_key)) {
        return Verdict::Delete(Reason::Misfiled);
    }
    match current_etag {
        None => Verdict::Delete(Reason::SourceGone),
        Some(etag) if etag.trim_matches('"') != from.source_etag => {
            Verdict::Delete(Reason::SourceReplaced)
        }
        Some(_) => Verdict::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_of_gone_or_replaced_sources_are_deleted() {
        let from = DerivedFrom::new("demo/a.jpg", "\"e1\"");
        assert_eq!(from.source_etag, "e1");
        assert_eq!(
            DerivedFrom::from_metadata(&from.to_metadata()),
            Some(from.clone())
        );
        let key = format!(
            "{}abc.webp",
            crate::image::key::DerivativeKey::r2_prefix("demo/a.jpg")
        );
        let key = key.as_str();
        assert_eq!(verdict(key, Some(&from), Some("\"e1\"")), Verdict::Keep);
        assert_eq!(verdict(key, Some(&from), Some("e1")), Verdict::Keep);
        assert_eq!(
            verdict(key, Some(&from), Some("\"e2\"")),
            Verdict::Delete(Reason::SourceReplaced)
        );
        assert_eq!(
            verdict(key, Some(&from), None),
            Verdict::Delete(Reason::SourceGone)
        );
        assert_eq!(
            verdict(key, None, Some("e1")),
            Verdict::Delete(Reason::Unattributed)
        );
        assert!(is_internal(CURSOR_KEY));
        assert!(!is_internal(key));
        // The old two-character shards: deleted, and made again in the right folder.
        assert_eq!(
            verdict("derived/ab/abc.webp", Some(&from), Some("e1")),
            Verdict::Delete(Reason::Misfiled)
        );
        assert_eq!(DerivedFrom::from_metadata(&HashMap::new()), None);
    }

    #[test]
    fn the_purge_generation_round_trips_and_reads_as_zero_when_missing_or_garbled() {
        let from = DerivedFrom::new("demo/a.jpg", "e1").at_generation(42);
        let mut meta = from.to_metadata();
        assert_eq!(DerivedFrom::from_metadata(&meta), Some(from));
        meta.insert(PURGE_GENERATION.to_owned(), String::from("-3"));
        assert_eq!(
            DerivedFrom::from_metadata(&meta).map(|f| f.generation),
            Some(0)
        );
        meta.remove(PURGE_GENERATION);
        assert_eq!(
            DerivedFrom::from_metadata(&meta).map(|f| f.generation),
            Some(0)
        );
    }
}
