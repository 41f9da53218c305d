//! The viewer's audience segment, derived at the edge from the verified session cookie
//! (`protocol::session`), never from anything the client can simply assert: a valid
//! cookie gives `<plan>-<locale>`; no cookie or a bad one gives `anon-<locale>`, the
//! locale taken from `Accept-Language` (two letters) or `en`. Per-segment cache entries
//! are keyed by this, so they are shared by many viewers and never by one user only.

use protocol::session::COOKIE_NAME;
use protocol::{Audience, Claims, Locale, Segment, SessionKeys};

/// The session cookie's value from a `Cookie` header.
pub fn session_cookie(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim_matches('"'))
}

/// The first two-letter language in `Accept-Language`, if any.
fn preferred_locale(accept_language: Option<&str>) -> Locale {
    accept_language
        .and_then(|header| {
            header.split(',').find_map(|item| {
                let tag = item.split(';').next()?.trim();
                let primary = tag.split('-').next()?.to_ascii_lowercase();
                Locale::parse(&primary)
            })
        })
        .or_else(|| Locale::parse("en"))
        .unwrap_or_else(|| unreachable!("\"en\" is a valid locale"))
}

/// What the session cookie says about the visitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    /// No session cookie (or no keys to verify one with).
    None,
    Verified(Claims),
    /// A cookie that does not verify: tampered, expired, malformed, oversized, or signed
    /// with an unknown key. The visitor is anonymous; the reason (never the token) is
    /// logged.
    Refused(&'static str),
}

/// Verifies the session cookie, if any.
pub fn session_of(
    cookie_header: Option<&str>,
    keys: Option<&SessionKeys>,
    now_secs: i64,
) -> Session {
    let (Some(keys), Some(token)) = (keys, cookie_header.and_then(session_cookie)) else {
        return Session::None;
    };
    match keys.verify(token, now_secs) {
        Ok(claims) => Session::Verified(claims),
        Err(e) => Session::Refused(e.as_str()),
    }
}

/// The segment of a visitor with `claims` (verified and not revoked), else anonymous in
/// the preferred locale.
pub fn segment_of(claims: Option<&Claims>, accept_language: Option<&str>) -> Segment {
    match claims {
        Some(claims) => claims.segment(),
        None => Segment {
            audience: Audience::Anon,
            locale: preferred_locale(accept_language),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Plan;

    /// The segment the glue derives: the cookie verified, then its claims or anonymous.
    fn segment_for(
        cookie: Option<&str>,
        accept_language: Option<&str>,
        keys: Option<&SessionKeys>,
        now_secs: i64,
    ) -> Segment {
        match session_of(cookie, keys, now_secs) {
            Session::Verified(claims) => segment_of(Some(&claims), accept_language),
            Session::None | Session::Refused(_) => segment_of(None, accept_language),
        }
    }

    fn keys() -> SessionKeys {
        SessionKeys::parse(&SessionKeys::spec_for("k1", &[7; 32])).unwrap()
    }

    fn token(plan: Plan, exp: i64) -> String {
        keys().sign(&Claims {
            sid: "s".into(),
            uid: 1,
            name: "n".into(),
            plan,
            locale: Locale::parse("de").unwrap(),
            exp,
        })
    }

    #[test]
    fn a_verified_cookie_gives_the_members_segment() {
        let cookie = format!("theme=dark; ce_session={}", token(Plan::Pro, 100));
        let seg = segment_for(Some(&cookie), Some("fr"), Some(&keys()), 50);
        assert_eq!(seg.to_string(), "pro-de");
    }

    #[test]
    fn every_bad_cookie_is_refused_with_its_reason_and_never_an_error() {
        let good = token(Plan::Pro, 100);
        let other_key = SessionKeys::parse(&SessionKeys::spec_for("k2", &[9; 32])).unwrap();
        let unknown_kid = other_key.sign(&Claims {
            sid: "s".into(),
            uid: 1,
            name: "n".into(),
            plan: Plan::Pro,
            locale: Locale::parse("de").unwrap(),
            exp: 100,
        });
        let mut tampered = good.clone().into_bytes();
        let at = tampered.len() / 2;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        let oversized = format!("v1.k1.{}.x", "a".repeat(4096));
        for (cookie, reason) in [
            (format!("ce_session={}", token(Plan::Pro, 10)), "expired"),
            (format!("ce_session={tampered}"), "bad_signature"),
            (format!("ce_session={unknown_kid}"), "unknown_key"),
            (String::from("ce_session=v1.k1.%%%.###"), "malformed"),
            (String::from("ce_session=garbage"), "malformed"),
            (format!("ce_session={oversized}"), "too_long"),
        ] {
            assert_eq!(
                session_of(Some(&cookie), Some(&keys()), 50),
                Session::Refused(reason),
                "{cookie:.60}"
            );
        }
        assert!(matches!(
            session_of(Some(&format!("ce_session={good}")), Some(&keys()), 50),
            Session::Verified(c) if c.plan == Plan::Pro
        ));
        // Rotation: a token signed by an older key still verifies when that key is listed.
        let rotated = SessionKeys::parse(&format!(
            "{},{}",
            SessionKeys::spec_for("k2", &[9; 32]),
            SessionKeys::spec_for("k1", &[7; 32])
        ))
        .unwrap();
        assert!(matches!(
            session_of(Some(&format!("ce_session={good}")), Some(&rotated), 50),
            Session::Verified(_)
        ));
        assert_eq!(session_of(None, Some(&keys()), 50), Session::None);
        assert_eq!(session_of(Some("ce_session=x"), None, 50), Session::None);
    }

    #[test]
    fn forged_expired_or_unverifiable_cookies_are_anonymous() {
        let expired = format!("ce_session={}", token(Plan::Pro, 10));
        let forged = format!("ce_session={}x", token(Plan::Pro, 100));
        for (cookie, keys) in [
            (expired.as_str(), Some(keys())),
            (forged.as_str(), Some(keys())),
            ("ce_session=garbage", Some(keys())),
            (expired.as_str(), None),
        ] {
            let seg = segment_for(Some(cookie), Some("fr-CH, en;q=0.5"), keys.as_ref(), 50);
            assert_eq!(seg.to_string(), "anon-fr", "{cookie}");
        }
        assert_eq!(segment_for(None, None, None, 0).to_string(), "anon-en");
        assert_eq!(segment_for(None, Some("*"), None, 0).to_string(), "anon-en");
    }
}
