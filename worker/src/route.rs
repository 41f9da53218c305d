//! Routing: a request's method and path parsed once into a [`Route`]. The glue matches
//! on the enum; nothing downstream looks at the raw path again.

use crate::assets::ObjectKey;
use crate::error::EdgeError;
use crate::policy::ContentClass;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET|HEAD /api/health`: proxied to the origin's `/healthz`, never cached.
    Health,
    /// Proxied to the origin (same path, normalized query) under a cache class.
    Origin { class: ContentClass },
    /// Read straight from R2.
    /// An R2 object served as stored. `uploaded`: an original from `/media/` (content
    /// teams' uploads, not the site's own assets), served with the active-content guard.
    Object {
        class: ContentClass,
        key: ObjectKey,
        uploaded: bool,
    },
    /// `/img/<options>/<key>`: a derivative of the R2 original `key`.
    Image { options: String, key: ObjectKey },
    /// `/img/<options>/https://host/path`: a derivative of a remote source
    /// (`image::remote`; the request's query is the source's).
    RemoteImage {
        options: String,
        url: crate::image::remote::RemoteUrl,
    },
    /// `POST /__edge/purge`: the origin delivers a purge (secret-authenticated).
    Purge,
    /// `POST /__edge/fault?r2=down|up`: the drills' failure switch (`fault`), only with
    /// `FAULT_INJECTION=on`, secret-authenticated like purges.
    Fault,
    /// `PUT /admin/media/<key>`: a content team uploads an original (token-authenticated).
    /// The one admin path the edge serves itself; nothing under `/admin` reaches the origin.
    Upload { key: ObjectKey },
}

impl Route {
    /// What it serves, as the outcome data points name it (`protocol::outcomes`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Origin { class } | Self::Object { class, .. } => class.as_str(),
            Self::Image { .. } | Self::RemoteImage { .. } => "image",
            Self::Purge => "purge",
            Self::Fault => "fault",
            Self::Upload { .. } => "upload",
        }
    }
}

/// Where uploads go: `PUT /admin/media/<key>`, spelled exactly so.
pub const UPLOAD_PREFIX: &str = "/admin/media/";

/// The edge's own endpoints live under this prefix; nothing under it reaches the origin.
pub const EDGE_PREFIX: &str = "/__edge/";

/// Whether `path` names the origin's admin API in any spelling a server might route
/// (`/admin`, `//admin/`, `/ADMIN`, `/%61dmin`, `/./admin`): the edge never passes it
/// through, so the admin API is reachable only where the origin is, directly.
pub fn is_admin_path(path: &str) -> bool {
    let mut decoded = Vec::with_capacity(path.len());
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            decoded.push(byte);
            i += 3;
            continue;
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    let decoded = String::from_utf8_lossy(&decoded).to_ascii_lowercase();
    let first = decoded
        .split(['/', '\\'])
        .find(|segment| !segment.is_empty() && *segment != ".");
    first == Some("admin")
}

/// Methods the router distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Other,
}

impl Method {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            _ => Self::Other,
        }
    }

    pub fn is_read(self) -> bool {
        matches!(self, Self::Get | Self::Head)
    }
}

const READ_ONLY: &str = "GET, HEAD";

impl Route {
    /// Upper bound on the path we route; longer paths are refused before any work. It
    /// holds the longest path the edge itself makes: an `onerror=redirect` Location is
    /// `/media/` plus a key of up to 1024 bytes with every byte escaped (found by the
    /// `route` fuzz target: a 2048 limit refused our own redirects).
    pub const MAX_PATH_BYTES: usize = 4096;

    /// Longest query string accepted (the origin's own limit is smaller).
    pub const MAX_QUERY_BYTES: usize = 4096;

    /// Refuses an oversized query before anything reads it.
    pub fn check_query(query: Option<&str>) -> Result<(), EdgeError> {
        if query.map_or(0, str::len) > Self::MAX_QUERY_BYTES {
            return Err(EdgeError::UriTooLong {
                limit: Self::MAX_QUERY_BYTES,
            });
        }
        Ok(())
    }

