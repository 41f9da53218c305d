//! What may be stored at the edge, and the headers browsers and downstream CDNs get,
//! for one response of one class. Pure: status and origin headers in, decisions out.

use super::flow::is_failure;
use super::table::{Audience, ContentClass, Policy, default_policy};

/// The lifetimes an edge entry is stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub edge: u32,
    pub swr: u32,
    pub sie: u32,
}

impl Lifetimes {
    /// How long the Cache API must keep the entry: fresh plus the longer stale window,
    /// plus — when the entry has validators — a grace period in which it is no longer
    /// served but can still be revalidated with a conditional request (a 304 is cheaper
    /// than a full body). The Cache API forgets an entry when its own max-age runs out,
    /// so it is given this, and freshness is decided by our stored-at time instead.
    pub fn retention(&self, has_validators: bool) -> u32 {
        let grace = if has_validators {
            self.edge.clamp(60, 86_400)
        } else {
            0
        };
        self.edge
            .saturating_add(self.swr.max(self.sie))
            .saturating_add(grace)
    }

    /// `CDN-Cache-Control` (RFC 9213): `max-age`, never `s-maxage`.
    pub fn cdn_cache_control(&self) -> String {
        let mut out = format!("max-age={}", self.edge);
        if self.swr > 0 {
            out.push_str(&format!(", stale-while-revalidate={}", self.swr));
        }
        if self.sie > 0 {
            out.push_str(&format!(", stale-if-error={}", self.sie));
        }
        out
    }
}

impl Policy {
    /// The lifetimes an entry of this class is stored with.
    pub fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            edge: self.edge,
            swr: self.swr,
            sie: self.sie,
        }
    }
}

/// Why a response is not stored at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoStoreReason {
    /// The response sets a cookie: storing it would hand one user's cookie to others.
    SetCookie,
    /// The origin said `no-store`.
    OriginNoStore,
    /// The origin said `private`.
    OriginPrivate,
    /// 5xx, 429 and statuses that are not cacheable by default.
    Status,
    /// The class is never shared (sessions) or browser-only.
    ClassPolicy,
    /// `Vary: *`.
    VaryStar,
    /// `Vary` on request headers the class's key does not carry (see
    /// `ContentClass::keyed_headers`): one visitor's variant could reach another.
    Vary,
    /// A pass-through request carried cookies and the origin did not say `public`.
    RequestCookie,
    /// The body is too large, or its length unknown, to buffer into the cache.
    Size,
    /// The request carried `Authorization`.
    Authorization,
    /// Pass-through response without an explicit lifetime (no heuristic freshness).
    NoLifetime,
    /// Not GET.
    Method,
    /// A degraded answer (`x-origin-degraded`) without a lifetime of its own.
    Degraded,
}

impl NoStoreReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SetCookie => "set-cookie",
            Self::OriginNoStore => "origin-no-store",
            Self::OriginPrivate => "origin-private",
            Self::Status => "status",
            Self::ClassPolicy => "class-policy",
            Self::VaryStar => "vary-star",
            Self::Vary => "vary",
            Self::RequestCookie => "request-cookie",
            Self::Size => "size",
            Self::Authorization => "authorization",
            Self::NoLifetime => "no-lifetime",
            Self::Method => "method",
            Self::Degraded => "degraded",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Store(Lifetimes),
    NoStore(NoStoreReason),
}

/// The caching-relevant parts of an origin response, parsed once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginDirectives {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub max_age: Option<u32>,
    pub s_maxage: Option<u32>,
    pub swr: Option<u32>,
    pub sie: Option<u32>,
    /// `Expires` minus `Date`, seconds, when both parse.
    pub expires_in: Option<i64>,
    pub vary_star: bool,
    /// The request headers `Vary` names (lowercase), `Accept-Encoding` left out: the
    /// runtime negotiates encoding itself.
    pub vary: Vec<String>,
    pub public: bool,
    pub set_cookie: bool,
    /// The raw `Cache-Control`, for pass-through.
    pub raw_cache_control: Option<String>,
}

