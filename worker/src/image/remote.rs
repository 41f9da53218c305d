//! Remote sources: `/img/<options>/https://host/path`, for the hosts and path prefixes a
//! deployment lists in `IMAGE_REMOTE_PATTERNS` (like next/image's `remotePatterns`).
//! No list, no remote fetch.
//!
//! Pure decisions, tested natively: the URL parsed once ([`RemoteUrl`]), whether the
//! list admits it ([`RemotePolicy::admit`]), what a response means — the bytes, a
//! redirect to check again, or a refusal ([`next_hop`]) — and which version of the
//! source a response is ([`version_of`]). The glue (`edge::remote`) only fetches.
//!
//! **The DNS-rebinding limit.** A Worker's `fetch` resolves names itself and never shows
//! the address it connected to, so the edge can refuse only *literal* private and
//! loopback addresses (`127.0.0.1`, `10.x`, `[::1]`, `localhost`, …). A listed name
//! whose DNS later points at a private address is fetched. The list must therefore name
//! hosts whose DNS the deployment trusts (its own CDN or bucket domains), never a
//! pattern that matches names strangers control.

use sha2::{Digest, Sha256};

/// Longest remote URL accepted.
pub const MAX_URL_BYTES: usize = 2048;
/// Redirects followed, each checked against the list again.
pub const MAX_REDIRECTS: u8 = 3;
/// How long a remote fetch (each hop) may take by default.
pub const DEFAULT_TIMEOUT_MS: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// 400: not a URL this route takes.
    #[error("the remote source URL is not usable: {0}")]
    BadUrl(&'static str),
    /// 403: `IMAGE_REMOTE_PATTERNS` is empty.
    #[error(
        "remote sources are off on this deployment: list the allowed hosts and path prefixes in IMAGE_REMOTE_PATTERNS"
    )]
    Off,
    /// 403: not in the list (a redirect's target included).
    #[error("{0} is not in IMAGE_REMOTE_PATTERNS")]
    NotAllowed(String),
    /// 403: a literal private, loopback or link-local address.
    #[error(
        "{0} is a private or loopback address (IMAGE_REMOTE_PRIVATE=allow only for local development)"
    )]
    Private(String),
    /// 502: more than [`MAX_REDIRECTS`], or a redirect without a usable `Location`.
    #[error("the remote source redirected {0}")]
    Redirects(&'static str),
    /// 404: the remote host has no such image.
    #[error("the remote source answered 404")]
    NotFound,
    /// 502: any other answer.
    #[error("the remote source answered {0}")]
    Upstream(u16),
    /// 422: larger than the source limit (declared or read).
    #[error("the remote source is larger than {0} bytes")]
    TooLarge(u64),
    /// 415: declared as something that is not an image.
    #[error("the remote source is {0}, not an image")]
    NotAnImage(String),
    /// 502: the fetch failed (DNS, connection, TLS).
    #[error("the remote source could not be fetched")]
    Unreachable,
    /// 504: no answer within `IMAGE_REMOTE_TIMEOUT_MS`.
    #[error("the remote source did not answer within {0} ms")]
    Timeout(u64),
}

impl RemoteError {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadUrl(_) => 400,
            Self::Off | Self::NotAllowed(_) | Self::Private(_) => 403,
            Self::NotFound => 404,
            Self::TooLarge(_) => 422,
            Self::NotAnImage(_) => 415,
            Self::Redirects(_) | Self::Upstream(_) | Self::Unreachable => 502,
            Self::Timeout(_) => 504,
        }
    }

    /// Whether the remote side failed (not the request): retried, and stale content may
    /// cover it.
    pub fn is_upstream(&self) -> bool {
        matches!(
            self,
            Self::Redirects(_) | Self::Upstream(_) | Self::Unreachable | Self::Timeout(_)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
}

/// A remote URL, parsed once: scheme, lowercase host, port, path, query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    pub scheme: Scheme,
    pub host: String,
    pub port: Option<u16>,
    /// Starts with `/`; no `.` or `..` segments.
    pub path: String,
    pub query: Option<String>,
}

