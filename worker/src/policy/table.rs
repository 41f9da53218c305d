//! THE CACHE POLICY TABLE — one row per content class. An SRE changes lifetimes here
//! (defaults) or per deployment with wrangler vars, without touching any other code:
//!
//! ```toml
//! [vars]
//! POLICY_CATALOG = "browser=60 edge=300 swr=60 sie=86400"
//! ```
//!
//! * `browser` — `max-age` browsers get in `Cache-Control`.
//! * `edge` — how long the edge serves its copy as fresh (`CDN-Cache-Control: max-age`;
//!   `s-maxage` is never used: on Cloudflare it disables stale serving).
//! * `swr` — stale-while-revalidate window after `edge` (RFC 5861): served at once,
//!   refreshed in the background.
//! * `sie` — stale-if-error window after `edge` (RFC 5861): served when the origin fails.
//! * `immutable` (RFC 8246) for content addressed by hash; `private` for per-viewer
//!   answers browsers may keep but shared caches may not.
//!
//! Sessions are `private, no-store` and never stored; 5xx and 429 are never stored;
//! 404/410 are negatively cached briefly; unmatched paths pass through honouring the
//! origin's own headers (RFC 9111).

use std::fmt;

use super::key::QueryKeep;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentClass {
    /// `/static/name.<hash>.ext`: content-addressed, never changes.
    HashedStatic,
    /// `/static/…` without a hash.
    Static,
    /// `/img/…` derivatives.
    Image,
    /// `/video/…/*.m3u8|*.mpd` of a finished video.
    PlaylistVod,
    /// `/video/live/…` playlists: they change every segment.
    PlaylistLive,
    /// `/video/…/*.ts|*.m4s|*.mp4|*.aac|*.vtt`: immutable once written.
    MediaSegment,
    /// `/api/catalog`, `/api/courses/{slug}`.
    Catalog,
    Search,
    VideoMeta,
    /// `/api/feed`: per segment.
    Feed,
    /// HTML pages: per segment.
    Html,
    /// `/api/sessions…`: never in a shared cache.
    Session,
    /// Answers 404/410 of any class (negative caching).
    NotFound,
    /// No rule matched: the origin's headers decide.
    PassThrough,
}

impl ContentClass {
    pub const ALL: [ContentClass; 14] = [
        Self::HashedStatic,
        Self::Static,
        Self::Image,
        Self::PlaylistVod,
        Self::PlaylistLive,
        Self::MediaSegment,
        Self::Catalog,
        Self::Search,
        Self::VideoMeta,
        Self::Feed,
        Self::Html,
        Self::Session,
        Self::NotFound,
        Self::PassThrough,
    ];

    /// Position in [`Self::ALL`] and in the table's rows. An exhaustive match: a new
    /// class does not compile until it has a row (no silent fallback to another row).
    pub const fn index(self) -> usize {
        match self {
            Self::HashedStatic => 0,
            Self::Static => 1,
            Self::Image => 2,
            Self::PlaylistVod => 3,
            Self::PlaylistLive => 4,
            Self::MediaSegment => 5,
            Self::Catalog => 6,
            Self::Search => 7,
            Self::VideoMeta => 8,
            Self::Feed => 9,
            Self::Html => 10,
            Self::Session => 11,
            Self::NotFound => 12,
            Self::PassThrough => 13,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HashedStatic => "hashed-static",
            Self::Static => "static",
            Self::Image => "image",
            Self::PlaylistVod => "playlist-vod",
            Self::PlaylistLive => "playlist-live",
            Self::MediaSegment => "media-segment",
            Self::Catalog => "catalog",
            Self::Search => "search",
            Self::VideoMeta => "video-meta",
            Self::Feed => "feed",
            Self::Html => "html",
            Self::Session => "session",
            Self::NotFound => "not-found",
            Self::PassThrough => "pass-through",
        }
    }

