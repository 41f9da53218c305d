//! Uploads of originals into R2 (`PUT /admin/media/<key>`): every rule, natively tested.
//!
//! The glue (`edge::upload`) checks the token, asks [`admit`] about the key and the
//! declared length before reading anything, reads the first [`SNIFF_BYTES`] of the body
//! and asks [`inspect`] what they are — by magic bytes, never by the name or the
//! `Content-Type` the client sent — then streams those bytes and the rest of the body to
//! R2 without holding the whole file. What R2 stores is decided here too: the content
//! type, the image's displayed width and height (for pages that reserve space), and who
//! uploaded it ([`metadata`]); which URLs the edge purges once it is stored
//! ([`purge_urls`]).
//!
//! SVG is refused: it is a document that can carry scripts, and the image route cannot
//! resize it. Content teams convert it to PNG or WebP.

use std::collections::HashMap;

use crate::assets::ObjectKey;

/// Bytes read before deciding: enough for a JPEG's EXIF and ICC segments ahead of its
/// frame header, an AVIF's `meta` box, a few MPEG-TS packets.
pub const SNIFF_BYTES: usize = 256 * 1024;

impl Admitted {
    /// How much of the body to read before deciding: a playlist whole (it is small and
    /// all of it must be UTF-8), anything else its first [`SNIFF_BYTES`].
    pub fn sniff_bytes(&self) -> usize {
        let cap = if self.expected == Kind::Playlist {
            MAX_PLAYLIST_BYTES as usize
        } else {
            SNIFF_BYTES
        };
        usize::try_from(self.length).map_or(cap, |n| n.min(cap))
    }
}
/// Default upload limit: the request body limit of Workers' Free and Pro plans.
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// The largest limit `UPLOAD_MAX_BYTES` may set: R2's limit for a single `put`.
pub const MAX_MAX_BYTES: u64 = 5 * 1000 * 1000 * 1000;
/// A playlist is text listing segments; anything larger is not one.
pub const MAX_PLAYLIST_BYTES: u64 = 1024 * 1024;
/// Key prefixes that belong to the edge or the site's build, not to content teams.
const RESERVED: [&str; 2] = ["derived/", "static/"];

/// What an upload may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jpeg,
    Png,
    Webp,
    Gif,
    Avif,
    /// An ISO-BMFF movie (`ftyp`), including an HLS fMP4 init segment.
    Mp4,
    /// An HLS fMP4 media segment (`styp`, `moof` or `sidx` first).
    Fmp4Segment,
    /// An HLS MPEG-TS segment (188-byte packets).
    MpegTs,
    /// An HLS playlist (`#EXTM3U`).
    Playlist,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jpeg => "JPEG",
            Self::Png => "PNG",
            Self::Webp => "WebP",
            Self::Gif => "GIF",
            Self::Avif => "AVIF",
            Self::Mp4 => "MP4",
            Self::Fmp4Segment => "fMP4 segment",
            Self::MpegTs => "MPEG-TS segment",
            Self::Playlist => "HLS playlist",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
            Self::Avif => "image/avif",
            Self::Mp4 => "video/mp4",
            Self::Fmp4Segment => "video/iso.segment",
            Self::MpegTs => "video/mp2t",
            Self::Playlist => "application/vnd.apple.mpegurl",
        }
    }

    /// The key extensions (lowercase) an object of this kind may have.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            Self::Jpeg => &["jpg", "jpeg"],
            Self::Png => &["png"],
            Self::Webp => &["webp"],
            Self::Gif => &["gif"],
            Self::Avif => &["avif"],
            Self::Mp4 => &["mp4"],
            Self::Fmp4Segment => &["m4s"],
            Self::MpegTs => &["ts"],
            Self::Playlist => &["m3u8"],
        }
    }

    pub fn is_image(self) -> bool {
        matches!(
            self,
            Self::Jpeg | Self::Png | Self::Webp | Self::Gif | Self::Avif
        )
    }

    const ALL: [Kind; 9] = [
        Self::Jpeg,
        Self::Png,
        Self::Webp,
        Self::Gif,
        Self::Avif,
        Self::Mp4,
        Self::Fmp4Segment,
        Self::MpegTs,
        Self::Playlist,
    ];

    fn for_extension(ext: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.extensions().contains(&ext))
    }
}