impl OriginDirectives {
    /// Parses `Cache-Control`; `expires_in` and the rest are filled by the caller.
    pub fn parse(cache_control: Option<&str>, vary: Option<&str>, set_cookie: bool) -> Self {
        let mut d = Self {
            set_cookie,
            raw_cache_control: cache_control.map(str::to_owned),
            vary_star: vary.is_some_and(|v| v.split(',').any(|f| f.trim() == "*")),
            vary: vary
                .unwrap_or("")
                .split(',')
                .map(|f| f.trim().to_ascii_lowercase())
                .filter(|f| !f.is_empty() && f != "*" && f != "accept-encoding")
                .collect(),
            ..Self::default()
        };
        for directive in cache_control.unwrap_or("").split(',') {
            let directive = directive.trim();
            let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
            let secs = || value.trim_matches('"').parse::<u32>().ok();
            match name.trim().to_ascii_lowercase().as_str() {
                "no-store" => d.no_store = true,
                "public" => d.public = true,
                "no-cache" => d.no_cache = true,
                "private" => d.private = true,
                "max-age" => d.max_age = secs(),
                "s-maxage" => d.s_maxage = secs(),
                "stale-while-revalidate" => d.swr = secs(),
                "stale-if-error" => d.sie = secs(),
                _ => {}
            }
        }
        d
    }

    /// Shared-cache freshness lifetime (RFC 9111 §4.2.1): s-maxage, max-age, Expires.
    pub fn max_age_or_expires(&self) -> Option<u32> {
        self.lifetime()
    }

    fn lifetime(&self) -> Option<u32> {
        self.s_maxage.or(self.max_age).or_else(|| {
            self.expires_in
                .map(|secs| u32::try_from(secs.max(0)).unwrap_or(u32::MAX))
        })
    }
}

