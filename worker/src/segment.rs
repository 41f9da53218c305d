//! The viewer's audience segment, derived at the edge from the verified session cookie
//! (`protocol::session`), never from anything the client can simply assert: a valid
//! cookie gives `<plan>-<locale>`; no cookie or a bad one gives `anon-<locale>`, the
//! locale taken from `Accept-Language` (two letters) or `en`. Per-segment cache entries
//! are keyed by this, so they are shared by many viewers and never by one user only.

use protocol::session::COOKIE_NAME;
use protocol::{Audience, Locale, Segment, SessionKeys};

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

pub fn segment_for(
    cookie_header: Option<&str>,
    accept_language: Option<&str>,
    keys: Option<&SessionKeys>,
    now_secs: i64,
) -> Segment {
    let claims = keys
        .zip(cookie_header.and_then(session_cookie))
        .and_then(|(keys, token)| keys.verify(token, now_secs).ok());
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
    use protocol::{Claims, Plan};

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