    pub fn parse(method: Method, path: &str) -> Result<Self, EdgeError> {
        if path.len() > Self::MAX_PATH_BYTES {
            return Err(EdgeError::UriTooLong {
                limit: Self::MAX_PATH_BYTES,
            });
        }
        let read_only = |route: Route| {
            if method.is_read() {
                Ok(route)
            } else {
                Err(EdgeError::MethodNotAllowed { allow: READ_ONLY })
            }
        };
        let origin = |class| Route::Origin { class };
        if let Some(rest) = path.strip_prefix(UPLOAD_PREFIX) {
            if method != Method::Put {
                return Err(EdgeError::MethodNotAllowed { allow: "PUT" });
            }
            return Ok(Route::Upload {
                key: ObjectKey::parse("", rest)?,
            });
        }
        if is_admin_path(path) {
            return Err(EdgeError::NoRoute {
                path: path.to_owned(),
            });
        }
        if path.starts_with(EDGE_PREFIX) {
            return match (path, method) {
                ("/__edge/purge", Method::Post) => Ok(Route::Purge),
                ("/__edge/purge", _) => Err(EdgeError::MethodNotAllowed { allow: "POST" }),
                ("/__edge/fault", Method::Post) => Ok(Route::Fault),
                ("/__edge/fault", _) => Err(EdgeError::MethodNotAllowed { allow: "POST" }),
                _ => Err(EdgeError::NoRoute {
                    path: path.to_owned(),
                }),
            };
        }
        if path == "/api/health" {
            return read_only(Route::Health);
        }
        if path == "/api/sessions" || path.starts_with("/api/sessions/") {
            // Logins and logouts go through; the class keeps them out of every cache.
            return Ok(origin(ContentClass::Session));
        }
        if path == "/api/catalog" || path.starts_with("/api/courses/") {
            return read_only(origin(ContentClass::Catalog));
        }
        if path == "/api/search" {
            return read_only(origin(ContentClass::Search));
        }
        if path.starts_with("/api/videos/") {
            return read_only(origin(ContentClass::VideoMeta));
        }
        if path == "/api/feed" {
            return read_only(origin(ContentClass::Feed));
        }
        if let Some(rest) = path.strip_prefix("/img/") {
            let (options, key) = rest.split_once('/').ok_or(EdgeError::NoRoute {
                path: path.to_owned(),
            })?;
            if key.starts_with("https:") || key.starts_with("http:") {
                let url = crate::image::remote::RemoteUrl::parse(key).map_err(EdgeError::Remote)?;
                return read_only(Route::RemoteImage {
                    options: options.to_owned(),
                    url,
                });
            }
            let key = ObjectKey::parse("", key)?;
            if key.as_str().starts_with("derived/") {
                return Err(EdgeError::BadObjectKey {
                    why: "derivatives are not sources",
                });
            }
            return read_only(Route::Image {
                options: options.to_owned(),
                key,
            });
        }
        if let Some(rest) = path.strip_prefix("/media/") {
            // Originals, as uploaded (the target of `onerror=redirect`).
            let key = ObjectKey::parse("", rest)?;
            if key.as_str().starts_with("derived/") {
                return Err(EdgeError::BadObjectKey {
                    why: "derivatives are not sources",
                });
            }
            return read_only(Route::Object {
                class: ContentClass::Static,
                key,
                uploaded: true,
            });
        }
        if let Some(rest) = path.strip_prefix("/static/") {
            let key = ObjectKey::parse("static/", rest)?;
            let class = if key.is_hashed() {
                ContentClass::HashedStatic
            } else {
                ContentClass::Static
            };
            return read_only(Route::Object {
                class,
                key,
                uploaded: false,
            });
        }
        if let Some(rest) = path.strip_prefix("/video/") {
            let key = ObjectKey::parse("video/", rest)?;
            let class = match (key.is_playlist(), rest.starts_with("live/")) {
                (true, true) => ContentClass::PlaylistLive,
                (true, false) => ContentClass::PlaylistVod,
                (false, _) => ContentClass::MediaSegment,
            };
            return read_only(Route::Object {
                class,
                key,
                uploaded: false,
            });
        }
        if path == protocol::page::SIGN_IN_PATH || path == protocol::page::SIGN_OUT_PATH {
            // The site's forms: never cached, cookies and the origin check go through.
            return Ok(origin(ContentClass::Session));
        }
        if path == "/" || path.starts_with("/courses/") || path.starts_with("/learn/") {
            return read_only(origin(ContentClass::Html));
        }
        Ok(origin(ContentClass::PassThrough))
    }