/// Statuses a shared cache may store by default (RFC 9110 §15.1), minus partial content.
fn storable_status(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Statuses the pass-through class stores when the origin gives them explicit
/// freshness (RFC 9111 §3: a status the cache understands): the heuristically
/// cacheable ones plus redirects. Never partial content or a 304 (which only updates
/// what is stored).
fn storable_with_explicit_freshness(status: u16) -> bool {
    storable_status(status) || matches!(status, 302 | 303 | 307)
}

fn is_not_found(status: u16) -> bool {
    matches!(status, 404 | 410)
}

/// Whether and how long the edge stores this response. `request_cookie`: the request
/// reached the origin with cookies (pass-through only; shared classes strip them).
pub fn storage(
    class: ContentClass,
    policy: Policy,
    status: u16,
    origin: &OriginDirectives,
    request_cookie: bool,
) -> Storage {
    let understood = if policy.audience == Audience::Origin {
        storable_with_explicit_freshness(status)
    } else {
        storable_status(status)
    };
    if is_failure(status) || !understood {
        return Storage::NoStore(NoStoreReason::Status);
    }
    if origin.set_cookie {
        return Storage::NoStore(NoStoreReason::SetCookie);
    }
    if origin.no_store {
        return Storage::NoStore(NoStoreReason::OriginNoStore);
    }
    if origin.private {
        return Storage::NoStore(NoStoreReason::OriginPrivate);
    }
    if origin.vary_star {
        return Storage::NoStore(NoStoreReason::VaryStar);
    }
    let unkeyed = origin
        .vary
        .iter()
        .any(|name| !class.keyed_headers().contains(&name.as_str()));
    // The pass-through class keys variants by what Vary names (edge::cache); the
    // policy classes neither forward nor key those headers.
    if unkeyed && policy.audience != Audience::Origin {
        return Storage::NoStore(NoStoreReason::Vary);
    }
    match policy.audience {
        Audience::Nobody | Audience::Private => Storage::NoStore(NoStoreReason::ClassPolicy),
        Audience::Origin if request_cookie && !origin.public => {
            Storage::NoStore(NoStoreReason::RequestCookie)
        }
        Audience::Origin => match origin.lifetime() {
            Some(edge) if edge > 0 && !origin.no_cache => Storage::Store(Lifetimes {
                edge,
                swr: origin.swr.unwrap_or(0),
                sie: origin.sie.unwrap_or(0),
            }),
            _ => Storage::NoStore(NoStoreReason::NoLifetime),
        },
        Audience::Shared | Audience::PerSegment => {
            let policy = if is_not_found(status) && class != ContentClass::NotFound {
                default_not_found(policy)
            } else {
                policy
            };
            Storage::Store(Lifetimes {
                edge: policy.edge,
                swr: policy.swr,
                sie: policy.sie,
            })
        }
    }
}

/// The negative-caching row, never longer than the class's own lifetime.
/// The negative-caching lifetimes, with the class's own audience (a per-segment 404
/// stays private to the browser; a shared one is public).
fn default_not_found(class_policy: Policy) -> Policy {
    let nf = default_policy(ContentClass::NotFound);
    Policy {
        audience: class_policy.audience,
        browser: if class_policy.browser == 0 {
            0
        } else {
            nf.browser
        },
        edge: nf.edge.min(class_policy.edge.max(1)),
        swr: 0,
        sie: 0,
        immutable: false,
    }
}

/// The browser-facing `Cache-Control` for a response; `None` keeps the origin's as is.
pub fn browser_cache_control(
    policy: Policy,
    status: u16,
    origin: &OriginDirectives,
) -> Option<String> {
    browser_cache_control_aged(policy, status, origin, 0)
}

/// As [`browser_cache_control`] for a copy that has been `age` seconds in the edge
/// cache: the response also carries `Age`, which browsers subtract from `max-age`, so
/// `max-age` is raised by the age to keep the intended browser lifetime.
pub fn browser_cache_control_aged(
    policy: Policy,
    status: u16,
    origin: &OriginDirectives,
    age: u32,
) -> Option<String> {
    let policy = Policy {
        browser: if policy.browser > 0 && !policy.immutable {
            policy.browser.saturating_add(age)
        } else {
            policy.browser
        },
        ..policy
    };
    if policy.audience == Audience::Origin {
        // A shared cache passes the origin's own header on, as it came (RFC 9111).
        return origin.raw_cache_control.clone();
    }
    if is_failure(status) || (status >= 400 && !is_not_found(status)) {
        // Errors are never kept by browsers (the edge may remember some briefly).
        return Some(String::from("no-store"));
    }
    if origin.set_cookie || origin.private || origin.no_store {
        // The origin's own prohibitions are passed on; never loosened.
        return Some(String::from("private, no-store"));
    }
    let policy = if is_not_found(status) {
        Policy {
            browser: default_not_found(policy).browser.min(policy.browser),
            ..default_not_found(policy)
        }
    } else {
        policy
    };
    match policy.audience {
        Audience::Nobody => Some(String::from("private, no-store")),
        Audience::Origin => origin.raw_cache_control.clone(),
        Audience::Private | Audience::PerSegment => Some(if policy.browser == 0 {
            String::from("private, no-cache")
        } else {
            format!("private, max-age={}", policy.browser)
        }),
        Audience::Shared => {
            let mut out = format!("public, max-age={}", policy.browser);
            // An immutable URL never goes stale for a browser: no revalidation window.
            if policy.swr > 0 && !policy.immutable {
                out.push_str(&format!(", stale-while-revalidate={}", policy.swr));
            }
            if policy.sie > 0 {
                out.push_str(&format!(", stale-if-error={}", policy.sie));
            }
            if policy.immutable && !is_not_found(status) {
                out.push_str(", immutable");
            }
            Some(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::table::PolicyTable;

    fn cc(class: ContentClass, status: u16) -> Option<String> {
        browser_cache_control(
            PolicyTable::default().get(class),
            status,
            &OriginDirectives::default(),
        )
    }

    fn st(class: ContentClass, status: u16, origin: &OriginDirectives) -> Storage {
        storage(
            class,
            PolicyTable::default().get(class),
            status,
            origin,
            false,
        )
    }

    #[test]
    fn exact_headers_per_class_for_a_200() {
        use ContentClass::*;
        let table: [(ContentClass, &str, &str); 11] = [
            (
                HashedStatic,
                "public, max-age=31536000, immutable",
                "max-age=31536000",
            ),
            (
                Static,
                "public, max-age=300, stale-while-revalidate=86400, stale-if-error=86400",
                "max-age=3600, stale-while-revalidate=86400, stale-if-error=86400",
            ),
            (
                Image,
                "public, max-age=86400, stale-while-revalidate=86400, stale-if-error=604800",
                "max-age=2592000, stale-while-revalidate=86400, stale-if-error=604800",
            ),
            (
                PlaylistVod,
                "public, max-age=300, stale-while-revalidate=60, stale-if-error=86400",
                "max-age=3600, stale-while-revalidate=60, stale-if-error=86400",
            ),
            (
                PlaylistLive,
                "public, max-age=1, stale-if-error=10",
                "max-age=2, stale-if-error=10",
            ),
            (
                MediaSegment,
                "public, max-age=31536000, stale-if-error=86400, immutable",
                "max-age=31536000, stale-if-error=86400",
            ),
            (
                Catalog,
                "public, max-age=60, stale-while-revalidate=60, stale-if-error=86400",
                "max-age=300, stale-while-revalidate=60, stale-if-error=86400",
            ),
            (
                Search,
                "public, max-age=30, stale-while-revalidate=30, stale-if-error=3600",
                "max-age=60, stale-while-revalidate=30, stale-if-error=3600",
            ),
            (
                VideoMeta,
                "public, max-age=300, stale-while-revalidate=300, stale-if-error=86400",
                "max-age=1800, stale-while-revalidate=300, stale-if-error=86400",
            ),
            (
                Feed,
                "private, no-cache",
                "max-age=600, stale-while-revalidate=60, stale-if-error=86400",
            ),
            (
                Html,
                "private, no-cache",
                "max-age=60, stale-while-revalidate=30, stale-if-error=86400",
            ),
        ];
        for (class, browser, cdn) in table {
            assert_eq!(cc(class, 200).as_deref(), Some(browser), "{class}");
            match st(class, 200, &OriginDirectives::default()) {
                Storage::Store(l) => assert_eq!(l.cdn_cache_control(), cdn, "{class}"),
                other => panic!("{class}: {other:?}"),
            }
        }
    }

    #[test]
    fn sessions_are_never_shared() {
        assert_eq!(
            cc(ContentClass::Session, 200).as_deref(),
            Some("private, no-store")
        );
        assert_eq!(
            st(ContentClass::Session, 200, &OriginDirectives::default()),
            Storage::NoStore(NoStoreReason::ClassPolicy)
        );
    }

    #[test]
    fn errors_are_never_stored_and_404s_briefly() {
        for class in [
            ContentClass::Catalog,
            ContentClass::Static,
            ContentClass::PassThrough,
        ] {
            for status in [500, 502, 503, 504, 429] {
                // Pass-through passes the origin's own header on, whatever it is.
                let want = (class != ContentClass::PassThrough).then_some("no-store");
                assert_eq!(cc(class, status).as_deref(), want);
                assert_eq!(
                    st(class, status, &OriginDirectives::default()),
                    Storage::NoStore(NoStoreReason::Status)
                );
            }
        }
        assert_eq!(
            cc(ContentClass::Catalog, 404).as_deref(),
            Some("public, max-age=30")
        );
        assert_eq!(
            st(ContentClass::Catalog, 404, &OriginDirectives::default()),
            Storage::Store(Lifetimes {
                edge: 60,
                swr: 0,
                sie: 0
            })
        );
        // A missing hashed asset is not "immutable".
        assert!(
            !cc(ContentClass::HashedStatic, 404)
                .unwrap()
                .contains("immutable")
        );
        assert_eq!(
            st(ContentClass::Catalog, 400, &OriginDirectives::default()),
            Storage::NoStore(NoStoreReason::Status)
        );
    }

    #[test]
    fn the_origins_prohibitions_always_win() {
        let cookie = OriginDirectives::parse(Some("public, max-age=60"), None, true);
        assert_eq!(
            st(ContentClass::Catalog, 200, &cookie),
            Storage::NoStore(NoStoreReason::SetCookie)
        );
        assert_eq!(
            browser_cache_control(
                PolicyTable::default().get(ContentClass::Catalog),
                200,
                &cookie
            )
            .as_deref(),
            Some("private, no-store"),
            "never loosened for the browser either"
        );
        let private = OriginDirectives::parse(Some("private, max-age=60"), None, false);
        assert_eq!(
            st(ContentClass::Catalog, 200, &private),
            Storage::NoStore(NoStoreReason::OriginPrivate)
        );
        let no_store = OriginDirectives::parse(Some("no-store"), None, false);
        assert_eq!(
            st(ContentClass::Search, 200, &no_store),
            Storage::NoStore(NoStoreReason::OriginNoStore)
        );
        let vary = OriginDirectives::parse(Some("max-age=60"), Some("Accept, *"), false);
        assert_eq!(
            st(ContentClass::PassThrough, 200, &vary),
            Storage::NoStore(NoStoreReason::VaryStar)
        );
    }

    #[test]
    fn pass_through_follows_rfc_9111_freshness() {
        let d = |cc: &str| OriginDirectives::parse(Some(cc), None, false);
        let table = [
            (
                "max-age=120",
                Storage::Store(Lifetimes {
                    edge: 120,
                    swr: 0,
                    sie: 0,
                }),
            ),
            (
                "max-age=120, s-maxage=30",
                Storage::Store(Lifetimes {
                    edge: 30,
                    swr: 0,
                    sie: 0,
                }),
            ),
            (
                "max-age=10, stale-while-revalidate=5, stale-if-error=50",
                Storage::Store(Lifetimes {
                    edge: 10,
                    swr: 5,
                    sie: 50,
                }),
            ),
            ("max-age=0", Storage::NoStore(NoStoreReason::NoLifetime)),
            (
                "no-cache, max-age=60",
                Storage::NoStore(NoStoreReason::NoLifetime),
            ),
            ("public", Storage::NoStore(NoStoreReason::NoLifetime)),
        ];
        for (header, want) in table {
            assert_eq!(
                st(ContentClass::PassThrough, 200, &d(header)),
                want,
                "{header}"
            );
        }
        let mut expires = OriginDirectives::parse(None, None, false);
        expires.expires_in = Some(90);
        assert_eq!(
            st(ContentClass::PassThrough, 200, &expires),
            Storage::Store(Lifetimes {
                edge: 90,
                swr: 0,
                sie: 0
            })
        );
        // Pass-through keeps the origin's browser header as it was.
        assert_eq!(
            browser_cache_control(
                PolicyTable::default().get(ContentClass::PassThrough),
                200,
                &d("max-age=120, must-revalidate")
            )
            .as_deref(),
            Some("max-age=120, must-revalidate")
        );
    }

    #[test]
    fn vary_on_request_headers_and_cookie_requests_are_not_shared() {
        let vary = OriginDirectives::parse(Some("public, max-age=60"), Some("Cookie"), false);
        assert_eq!(
            st(ContentClass::Catalog, 200, &vary),
            Storage::NoStore(NoStoreReason::Vary)
        );
        assert!(
            matches!(st(ContentClass::PassThrough, 200, &vary), Storage::Store(_)),
            "pass-through keys a variant per cookie value"
        );
        let enc = OriginDirectives::parse(Some("max-age=60"), Some("Accept-Encoding"), false);
        assert!(matches!(
            st(ContentClass::PassThrough, 200, &enc),
            Storage::Store(_)
        ));
        let plain = OriginDirectives::parse(Some("max-age=60"), None, false);
        let policy = PolicyTable::default().get(ContentClass::PassThrough);
        assert_eq!(
            storage(ContentClass::PassThrough, policy, 200, &plain, true),
            Storage::NoStore(NoStoreReason::RequestCookie)
        );
        let public = OriginDirectives::parse(Some("public, max-age=60"), None, false);
        assert!(matches!(
            storage(ContentClass::PassThrough, policy, 200, &public, true),
            Storage::Store(_)
        ));
    }

    #[test]
    fn per_segment_404s_stay_private() {
        assert_eq!(
            cc(ContentClass::Feed, 404).as_deref(),
            Some("private, no-cache")
        );
        assert_eq!(
            cc(ContentClass::Search, 404).as_deref(),
            Some("public, max-age=30")
        );
    }

    #[test]
    fn aged_copies_keep_their_browser_lifetime() {
        let policy = PolicyTable::default().get(ContentClass::Catalog);
        let d = OriginDirectives::default();
        assert_eq!(
            browser_cache_control_aged(policy, 200, &d, 100).as_deref(),
            Some("public, max-age=160, stale-while-revalidate=60, stale-if-error=86400")
        );
        let hashed = PolicyTable::default().get(ContentClass::HashedStatic);
        assert_eq!(
            browser_cache_control_aged(hashed, 200, &d, 100).as_deref(),
            Some("public, max-age=31536000, immutable")
        );
    }

    #[test]
    fn retention_covers_the_longer_stale_window() {
        let l = Lifetimes {
            edge: 10,
            swr: 5,
            sie: 50,
        };
        assert_eq!(l.retention(false), 60);
        assert_eq!(l.retention(true), 120, "a minute more to revalidate");
    }
}