    /// The query parameters that reach this class's key and its origin request (the
    /// names the origin's handlers read; see `origin/src/domain/input.rs`).
    pub const fn query(self) -> QueryKeep {
        match self {
            Self::Catalog => QueryKeep::Only(&["page", "per_page", "locale", "level", "tag"]),
            Self::Search => QueryKeep::Only(&["q", "limit"]),
            Self::Html => QueryKeep::Only(&["q", "page"]),
            Self::PassThrough | Self::Session => QueryKeep::AllButTracking,
            Self::HashedStatic
            | Self::Static
            | Self::Image
            | Self::PlaylistVod
            | Self::PlaylistLive
            | Self::MediaSegment
            | Self::VideoMeta
            | Self::Feed
            | Self::NotFound => QueryKeep::Nothing,
        }
    }

    /// Request headers whose variance the class's key already carries, so an answer
    /// that says `Vary` on them may be stored: an image's key holds the format
    /// negotiated from `Accept`.
    pub const fn keyed_headers(self) -> &'static [&'static str] {
        match self {
            Self::Image => &["accept"],
            _ => &[],
        }
    }

    /// The wrangler var that overrides this class's row.
    pub fn var_name(self) -> String {
        format!(
            "POLICY_{}",
            self.as_str().replace('-', "_").to_ascii_uppercase()
        )
    }
}

impl fmt::Display for ContentClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may keep a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Browsers and shared caches; cookies are stripped before the origin sees the request.
    Shared,
    /// Shared at the edge but keyed by the viewer's segment (never by user).
    PerSegment,
    /// Only the viewer's browser (`private`); the edge does not store it.
    Private,
    /// Nobody (`private, no-store`).
    Nobody,
    /// Whatever the origin's headers say (the pass-through class).
    Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub audience: Audience,
    /// Browser `max-age`, seconds.
    pub browser: u32,
    /// Edge freshness, seconds.
    pub edge: u32,
    /// Stale-while-revalidate window, seconds.
    pub swr: u32,
    /// Stale-if-error window, seconds.
    pub sie: u32,
    pub immutable: bool,
}

const DAY: u32 = 86_400;
const YEAR: u32 = 365 * DAY;

const fn row(audience: Audience, browser: u32, edge: u32, swr: u32, sie: u32) -> Policy {
    Policy {
        audience,
        browser,
        edge,
        swr,
        sie,
        immutable: false,
    }
}

const fn immutable(edge_sie: u32) -> Policy {
    Policy {
        audience: Audience::Shared,
        browser: YEAR,
        edge: YEAR,
        swr: 0,
        sie: edge_sie,
        immutable: true,
    }
}

/// The defaults. Read this as the table it is.
pub const fn default_policy(class: ContentClass) -> Policy {
    use Audience::*;
    use ContentClass::*;
    match class {
        //                             audience    browser  edge      swr   sie
        HashedStatic => immutable(0),
        Static => row(Shared, 300, 3600, DAY, DAY),
        Image => row(Shared, DAY, 30 * DAY, DAY, 7 * DAY),
        PlaylistVod => row(Shared, 300, 3600, 60, DAY),
        PlaylistLive => row(Shared, 1, 2, 0, 10),
        MediaSegment => immutable(DAY),
        Catalog => row(Shared, 60, 300, 60, DAY),
        Search => row(Shared, 30, 60, 30, 3600),
        VideoMeta => row(Shared, 300, 1800, 300, DAY),
        Feed => row(PerSegment, 0, 600, 60, DAY),
        Html => row(PerSegment, 0, 60, 30, DAY),
        Session => row(Nobody, 0, 0, 0, 0),
        NotFound => row(Shared, 30, 60, 0, 0),
        PassThrough => row(Origin, 0, 0, 0, 0),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub var: String,
    pub why: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wrangler var {} is invalid: {} (expected e.g. \"browser=60 edge=300 swr=60 sie=86400\")",
            self.var, self.why
        )
    }
}

impl std::error::Error for PolicyError {}

/// The table in force: defaults with the wrangler-var overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTable {
    rows: [Policy; 14],
}

impl Default for PolicyTable {
    fn default() -> Self {
        Self {
            rows: ContentClass::ALL.map(default_policy),
        }
    }
}