impl RemoteUrl {
    /// The type the path's extension names (`""` for none we know): what the format
    /// decision goes on before the bytes are fetched, as an R2 key's type is for R2
    /// sources.
    pub fn named_type(&self) -> &'static str {
        let path = self.path.to_ascii_lowercase();
        let ext = path.rsplit_once('.').map_or("", |(_, ext)| ext);
        match ext {
            "jpg" | "jpeg" => "image/jpeg",
            "png" => "image/png",
            "gif" => "image/gif",
            "webp" => "image/webp",
            _ => "",
        }
    }

    /// `https://host[:port]/path[?query]` (`https:/host/…` too: some proxies merge the
    /// slashes). No user info, no fragment, printable ASCII only.
    pub fn parse(raw: &str) -> Result<Self, RemoteError> {
        if raw.len() > MAX_URL_BYTES {
            return Err(RemoteError::BadUrl("longer than 2048 bytes"));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(RemoteError::BadUrl(
                "only printable ASCII (percent-encode the rest)",
            ));
        }
        // `fetch` parses URLs the WHATWG way, where a backslash is `/`; and servers
        // differ on whether `%2F` and `%5C` separate segments: either could step out of
        // a listed path prefix after the check.
        if raw.contains('\\') {
            return Err(RemoteError::BadUrl("a backslash is not allowed"));
        }
        let (scheme, rest) = if let Some(rest) = raw.strip_prefix("https:") {
            (Scheme::Https, rest)
        } else if let Some(rest) = raw.strip_prefix("http:") {
            (Scheme::Http, rest)
        } else {
            return Err(RemoteError::BadUrl("it must start with https://"));
        };
        let rest = rest
            .strip_prefix("//")
            .or_else(|| rest.strip_prefix('/'))
            .ok_or(RemoteError::BadUrl("it must start with https://"))?;
        if rest.contains('#') {
            return Err(RemoteError::BadUrl("a fragment is not part of a source"));
        }
        let (authority, path_and_query) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(RemoteError::BadUrl("user info is not allowed"));
        }
        let (host, port) = split_port(authority)?;
        if host.is_empty() {
            return Err(RemoteError::BadUrl("no host"));
        }
        let valid_host = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
        if !valid_host {
            return Err(RemoteError::BadUrl(
                "the host has characters a host name cannot have",
            ));
        }
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (path_and_query, None),
        };
        let lower = path.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") {
            return Err(RemoteError::BadUrl(
                "an encoded slash or backslash is not allowed in the path",
            ));
        }
        let dotted = lower.split('/').any(|segment| {
            let s = segment.replace("%2e", ".");
            s == "." || s == ".."
        });
        if dotted {
            return Err(RemoteError::BadUrl(
                "`.` and `..` path segments are not allowed",
            ));
        }
        Ok(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path: path.to_owned(),
            query: query.filter(|q| !q.is_empty()),
        })
    }

    /// The URL as fetched (and as derivative keys and signatures name it).
    pub fn as_string(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Https => "https",
            Scheme::Http => "http",
        };
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let query = self
            .query
            .as_ref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        format!("{scheme}://{}{port}{}{query}", self.host, self.path)
    }

    /// With the request's query string (the source's own query, which the route sees
    /// apart from its path).
    pub fn with_query(mut self, query: Option<&str>) -> Result<Self, RemoteError> {
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            if self.as_string().len() + q.len() + 1 > MAX_URL_BYTES {
                return Err(RemoteError::BadUrl("longer than 2048 bytes"));
            }
            self.query = Some(q.to_owned());
        }
        Ok(self)
    }

    /// A redirect's `Location`, absolute or path-absolute, against this URL.
    pub fn follow(&self, location: &str) -> Result<Self, RemoteError> {
        let location = location.trim();
        if location.starts_with("https:") || location.starts_with("http:") {
            return Self::parse(location);
        }
        if location.starts_with('/') && !location.starts_with("//") {
            let mut next = Self::parse(&format!(
                "{}://{}{}{}",
                match self.scheme {
                    Scheme::Https => "https",
                    Scheme::Http => "http",
                },
                self.host,
                self.port.map(|p| format!(":{p}")).unwrap_or_default(),
                location
            ))?;
            next.scheme = self.scheme;
            return Ok(next);
        }
        Err(RemoteError::Redirects(
            "to a relative or scheme-less Location",
        ))
    }
}