/// The extensions accepted, for error messages.
pub const ACCEPTED: &str = ".jpg .jpeg .png .webp .gif .avif .mp4 .m4s .ts .m3u8";

/// Why an upload is refused (before anything is stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("uploads need a Content-Length (the body is streamed to R2, which needs its length)")]
    LengthRequired,
    #[error("the upload is {length} bytes; the limit is {limit} bytes (UPLOAD_MAX_BYTES)")]
    TooLarge { length: u64, limit: u64 },
    #[error("the upload is empty")]
    Empty,
    #[error(
        "the key's URL, escaped, is longer than {} bytes, which no purge can name; use a shorter key or fewer non-ASCII characters",
        protocol::purge::MAX_PATH_BYTES
    )]
    KeyTooLong,
    #[error(
        "keys under {prefix} are not uploads (that folder belongs to the edge or the site build)"
    )]
    ReservedKey { prefix: &'static str },
    #[error("the key must end in one of {ACCEPTED} (got {extension:?})")]
    UnknownExtension { extension: String },
    #[error(
        "SVG is refused: it can carry scripts and cannot be resized; convert it to PNG or WebP"
    )]
    Svg,
    #[error("HEIC/HEIF is not accepted: convert it to AVIF or JPEG")]
    Heif,
    #[error("the bytes are none of the accepted types ({ACCEPTED})")]
    NotRecognized,
    #[error("the key ends in .{extension} but the bytes are {}; name it .{}", found.as_str(), found.extensions()[0])]
    Mismatch { extension: String, found: Kind },
    #[error("the {kind} header does not give a width and height in its first {SNIFF_BYTES} bytes")]
    NoDimensions { kind: &'static str },
    #[error("an HLS playlist is UTF-8 text of at most {MAX_PLAYLIST_BYTES} bytes")]
    BadPlaylist,
    #[error("an MPEG-TS segment is a whole number of 188-byte packets, each starting 0x47")]
    BadTransportStream,
    #[error("Content-MD5 must be the base64 of a 16-byte MD5 digest")]
    BadChecksum,
    #[error(
        "the body did not match its Content-MD5 or Content-Length; nothing was stored, send it again"
    )]
    Corrupted,
}

impl UploadError {
    /// The HTTP status the edge answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::LengthRequired => 411,
            Self::TooLarge { .. } => 413,
            Self::Empty
            | Self::ReservedKey { .. }
            | Self::KeyTooLong
            | Self::BadChecksum
            | Self::Corrupted => 400,
            Self::UnknownExtension { .. }
            | Self::Svg
            | Self::Heif
            | Self::NotRecognized
            | Self::Mismatch { .. } => 415,
            Self::NoDimensions { .. } | Self::BadPlaylist | Self::BadTransportStream => 422,
        }
    }

    /// The request part that was wrong.
    pub fn field(&self) -> &'static str {
        match self {
            Self::LengthRequired | Self::TooLarge { .. } => "content-length",
            Self::ReservedKey { .. } | Self::KeyTooLong | Self::UnknownExtension { .. } => "key",
            Self::BadChecksum => "content-md5",
            _ => "body",
        }
    }
}

/// An upload allowed to start: its length, and the digest R2 must verify if one was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub length: u64,
    pub expected: Kind,
    pub md5: Option<[u8; 16]>,
}

