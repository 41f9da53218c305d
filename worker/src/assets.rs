//! Objects served straight from R2 (static assets, HLS/DASH video): validated object
//! keys, content types by extension, and single byte ranges (RFC 9110 §14).

use crate::error::EdgeError;

/// An R2 object key that is safe to read: no traversal, no control characters, bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub const MAX_BYTES: usize = 1024;

    /// `prefix` is the bucket folder (`static/`, `video/`); `rest` comes from the URL.
    pub fn parse(prefix: &str, rest: &str) -> Result<Self, EdgeError> {
        let bad = |why: &'static str| EdgeError::BadObjectKey { why };
        if rest.is_empty() {
            return Err(bad("empty key"));
        }
        // At most three URL bytes per key byte (every byte escaped).
        if rest.len() > 3 * Self::MAX_BYTES {
            return Err(bad("key longer than 1024 bytes"));
        }
        // URL paths arrive percent-encoded (spaces, non-ASCII names); keys are stored
        // decoded. Decoding happens once, and every check below runs on the result, so
        // `%2e%2e` or `%2F..%2F` cannot smuggle a traversal past them.
        let rest = &percent_decode(rest).ok_or_else(|| bad("bad percent-encoding"))?;
        if rest.len() > Self::MAX_BYTES {
            return Err(bad("key longer than 1024 bytes"));
        }
        if rest.chars().any(|c| c.is_control() || c == '\\') {
            return Err(bad("control characters or backslashes"));
        }
        if rest
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return Err(bad("empty, '.' or '..' path segments"));
        }
        Ok(Self(format!("{prefix}{rest}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key the edge itself wrote down after parsing it (an image-queue message, a
    /// derivative's record of its source): not parsed again, as its escapes are gone.
    pub fn from_stored(key: &str) -> Self {
        Self(key.to_owned())
    }

    fn extension(&self) -> &str {
        let name = self.0.rsplit('/').next().unwrap_or("");
        name.rsplit_once('.').map_or("", |(_, ext)| ext)
    }

    /// `name.<hash>.ext` with a hash of at least 8 hex digits: content-addressed.
    pub fn is_hashed(&self) -> bool {
        let name = self.0.rsplit('/').next().unwrap_or("");
        let mut parts = name.rsplit('.');
        let (Some(_ext), Some(hash), Some(_stem)) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        hash.len() >= 8 && hash.bytes().all(|b| b.is_ascii_hexdigit())
    }

    pub fn is_playlist(&self) -> bool {
        matches!(self.extension(), "m3u8" | "mpd")
    }

    pub fn content_type(&self) -> &'static str {
        match self.extension().to_ascii_lowercase().as_str() {
            "js" | "mjs" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "html" | "htm" => "text/html; charset=utf-8",
            "json" | "map" => "application/json",
            "svg" => "image/svg+xml",
            "png" => "image/png",
            "jpg" | "jpeg" => "image/jpeg",
            "webp" => "image/webp",
            "avif" => "image/avif",
            "gif" => "image/gif",
            "ico" => "image/x-icon",
            "woff2" => "font/woff2",
            "woff" => "font/woff",
            "txt" => "text/plain; charset=utf-8",
            "m3u8" => "application/vnd.apple.mpegurl",
            "mpd" => "application/dash+xml",
            "ts" => "video/mp2t",
            "m4s" => "video/iso.segment",
            "mp4" => "video/mp4",
            "m4a" => "audio/mp4",
            "aac" => "audio/aac",
            "vtt" => "text/vtt; charset=utf-8",
            "wasm" => "application/wasm",
            _ => "application/octet-stream",
        }
    }
}

impl ObjectKey {
    /// The one URL path purges name this object by: `/media/<key>` for an upload served
    /// from `/media/`, otherwise `/<key>` (`/static/…`, `/video/…`). Every spelling of a
    /// request that reaches the object is checked against it.
    pub fn purge_path(&self, uploaded: bool) -> String {
        if uploaded {
            format!("/media/{}", self.url_path())
        } else {
            format!("/{}", self.url_path())
        }
    }

    /// The key as a URL path (no leading `/`): each segment percent-encoded — everything
    /// but RFC 3986's `pchar` (unreserved, sub-delims, `:` and `@`) escaped — so a key
    /// with `?`, `#`, `%`, spaces or non-Latin-1 characters is a valid `Location` that
    /// names the same object.
    pub fn url_path(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for (i, segment) in self.0.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            for b in segment.bytes() {
                let pchar = b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'-' | b'.'
                            | b'_'
                            | b'~'
                            | b'!'
                            | b'$'
                            | b'&'
                            | b'\''
                            | b'('
                            | b')'
                            | b'*'
                            | b'+'
                            | b','
                            | b';'
                            | b'='
                            | b':'
                            | b'@'
                    );
                if pchar {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
        out
    }
}

/// Headers that keep a served object from acting as the site: every R2 answer is
/// `nosniff` (a browser never guesses a script out of a declared image); an uploaded
/// original (`/media/`) whose type is not a raster image, video or audio — SVG, HTML,
/// XML, JS, anything the uploader labelled so — is an attachment in a CSP sandbox, so it
/// never runs on the site's origin with the viewer's cookies. Decided on the type that
/// is served (the uploader's `Content-Type` included), not on the key's extension.
pub fn safety_headers(uploaded: bool, content_type: &str) -> Vec<(&'static str, &'static str)> {
    let mut headers = vec![("x-content-type-options", "nosniff")];
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let passive = matches!(
        essence.as_str(),
        "image/jpeg" | "image/png" | "image/webp" | "image/avif" | "image/gif" | "image/x-icon"
    ) || essence.starts_with("video/")
        || essence.starts_with("audio/");
    if uploaded && !passive {
        headers.push(("content-disposition", "attachment"));
        headers.push(("content-security-policy", "sandbox"));
    }
    headers
}

/// Percent-decodes a URL path once; `None` on bad escapes or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A single `Range: bytes=…` request, as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (inclusive) or `bytes=a-` (`end` = None).
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last n bytes.
    Suffix { len: u64 },
}

/// A range resolved against the object size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// Serve bytes `start..=end` with 206.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

impl ByteRange {
    /// Parses one range. Multiple ranges, other units and garbage give `None`, and the
    /// whole object is served (which RFC 9110 permits).
    pub fn parse(header: &str) -> Option<Self> {
        let spec = header.trim().strip_prefix("bytes=")?;
        if spec.contains(',') || spec.len() > 64 {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        match (a.is_empty(), b.is_empty()) {
            (true, false) => Some(Self::Suffix {
                len: b.parse().ok()?,
            }),
            (false, true) => Some(Self::From {
                start: a.parse().ok()?,
                end: None,
            }),
            (false, false) => {
                let (start, end) = (a.parse().ok()?, b.parse().ok()?);
                (start <= end).then_some(Self::From {
                    start,
                    end: Some(end),
                })
            }
            (true, true) => None,
        }
    }

    pub fn resolve(self, size: u64) -> Resolved {
        match self {
            Self::From { start, .. } if start >= size => Resolved::Unsatisfiable,
            Self::From { start, end } => Resolved::Partial {
                start,
                end: end.map_or(size - 1, |e| e.min(size - 1)),
            },
            Self::Suffix { len: 0 } => Resolved::Unsatisfiable,
            Self::Suffix { .. } if size == 0 => Resolved::Unsatisfiable,
            Self::Suffix { len } => Resolved::Partial {
                start: size.saturating_sub(len),
                end: size - 1,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_spelling_of_an_object_s_url_has_one_purge_path() {
        let media = |rest: &str| super::ObjectKey::parse("", rest).unwrap().purge_path(true);
        assert_eq!(media("caf%c3%a9.jpg"), media("caf%C3%A9.jpg"));
        assert_eq!(media("%61.jpg"), "/media/a.jpg");
        assert_eq!(media("a b.jpg"), "/media/a%20b.jpg");
        let video = super::ObjectKey::parse("video/", "42/x.ts").unwrap();
        assert_eq!(video.purge_path(false), "/video/42/x.ts");
    }

    #[test]
    fn url_paths_escape_every_segment_and_name_the_same_key() {
        let table = [
            ("demo/a.jpg", "demo/a.jpg"),
            ("dir/a b?.jpg", "dir/a%20b%3F.jpg"),
            ("x/100%#frag.png", "x/100%25%23frag.png"),
            ("ünï/日本.jpg", "%C3%BCn%C3%AF/%E6%97%A5%E6%9C%AC.jpg"),
        ];
        for (stored, want) in table {
            let key = ObjectKey(stored.to_owned());
            let encoded = key.url_path();
            assert_eq!(encoded, want, "{stored}");
            // The Location parses back to the same key.
            assert_eq!(ObjectKey::parse("", &encoded).unwrap(), key);
        }
    }

    #[test]
    fn uploaded_active_content_is_an_attachment_in_a_sandbox() {
        let attachment = |uploaded, ct: &str| {
            safety_headers(uploaded, ct).contains(&("content-disposition", "attachment"))
        };
        for active in [
            "image/svg+xml",
            "text/html; charset=utf-8",
            "application/xml",
            "text/javascript",
            "application/octet-stream",
            "",
        ] {
            assert!(attachment(true, active), "{active}");
            assert!(
                !attachment(false, active),
                "static assets are the site's own: {active}"
            );
        }
        for passive in ["image/jpeg", "IMAGE/PNG", "video/mp4", "audio/aac"] {
            assert!(!attachment(true, passive), "{passive}");
        }
        assert!(safety_headers(false, "text/css").contains(&("x-content-type-options", "nosniff")));
        assert!(
            safety_headers(true, "text/html").contains(&("content-security-policy", "sandbox"))
        );
    }

    use super::*;

    #[test]
    fn keys_refuse_traversal_and_control_characters() {
        assert_eq!(
            ObjectKey::parse("static/", "app.js").unwrap().as_str(),
            "static/app.js"
        );
        for bad in [
            "",
            "../secret",
            "a/../b",
            "a//b",
            "./a",
            "a/",
            "a\\b",
            "a\u{0}b",
            "%2e%2e/x",
            "a\nb",
        ] {
            assert!(ObjectKey::parse("static/", bad).is_err(), "{bad:?}");
        }
        assert!(ObjectKey::parse("static/", &"a".repeat(1025)).is_err());
    }

    #[test]
    fn hashed_names_are_recognised() {
        let k = |s| ObjectKey::parse("static/", s).unwrap();
        assert!(k("app.3f9a2c1d.js").is_hashed());
        assert!(k("css/site.0123456789abcdef.css").is_hashed());
        assert!(!k("app.js").is_hashed());
        assert!(!k("app.v2.js").is_hashed());
        assert!(!k("3f9a2c1d.js").is_hashed());
        assert!(
            !k("app.3f9a2c.js").is_hashed(),
            "too short for a content hash"
        );
    }

    #[test]
    fn content_types_by_extension() {
        let k = |s| ObjectKey::parse("video/", s).unwrap().content_type();
        assert_eq!(k("1/master.m3u8"), "application/vnd.apple.mpegurl");
        assert_eq!(k("1/seg-001.ts"), "video/mp2t");
        assert_eq!(k("1/seg.M4S"), "video/iso.segment");
        assert_eq!(k("noext"), "application/octet-stream");
    }

    #[test]
    fn ranges_parse_and_resolve() {
        let table = [
            ("bytes=0-99", 1000, Resolved::Partial { start: 0, end: 99 }),
            (
                "bytes=900-",
                1000,
                Resolved::Partial {
                    start: 900,
                    end: 999,
                },
            ),
            (
                "bytes=900-5000",
                1000,
                Resolved::Partial {
                    start: 900,
                    end: 999,
                },
            ),
            (
                "bytes=-100",
                1000,
                Resolved::Partial {
                    start: 900,
                    end: 999,
                },
            ),
            (
                "bytes=-5000",
                1000,
                Resolved::Partial { start: 0, end: 999 },
            ),
            ("bytes=1000-", 1000, Resolved::Unsatisfiable),
            ("bytes=5000-6000", 1000, Resolved::Unsatisfiable),
            ("bytes=-0", 1000, Resolved::Unsatisfiable),
        ];
        for (header, size, want) in table {
            assert_eq!(
                ByteRange::parse(header).unwrap().resolve(size),
                want,
                "{header}"
            );
        }
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-1",
            "bytes=-",
            "bytes=a-b",
            "",
        ] {
            assert_eq!(ByteRange::parse(ignored), None, "{ignored}");
        }
    }
}