fn split_port(authority: &str) -> Result<(&str, Option<u16>), RemoteError> {
    // `[::1]:8080` or `host:8080`.
    let (host, port) = if let Some(end) = authority.find(']') {
        let (host, rest) = authority.split_at(end + 1);
        if !rest.is_empty() && !rest.starts_with(':') {
            return Err(RemoteError::BadUrl("text after an IPv6 address"));
        }
        (host, rest.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port =
        match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or(
                RemoteError::BadUrl("the port is not a number from 1 to 65535"),
            )?),
        };
    Ok((host, port))
}

/// Whether a host, as written, is a private, loopback, link-local or unspecified address
/// (or a `localhost` name). Names that resolve there cannot be seen (module docs).
pub fn is_private_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(v6) => {
                let s = v6.segments();
                let o = v6.octets();
                let embedded = |at: usize| {
                    private_v4(std::net::Ipv4Addr::new(
                        o[at],
                        o[at + 1],
                        o[at + 2],
                        o[at + 3],
                    ))
                };
                v6.is_loopback()
                    || v6.is_unspecified()
                    // Unique local fc00::/7, link-local fe80::/10, site-local fec0::/10.
                    || (s[0] & 0xfe00) == 0xfc00
                    || (s[0] & 0xffc0) == 0xfe80
                    || (s[0] & 0xffc0) == 0xfec0
                    // IPv4 inside: mapped, compatible (::a.b.c.d), NAT64 64:ff9b::/96,
                    // 6to4 2002::/16.
                    || v6.to_ipv4_mapped().is_some_and(private_v4)
                    || (s[..6] == [0; 6] && embedded(12))
                    || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && embedded(12))
                    || (s[0] == 0x2002 && embedded(2))
            }
            Err(_) => true,
        };
    }
    // Every spelling browsers accept for IPv4 (`127.1`, `0x7f.1`, `2130706433`) is
    // refused as an address, not only the dotted quad.
    if host
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b'x' || b == b'X')
        && host.bytes().next().is_some_and(|b| b.is_ascii_digit())
    {
        return host.parse::<std::net::Ipv4Addr>().map_or(true, private_v4);
    }
    false
}

fn private_v4(ip: std::net::Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

/// One allowed host and path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePattern {
    pub scheme: Scheme,
    /// A host, or `*.example.com` (any subdomain, not the domain itself).
    pub host: String,
    pub port: Option<u16>,
    /// The path must start with it (`/` for any).
    pub path_prefix: String,
}

impl RemotePattern {
    fn matches(&self, url: &RemoteUrl) -> bool {
        let host = match self.host.strip_prefix("*.") {
            Some(domain) => url
                .host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => url.host == self.host,
        };
        host && self.scheme == url.scheme
            && self.port == url.port
            && url.path.starts_with(&self.path_prefix)
    }
}

/// `IMAGE_REMOTE_PATTERNS` and `IMAGE_REMOTE_PRIVATE`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemotePolicy {
    pub patterns: Vec<RemotePattern>,
    /// Literal private and loopback hosts allowed (local development only).
    pub allow_private: bool,
}