/// Checks what can be checked before reading the body: the key, the declared length
/// against `max`, and the optional `Content-MD5` (RFC 1864: base64 of the digest).
pub fn admit(
    key: &ObjectKey,
    content_length: Option<&str>,
    content_md5: Option<&str>,
    max: u64,
) -> Result<Admitted, UploadError> {
    if let Some(prefix) = RESERVED.into_iter().find(|p| key.as_str().starts_with(p)) {
        return Err(UploadError::ReservedKey { prefix });
    }
    if !purge_urls(key)
        .iter()
        .all(|url| protocol::purge::is_path(url))
    {
        // Stored, it could never be purged: refused before anything is written.
        return Err(UploadError::KeyTooLong);
    }
    let extension = extension(key);
    if extension == "svg" || extension == "svgz" {
        return Err(UploadError::Svg);
    }
    let expected =
        Kind::for_extension(&extension).ok_or(UploadError::UnknownExtension { extension })?;
    let length = content_length
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or(UploadError::LengthRequired)?;
    if length == 0 {
        return Err(UploadError::Empty);
    }
    if length > max {
        return Err(UploadError::TooLarge { length, limit: max });
    }
    if expected == Kind::Playlist && length > MAX_PLAYLIST_BYTES {
        return Err(UploadError::BadPlaylist);
    }
    let md5 = content_md5
        .map(|v| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
                .and_then(|d| <[u8; 16]>::try_from(d).ok())
                .ok_or(UploadError::BadChecksum)
        })
        .transpose()?;
    Ok(Admitted {
        length,
        expected,
        md5,
    })
}

fn extension(key: &ObjectKey) -> String {
    let name = key.as_str().rsplit('/').next().unwrap_or("");
    name.rsplit_once('.')
        .map_or("", |(_, ext)| ext)
        .to_ascii_lowercase()
}

/// What the first bytes say an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspected {
    pub kind: Kind,
    /// Width and height as displayed (a JPEG's EXIF orientation 5–8 swaps them).
    pub dimensions: Option<(u32, u32)>,
}

/// What `prefix` — the body's first bytes, all of it when `length` is no larger — is,
/// checked against the key's extension.
pub fn inspect(admitted: &Admitted, prefix: &[u8]) -> Result<Inspected, UploadError> {
    let kind = sniff(prefix)?;
    if kind != admitted.expected {
        return Err(UploadError::Mismatch {
            extension: admitted.expected.extensions()[0].to_owned(),
            found: kind,
        });
    }
    let complete = prefix.len() as u64 >= admitted.length;
    match kind {
        Kind::MpegTs => {
            let whole_packets = admitted.length.is_multiple_of(188);
            let synced = prefix.iter().step_by(188).all(|&b| b == 0x47);
            if !(whole_packets && synced) {
                return Err(UploadError::BadTransportStream);
            }
        }
        Kind::Playlist => {
            // Whole when complete; otherwise a character may be cut at the end.
            if let Err(e) = std::str::from_utf8(prefix)
                && (complete || e.error_len().is_some())
            {
                return Err(UploadError::BadPlaylist);
            }
        }
        _ => {}
    }
    let dimensions = if kind.is_image() {
        let size = imagesize::blob_size(prefix).map_err(|_| UploadError::NoDimensions {
            kind: kind.as_str(),
        })?;
        let (w, h) = (
            u32::try_from(size.width).unwrap_or(0),
            u32::try_from(size.height).unwrap_or(0),
        );
        if w == 0 || h == 0 {
            return Err(UploadError::NoDimensions {
                kind: kind.as_str(),
            });
        }
        let turned = kind == Kind::Jpeg
            && crate::image::orient::swaps_axes(crate::image::orient::orientation(prefix));
        Some(if turned { (h, w) } else { (w, h) })
    } else {
        None
    };
    Ok(Inspected { kind, dimensions })
}

