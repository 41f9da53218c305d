//! Which of the client's request headers reach the origin. Part of a key's truth: an
//! answer stored under a key may depend only on what that key carries, so a cached
//! shared class forwards nothing it does not key (no cookies, credentials, `Accept`,
//! `Accept-Language`, `User-Agent`), and no class forwards the client's own
//! conditionals and ranges on a cached request (the edge answers those from its entry;
//! a 304 or 206 meant for the client must never be taken for the edge's own answer).

use protocol::headers::{CLIENT_IP, EDGE_SECRET, EXPERIMENTS, REQUEST_ID, SEGMENT};
use protocol::page::FORWARDED_HOST;

use super::table::Audience;

/// Never forwarded: hop-by-hop (RFC 9110 §7.6.1), framing, and what the edge sets.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "host",
    "content-length",
];

/// The client's conditionals and range: about its copy, not the representation.
const CLIENT_ONLY: [&str; 6] = [
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "range",
    "if-range",
];

/// Whether request header `name` (lowercase) goes to the origin. `bypassed`: the cache
/// is not used for this request; `listed`: the names the request's `Connection` lists.
pub fn forwarded(audience: Audience, bypassed: bool, name: &str, listed: &[String]) -> bool {
    if HOP_BY_HOP.contains(&name)
        || listed.iter().any(|l| l == name)
        || name == SEGMENT
        || name == CLIENT_IP
        || name == EDGE_SECRET
        || name == EXPERIMENTS
        || name == FORWARDED_HOST
    {
        return false;
    }
    match audience {
        Audience::Shared | Audience::PerSegment if !bypassed => name == REQUEST_ID,
        // Credentials and cookies never reach a shared class's origin, bypassed or not.
        Audience::Shared | Audience::PerSegment => name != "cookie" && name != "authorization",
        Audience::Origin | Audience::Nobody | Audience::Private => {
            bypassed || !CLIENT_ONLY.contains(&name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_reaches_the_origin_per_audience() {
        use Audience::*;
        let none: Vec<String> = Vec::new();
        // (audience, bypassed, header, forwarded)
        let table = [
            (Shared, false, "x-request-id", true),
            (Origin, true, "x-edge-secret", false),
            (Origin, false, "x-edge-secret", false),
            // What the edge vouches for is never the client's to say.
            (Nobody, true, "x-forwarded-host", false),
            (Origin, true, "x-course-experiments", false),
            (Shared, false, "accept", false),
            (Shared, false, "accept-language", false),
            (Shared, false, "user-agent", false),
            (Shared, false, "cookie", false),
            (Shared, false, "authorization", false),
            (Shared, false, "if-none-match", false),
            (PerSegment, false, "cookie", false),
            (PerSegment, true, "content-type", true),
            (PerSegment, true, "cookie", false),
            (Origin, false, "cookie", true),
            (Origin, false, "accept", true),
            (Origin, false, "if-none-match", false),
            (Origin, false, "range", false),
            (Origin, true, "if-none-match", true),
            (Nobody, true, "cookie", true),
            (Origin, true, "x-course-segment", false),
            (Origin, true, "x-edge-client-ip", false),
            (Origin, true, "connection", false),
            (Origin, true, "transfer-encoding", false),
        ];
        for (audience, bypassed, name, want) in table {
            assert_eq!(
                forwarded(audience, bypassed, name, &none),
                want,
                "{audience:?} bypassed={bypassed} {name}"
            );
        }
        let listed = vec![String::from("x-hop")];
        assert!(
            !forwarded(Origin, true, "x-hop", &listed),
            "Connection-listed"
        );
        assert!(forwarded(Origin, true, "x-other", &listed));
    }
}
