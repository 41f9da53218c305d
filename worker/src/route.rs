//! Routing: a request's method and path parsed once into a [`Route`]. The glue matches
//! on the enum; nothing downstream looks at the raw path again.

use crate::error::EdgeError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET|HEAD /api/health`: proxied to the origin's `/healthz`, never cached.
    Health,
}

/// Methods the router distinguishes; anything else is answered 405.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

impl Method {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            _ => Self::Other,
        }
    }
}

impl Route {
    /// Upper bound on the path we route; longer paths are refused before any work.
    pub const MAX_PATH_BYTES: usize = 2048;

    pub fn parse(method: Method, path: &str) -> Result<Self, EdgeError> {
        if path.len() > Self::MAX_PATH_BYTES {
            return Err(EdgeError::UriTooLong {
                limit: Self::MAX_PATH_BYTES,
            });
        }
        let route = match path {
            "/api/health" => Self::Health,
            _ => {
                return Err(EdgeError::NoRoute {
                    path: path.to_owned(),
                });
            }
        };
        match method {
            Method::Get | Method::Head => Ok(route),
            Method::Other => Err(EdgeError::MethodNotAllowed { allow: "GET, HEAD" }),
        }
    }

    /// The origin path this route is served from.
    pub fn origin_path(&self) -> &'static str {
        match self {
            Self::Health => "/healthz",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_routed_for_get_and_head() {
        for method in [Method::Get, Method::Head] {
            assert_eq!(Route::parse(method, "/api/health"), Ok(Route::Health));
        }
        assert_eq!(Route::Health.origin_path(), "/healthz");
    }

    #[test]
    fn other_methods_are_refused_with_the_allowed_list() {
        assert_eq!(
            Route::parse(Method::parse("POST"), "/api/health"),
            Err(EdgeError::MethodNotAllowed { allow: "GET, HEAD" })
        );
    }

    #[test]
    fn unknown_and_oversized_paths_are_client_errors() {
        let table = [
            "/".to_owned(),
            "/api/healthz".to_owned(),
            "/api/health/".to_owned(),
            format!("/{}", "a".repeat(Route::MAX_PATH_BYTES)),
        ];
        for path in table {
            let err = Route::parse(Method::Get, &path).unwrap_err();
            assert!((400..500).contains(&err.status()), "{path}: {err:?}");
        }
    }
}