/// The type of an upload from its first bytes.
fn sniff(bytes: &[u8]) -> Result<Kind, UploadError> {
    use crate::image::decode::{SourceFormat, sniff as image_sniff};
    if let Some(format) = image_sniff(bytes) {
        return Ok(match format {
            SourceFormat::Jpeg => Kind::Jpeg,
            SourceFormat::Png => Kind::Png,
            SourceFormat::Webp => Kind::Webp,
            SourceFormat::Gif => Kind::Gif,
        });
    }
    if let Some(kind) = iso_bmff(bytes)? {
        return Ok(kind);
    }
    if bytes.first() == Some(&0x47) && bytes.len() >= 4 {
        return Ok(Kind::MpegTs);
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if text.starts_with(b"#EXTM3U") {
        return Ok(Kind::Playlist);
    }
    let start = text.trim_ascii_start();
    let lower: Vec<u8> = start.iter().take(256).map(u8::to_ascii_lowercase).collect();
    let svg_like = lower.starts_with(b"<svg")
        || lower.starts_with(b"<!doctype svg")
        || (lower.starts_with(b"<?xml") && lower.windows(4).any(|w| w == b"<svg"));
    if svg_like {
        return Err(UploadError::Svg);
    }
    Err(UploadError::NotRecognized)
}

/// An ISO base media file (MP4, AVIF, HEIF, fMP4 segments) by its first box.
fn iso_bmff(bytes: &[u8]) -> Result<Option<Kind>, UploadError> {
    let Some(box_type) = bytes.get(4..8) else {
        return Ok(None);
    };
    match box_type {
        b"styp" | b"moof" | b"sidx" => Ok(Some(Kind::Fmp4Segment)),
        b"ftyp" => {
            let size = bytes
                .get(0..4)
                .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize);
            let end = size.clamp(16, bytes.len().max(16)).min(bytes.len());
            let major = bytes.get(8..12).unwrap_or_default();
            let compatible = bytes.get(16..end).unwrap_or_default();
            let brands: Vec<&[u8]> = std::iter::once(major)
                .chain(compatible.chunks_exact(4))
                .collect();
            let has = |brand: &[u8]| brands.contains(&brand);
            if has(b"avif") || has(b"avis") {
                Ok(Some(Kind::Avif))
            } else if ["heic", "heix", "hevc", "heim", "heis", "mif1", "msf1"]
                .iter()
                .any(|b| major == b.as_bytes())
            {
                Err(UploadError::Heif)
            } else {
                Ok(Some(Kind::Mp4))
            }
        }
        _ => Ok(None),
    }
}

/// What a failed R2 `put` means: a body that did not match its declared digest or
/// length is the client's to send again (`Some`: nothing was stored); anything else is
/// R2's (`None`: it may or may not have stored it).
pub fn put_failure(detail: &str) -> Option<UploadError> {
    let lower = detail.to_ascii_lowercase();
    [
        "md5",
        "checksum",
        "digest",
        "different length than expected",
        "expected bytes",
    ]
    .iter()
    .any(|w| lower.contains(w))
    .then_some(UploadError::Corrupted)
}

/// Headers that give an uploaded image's displayed size to whoever fetches it (pages
/// reserve its space without downloading it), from the object's custom metadata.
pub fn dimension_headers(meta: &HashMap<String, String>) -> Vec<(&'static str, String)> {
    let number = |name: &str| {
        meta.get(name)
            .filter(|v| !v.is_empty() && v.len() <= 5 && v.bytes().all(|b| b.is_ascii_digit()))
            .cloned()
    };
    match (number(meta::WIDTH), number(meta::HEIGHT)) {
        (Some(w), Some(h)) => vec![(headers::WIDTH, w), (headers::HEIGHT, h)],
        _ => Vec::new(),
    }
}

/// The status of a stored upload: 201 Created for a new key, 200 for a replacement
/// (RFC 9110 §9.3.4).
pub fn stored_status(replaced: bool) -> u16 {
    if replaced { 200 } else { 201 }
}

