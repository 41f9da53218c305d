//! Image optimization core (pure, native-testable): the URL grammar ([`options`]), fit
//! geometry ([`geometry`]), format negotiation ([`format`]), derivative keys ([`key`])
//! and URL signatures ([`sign`]). Codecs, limits and the edge glue build on these.

pub mod format;
pub mod geometry;
pub mod key;
pub mod options;
pub mod sign;