impl RemotePolicy {
    /// Comma-separated `https://host[:port]/path-prefix` patterns (`*.` for subdomains).
    pub fn parse(patterns: &str, allow_private: bool) -> Result<Self, String> {
        let mut out = Vec::new();
        for raw in patterns.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let host_part = raw.split_once("://").map_or(raw, |(_, rest)| rest);
            let wildcard = host_part.starts_with("*.");
            let parsed = RemoteUrl::parse(&raw.replacen("*.", "wildcard.", usize::from(wildcard)))
                .map_err(|e| format!("IMAGE_REMOTE_PATTERNS: {raw:?}: {e}"))?;
            if parsed.query.is_some() {
                return Err(format!(
                    "IMAGE_REMOTE_PATTERNS: {raw:?}: a pattern has no query"
                ));
            }
            let host = if wildcard {
                format!(
                    "*.{}",
                    parsed
                        .host
                        .strip_prefix("wildcard.")
                        .unwrap_or(&parsed.host)
                )
            } else {
                parsed.host
            };
            out.push(RemotePattern {
                scheme: parsed.scheme,
                host,
                port: parsed.port,
                path_prefix: parsed.path,
            });
        }
        Ok(Self {
            patterns: out,
            allow_private,
        })
    }

    /// Whether `url` may be fetched: listed, and not a literal private address.
    pub fn admit(&self, url: &RemoteUrl) -> Result<(), RemoteError> {
        if self.patterns.is_empty() {
            return Err(RemoteError::Off);
        }
        if !self.allow_private && is_private_host(&url.host) {
            return Err(RemoteError::Private(url.host.clone()));
        }
        if !self.patterns.iter().any(|p| p.matches(url)) {
            return Err(RemoteError::NotAllowed(url.as_string()));
        }
        Ok(())
    }
}

/// What one remote response means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// 200: the bytes.
    Body,
    /// 304 to a conditional request: the version asked about is current.
    NotModified,
    /// A redirect the policy admits: fetch this next.
    Redirect(RemoteUrl),
}

/// The meaning of a response of `status` (with `location`) to a fetch of `current`
/// after `hops` redirects.
pub fn next_hop(
    policy: &RemotePolicy,
    current: &RemoteUrl,
    status: u16,
    location: Option<&str>,
    hops: u8,
) -> Result<Hop, RemoteError> {
    match status {
        200 => Ok(Hop::Body),
        304 => Ok(Hop::NotModified),
        301 | 302 | 303 | 307 | 308 => {
            if hops >= MAX_REDIRECTS {
                return Err(RemoteError::Redirects("more than 3 times"));
            }
            let location = location.ok_or(RemoteError::Redirects("without a Location"))?;
            let next = current.follow(location)?;
            policy.admit(&next)?;
            Ok(Hop::Redirect(next))
        }
        404 | 410 => Err(RemoteError::NotFound),
        other => Err(RemoteError::Upstream(other)),
    }
}

/// The version a remote source is filed under: its `ETag`, else its `Last-Modified`,
/// else a digest of its bytes (what a derivative made from it records).
pub fn version_of(etag: Option<&str>, last_modified: Option<&str>, body: &[u8]) -> String {
    if let Some(etag) = etag
        .map(str::trim)
        .filter(|e| !e.is_empty() && e.len() <= 256)
    {
        return etag.to_owned();
    }
    if let Some(date) = last_modified
        .map(str::trim)
        .filter(|d| !d.is_empty() && d.len() <= 64)
    {
        return format!("\"lm:{date}\"");
    }
    let digest = Sha256::digest(body);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("\"sha256:{hex}\"")
}

/// The validator a fetch of the original may send as `If-None-Match` for a stored
/// `version`: the host's own ETag, never one made here from a date or the bytes
/// ([`version_of`]), which the host has never seen.
pub fn conditional(version: &str) -> Option<&str> {
    (!version.starts_with("\"lm:") && !version.starts_with("\"sha256:")).then_some(version)
}

/// Where the fetched original is kept in the Cache API.
pub fn original_cache_key(url: &RemoteUrl) -> String {
    let digest = Sha256::digest(url.as_string().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("https://remote.course-edge.internal/{hex}")
}

#[cfg(test)]
mod tests;