/// Response headers naming an uploaded image's displayed size.
pub mod headers {
    pub const WIDTH: &str = protocol::headers::MEDIA_WIDTH;
    pub const HEIGHT: &str = protocol::headers::MEDIA_HEIGHT;
}

/// Custom-metadata names on an uploaded object.
pub mod meta {
    pub const WIDTH: &str = "width";
    pub const HEIGHT: &str = "height";
    pub const KIND: &str = "kind";
    pub const UPLOADED_BY: &str = "uploaded-by";
}

/// The custom metadata an upload is stored with.
pub fn metadata(inspected: &Inspected, holder: &str) -> HashMap<String, String> {
    let mut out = HashMap::from([
        (meta::KIND.to_owned(), inspected.kind.as_str().to_owned()),
        (meta::UPLOADED_BY.to_owned(), holder.to_owned()),
    ]);
    if let Some((w, h)) = inspected.dimensions {
        out.insert(meta::WIDTH.to_owned(), w.to_string());
        out.insert(meta::HEIGHT.to_owned(), h.to_string());
    }
    out
}

/// The edge URLs an object is served under; purging them reaches every cached copy and
/// every derivative (the image route files its entries under the original's `/media/`
/// URL).
pub fn purge_urls(key: &ObjectKey) -> Vec<String> {
    let mut urls = vec![key.purge_path(true)];
    if key.as_str().starts_with("video/") {
        urls.push(key.purge_path(false));
    }
    urls
}

/// Where an upload's purge waits until the ledger has it: written before the object, deleted
/// once the purge is applied, re-applied by the next upload and by every cron run while
/// it stays (an outbox, as at the origin: a purge is never lost, whatever fails between
/// the write and the purge). Inside `derived/`, which no route serves.
pub const PENDING_PREFIX: &str = "derived/_purges/";

/// The outbox object of a purge.
pub fn pending_key(purge_id: &str) -> String {
    format!("{PENDING_PREFIX}{purge_id}.json")
}

/// The cron schedule (wrangler.toml `[triggers]`) that only applies the outbox; every
/// other schedule runs the `derived/` sweeper, which applies it too.
pub const OUTBOX_CRON: &str = "*/5 * * * *";

/// How long an outbox entry belongs to the upload that wrote it: others apply it only
/// after this, so a purge is not applied (and its id spent) while that upload's body is
/// still streaming, before the new bytes are in R2.
pub const PENDING_GRACE_MS: f64 = 10.0 * 60.0 * 1000.0;

/// An outbox entry: the purge, and when others may apply it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    pub purge: protocol::purge::Purge,
    /// Milliseconds since the epoch (whole, so the entry compares exactly).
    pub not_before_ms: u64,
}

impl Pending {
    pub fn new(purge: protocol::purge::Purge, now_ms: f64) -> Self {
        Self {
            purge,
            not_before_ms: (now_ms + PENDING_GRACE_MS).max(0.0) as u64,
        }
    }

    /// Whether a flusher (another upload, the cron run) may apply it now.
    pub fn is_due(&self, now_ms: f64) -> bool {
        now_ms >= self.not_before_ms as f64
    }

    /// The purge its own upload applies once the object is stored: another id than the
    /// entry's, so a flusher that applied the entry early (an upload longer than the
    /// grace) cannot make it a no-op in the ledger.
    pub fn after_store(&self) -> protocol::purge::Purge {
        protocol::purge::Purge {
            id: format!("{}-stored", self.purge.id),
            change: self.purge.change.clone(),
        }
    }
}

/// The purge id of one upload attempt (`nonce`: unique per attempt, e.g. the time it
/// began): a retried delivery is applied once, while the same bytes uploaded again
/// after other bytes are a new purge.
pub fn purge_id(key: &ObjectKey, nonce: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}|{}", key.as_str(), nonce.trim_matches('"')));
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("upload-{hex}")
}

#[cfg(test)]
mod tests;