/// Longest lifetime any field accepts (one year).
const MAX_SECS: u32 = YEAR;

impl PolicyTable {
    pub fn get(&self, class: ContentClass) -> Policy {
        self.rows[class.index()]
    }

    /// Defaults overridden by `POLICY_<CLASS>` vars found through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, PolicyError> {
        let mut table = Self::default();
        for (i, class) in ContentClass::ALL.iter().enumerate() {
            let var = class.var_name();
            if let Some(spec) = lookup(&var) {
                table.rows[i] =
                    parse_override(table.rows[i], &spec).map_err(|why| PolicyError {
                        var: var.clone(),
                        why,
                    })?;
            }
        }
        Ok(table)
    }
}

fn parse_override(mut policy: Policy, spec: &str) -> Result<Policy, String> {
    if spec.len() > 200 {
        return Err(String::from("longer than 200 characters"));
    }
    for part in spec.split_whitespace() {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not name=value"))?;
        let field = match name {
            "browser" => &mut policy.browser,
            "edge" => &mut policy.edge,
            "swr" => &mut policy.swr,
            "sie" => &mut policy.sie,
            "immutable" => {
                policy.immutable = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(String::from("immutable is true or false")),
                };
                continue;
            }
            other => return Err(format!("unknown field {other:?}")),
        };
        *field = value
            .parse::<u32>()
            .ok()
            .filter(|v| *v <= MAX_SECS)
            .ok_or_else(|| format!("{name} must be whole seconds up to {MAX_SECS}"))?;
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_lifetimes_are_the_defaults() {
        let t = PolicyTable::default();
        assert_eq!(t.get(ContentClass::Catalog).edge, 300);
        assert_eq!(t.get(ContentClass::Search).edge, 60);
        assert_eq!(t.get(ContentClass::VideoMeta).edge, 1800);
        assert_eq!(t.get(ContentClass::Feed).edge, 600);
        assert_eq!(t.get(ContentClass::Feed).audience, Audience::PerSegment);
        assert_eq!(t.get(ContentClass::Session).audience, Audience::Nobody);
        let hashed = t.get(ContentClass::HashedStatic);
        assert!(hashed.immutable && hashed.browser == YEAR);
        assert!(t.get(ContentClass::PlaylistLive).edge < t.get(ContentClass::PlaylistVod).edge);
    }

    #[test]
    fn vars_override_single_fields() {
        let t = PolicyTable::from_lookup(|var| {
            (var == "POLICY_CATALOG").then(|| String::from("edge=2 swr=3 sie=4"))
        })
        .unwrap();
        let catalog = t.get(ContentClass::Catalog);
        assert_eq!(
            (catalog.browser, catalog.edge, catalog.swr, catalog.sie),
            (60, 2, 3, 4)
        );
        assert_eq!(
            t.get(ContentClass::Search),
            default_policy(ContentClass::Search)
        );
    }

    #[test]
    fn bad_overrides_name_the_var() {
        for bad in [
            "edge",
            "edge=-1",
            "edge=x",
            "ttl=5",
            "edge=99999999",
            "immutable=yes",
        ] {
            let err = PolicyTable::from_lookup(|var| {
                (var == "POLICY_VIDEO_META").then(|| bad.to_owned())
            })
            .unwrap_err();
            assert_eq!(err.var, "POLICY_VIDEO_META", "{bad}");
            assert!(err.to_string().contains("browser=60"), "{err}");
        }
    }

    #[test]
    fn every_class_has_its_own_row() {
        for (i, class) in ContentClass::ALL.iter().enumerate() {
            assert_eq!(class.index(), i, "{class}");
            assert_eq!(PolicyTable::default().get(*class), default_policy(*class));
        }
    }

    #[test]
    fn every_class_has_a_var_name() {
        assert_eq!(ContentClass::PassThrough.var_name(), "POLICY_PASS_THROUGH");
        assert_eq!(
            ContentClass::HashedStatic.var_name(),
            "POLICY_HASHED_STATIC"
        );
    }
}
