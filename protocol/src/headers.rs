//! Header names shared by the edge and the origin (lower case, as HTTP/2 sends them).

/// What the edge did with a request: one of [`crate::EdgeCacheStatus`].
pub const EDGE_CACHE: &str = "x-edge-cache";
/// Per-stage durations (W3C Server Timing).
pub const SERVER_TIMING: &str = "server-timing";
/// Space- or comma-separated cache tags on an origin response (Cloudflare's spelling).
pub const CACHE_TAG: &str = "cache-tag";
/// The audience segment the edge derived from the verified session cookie; the origin
/// keys per-segment content (the feed) by it. Never a user id.
pub const SEGMENT: &str = "x-course-segment";
/// The shared secret the edge presents on every origin request (a wrangler secret at
/// the edge, `EDGE_SECRET` at the origin). Never taken from a client.
pub const EDGE_SECRET: &str = "x-edge-secret";
/// Correlates one request across edge and origin logs.
pub const REQUEST_ID: &str = "x-request-id";
/// The client's IP as the edge saw it (Cloudflare's `cf-connecting-ip` on the request
/// to the Worker), set by the edge on every origin request and never taken from the
/// client: the origin's per-IP login limit reads it.
pub const CLIENT_IP: &str = "x-edge-client-ip";
/// Set by the origin on an answer from a shed path (its last copy); the edge never keeps
/// such an answer longer than the origin's own lifetime for it.
pub const ORIGIN_DEGRADED: &str = "x-origin-degraded";

/// An uploaded image's displayed size (EXIF orientation applied), as the edge answers
/// `HEAD /media/<key>`; the origin reads them to render `<img width height>`.
pub const MEDIA_WIDTH: &str = "x-media-width";
pub const MEDIA_HEIGHT: &str = "x-media-height";

/// The experiment arms a request is rendered for (`hero=bold, pricing=b`), set by the
/// edge for the classes an experiment varies; never taken from the client.
pub const EXPERIMENTS: &str = "x-course-experiments";