    /// The origin path this route is served from, for routes that rename it.
    pub fn origin_path(&self) -> Option<&'static str> {
        match self {
            Self::Health => Some("/healthz"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_admin_api_is_never_passed_through_in_any_spelling() {
        for path in [
            "/admin",
            "/admin/courses/x",
            "//admin/courses/x",
            "/ADMIN/invalidate",
            "/%61dmin/invalidate",
            "/./admin/x",
            "/admin%2Fcourses",
        ] {
            assert!(Route::parse(Method::Post, path).is_err(), "{path}");
        }
        for path in ["/administration-guide", "/api/admin-notes", "/learn/admin"] {
            assert!(!is_admin_path(path), "{path}");
        }
        assert_eq!(
            Route::parse(Method::Post, "/__edge/purge").unwrap(),
            Route::Purge
        );
        assert!(Route::parse(Method::Get, "/__edge/purge").is_err());
        assert_eq!(
            Route::parse(Method::Post, "/__edge/fault").unwrap(),
            Route::Fault
        );
        assert!(Route::parse(Method::Get, "/__edge/fault").is_err());
        assert!(Route::parse(Method::Get, "/__edge/other").is_err());
    }

    #[test]
    fn uploads_are_the_one_admin_path_the_edge_serves_itself() {
        assert_eq!(
            Route::parse(Method::Put, "/admin/media/demo/a%20b.jpg"),
            Ok(Route::Upload {
                key: ObjectKey::parse("", "demo/a b.jpg").unwrap()
            })
        );
        assert_eq!(
            Route::parse(Method::Post, "/admin/media/demo/a.jpg"),
            Err(EdgeError::MethodNotAllowed { allow: "PUT" })
        );
        for path in [
            "/admin/media/../courses/x",
            "/admin/media/",
            "/admin/media//a.jpg",
        ] {
            assert!(Route::parse(Method::Put, path).is_err(), "{path}");
        }
        // Any other spelling is the origin's admin API, which the edge never serves.
        for path in [
            "/ADMIN/media/a.jpg",
            "//admin/media/a.jpg",
            "/%61dmin/media/a.jpg",
        ] {
            assert!(
                matches!(
                    Route::parse(Method::Put, path),
                    Err(EdgeError::NoRoute { .. })
                ),
                "{path}"
            );
        }
    }

    #[test]
    fn the_longest_redirect_the_edge_makes_routes_back_to_its_key() {
        // Found by the `route` fuzz target: a key of escaped characters made a Location
        // longer than the router accepted.
        let url_key = "%60".repeat(ObjectKey::MAX_BYTES);
        let Ok(Route::Image { key, .. }) = Route::parse(
            Method::Get,
            &format!("/img/w=100,onerror=redirect/{url_key}"),
        ) else {
            panic!("a 1024-byte key is routed");
        };
        let location = format!("/media/{}", key.url_path());
        assert!(location.len() > 3 * ObjectKey::MAX_BYTES);
        match Route::parse(Method::Get, &location) {
            Ok(Route::Object { key: back, .. }) => assert_eq!(back, key),
            other => panic!("{other:?}"),
        }
    }

    use super::*;
    use ContentClass::*;

    #[test]
    fn paths_map_to_their_classes() {
        let table: [(&str, ContentClass); 15] = [
            ("/api/catalog", Catalog),
            ("/api/courses/intro-to-rust", Catalog),
            ("/api/search", Search),
            ("/api/videos/3", VideoMeta),
            ("/api/feed", Feed),
            ("/api/sessions", Session),
            ("/api/sessions/current", Session),
            ("/", Html),
            ("/courses/intro", Html),
            ("/signin", Session),
            ("/signout", Session),
            ("/robots.txt", PassThrough),
            ("/api/other", PassThrough),
            ("/api/catalogue", PassThrough),
            ("/api/sessionsx", PassThrough),
        ];
        for (path, class) in table {
            assert_eq!(
                Route::parse(Method::Get, path),
                Ok(Route::Origin { class }),
                "{path}"
            );
        }
    }

    #[test]
    fn r2_paths_map_to_object_classes() {
        let class = |path| match Route::parse(Method::Get, path).unwrap() {
            Route::Object { class, .. } => class,
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(class("/static/app.3f9a2c1d.js"), HashedStatic);
        assert_eq!(class("/static/robots.txt"), Static);
        assert_eq!(class("/video/42/master.m3u8"), PlaylistVod);
        assert_eq!(class("/video/live/channel/index.m3u8"), PlaylistLive);
        assert_eq!(class("/video/42/720p/seg-00001.ts"), MediaSegment);
    }

    #[test]
    fn image_paths_carry_options_and_a_source_key() {
        assert_eq!(
            Route::parse(Method::Get, "/img/w=800,fit=cover/demo/a.jpg"),
            Ok(Route::Image {
                options: String::from("w=800,fit=cover"),
                key: ObjectKey::parse("", "demo/a.jpg").unwrap(),
            })
        );
        assert_eq!(
            Route::parse(Method::Get, "/img/w=800/https://images.example.com/a/b.jpg"),
            Ok(Route::RemoteImage {
                options: String::from("w=800"),
                url: crate::image::remote::RemoteUrl::parse("https://images.example.com/a/b.jpg")
                    .unwrap(),
            })
        );
        for bad in [
            "/img/w=1/https://h/../x.jpg",
            "/img/w=1/https://u@h/x.jpg",
            "/img/w=800",
            "/img/w=1/../x.jpg",
            "/img/w=1/derived/ab/x.webp",
            "/media/derived/x",
        ] {
            assert!(Route::parse(Method::Get, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn health_is_routed_for_get_and_head() {
        for method in [Method::Get, Method::Head] {
            assert_eq!(Route::parse(method, "/api/health"), Ok(Route::Health));
        }
        assert_eq!(Route::Health.origin_path(), Some("/healthz"));
    }

    #[test]
    fn writes_are_refused_except_where_the_origin_takes_them() {
        for path in [
            "/api/health",
            "/api/catalog",
            "/static/a.js",
            "/video/1/a.ts",
        ] {
            assert_eq!(
                Route::parse(Method::parse("POST"), path),
                Err(EdgeError::MethodNotAllowed { allow: READ_ONLY }),
                "{path}"
            );
        }
        assert!(Route::parse(Method::Post, "/api/sessions").is_ok());
        assert!(Route::parse(Method::Delete, "/api/sessions/current").is_ok());
        assert!(
            Route::parse(Method::Post, "/some/form").is_ok(),
            "pass-through"
        );
    }

    #[test]
    fn bad_object_keys_and_oversized_paths_are_client_errors() {
        let table = [
            "/static/../secret".to_owned(),
            "/static/".to_owned(),
            "/video/a//b.ts".to_owned(),
            format!("/{}", "a".repeat(Route::MAX_PATH_BYTES)),
        ];
        for path in table {
            let err = Route::parse(Method::Get, &path).unwrap_err();
            assert!((400..500).contains(&err.status()), "{path}: {err:?}");
        }
    }

    #[test]
    fn an_oversized_query_is_refused() {
        assert!(Route::check_query(None).is_ok());
        assert!(Route::check_query(Some(&"a".repeat(Route::MAX_QUERY_BYTES))).is_ok());
        assert_eq!(
            Route::check_query(Some(&"a".repeat(Route::MAX_QUERY_BYTES + 1))),
            Err(EdgeError::UriTooLong {
                limit: Route::MAX_QUERY_BYTES
            })
        );
    }
}
