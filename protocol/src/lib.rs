//! The contract between the course-edge worker and the origin.
//!
//! Everything here is spelled exactly once: the JSON error shape both sides answer
//! with, the header names they exchange, the `x-edge-cache` values, and the cache-tag
//! spelling the origin emits and the purge path later consumes, the session-cookie
//! format, segments, and HTTP dates. Neither side may write these by hand.

pub mod auth;
pub mod cache_status;
pub mod error;
pub mod headers;
pub mod http_date;
pub mod outcomes;
pub mod page;
pub mod purge;
pub mod segment;
pub mod session;
pub mod tags;

pub use cache_status::EdgeCacheStatus;
pub use error::{ErrorBody, ErrorDetail};
pub use segment::{Audience, Locale, Plan, Segment};
pub use session::{Claims, SessionKeys};
pub use tags::CacheTag;
