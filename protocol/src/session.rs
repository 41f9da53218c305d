//! Session cookies: HMAC-SHA256-signed claims the origin issues at login and the edge
//! verifies without calling the origin.
//!
//! Token: `v1.<kid>.<payload>.<signature>` where `payload` is base64url(JSON claims)
//! and `signature` is base64url(HMAC-SHA256(key[kid], "v1.<kid>.<payload>")). The key id
//! allows rotation: the first key signs, every listed key verifies.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::segment::{Audience, Locale, Plan, Segment};

/// The cookie that carries the token.
pub const COOKIE_NAME: &str = "ce_session";
/// Longest token accepted; anything longer is refused before any work.
pub const MAX_TOKEN_BYTES: usize = 2048;
const VERSION: &str = "v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Session id (the row in the origin's sessions table).
    pub sid: String,
    /// User id.
    pub uid: i64,
    /// Display name.
    pub name: String,
    pub plan: Plan,
    pub locale: Locale,
    /// Expiry, unix seconds.
    pub exp: i64,
}

impl Claims {
    pub fn segment(&self) -> Segment {
        Segment {
            audience: Audience::Member(self.plan),
            locale: self.locale,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    TooLong,
    Malformed,
    UnknownKey,
    BadSignature,
    Expired,
}

impl TokenError {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::TooLong => "too_long",
            Self::Malformed => "malformed",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    Empty,
    Malformed(String),
    TooShort(String),
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => {
                f.write_str("no session keys given; expected kid:base64key[,kid:base64key…]")
            }
            Self::Malformed(kid) => write!(f, "session key {kid:?} is not kid:base64url"),
            Self::TooShort(kid) => write!(f, "session key {kid:?} is shorter than 32 bytes"),
        }
    }
}

impl std::error::Error for KeyError {}

struct Key {
    id: String,
    secret: Vec<u8>,
}

/// The signing key and the verification keys. `Debug` never prints secrets.
pub struct SessionKeys {
    keys: Vec<Key>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        write!(f, "SessionKeys({ids:?})")
    }
}

impl SessionKeys {
    /// Parses `kid:base64url[,kid:base64url…]`; the first key signs. Keys are ≥ 32 bytes.
    pub fn parse(spec: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, b64) = part
                .split_once(':')
                .ok_or_else(|| KeyError::Malformed(String::from("?")))?;
            let valid_id = !id.is_empty()
                && id.len() <= 16
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_id {
                return Err(KeyError::Malformed(String::from("?")));
            }
            let secret = B64
                .decode(b64.trim_end_matches('='))
                .map_err(|_| KeyError::Malformed(id.to_owned()))?;
            if secret.len() < 32 {
                return Err(KeyError::TooShort(id.to_owned()));
            }
            keys.push(Key {
                id: id.to_owned(),
                secret,
            });
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self { keys })
    }

    /// A key spec for a fresh random secret (callers supply the bytes).
    pub fn spec_for(id: &str, secret: &[u8]) -> String {
        format!("{id}:{}", B64.encode(secret))
    }

    fn mac(key: &Key, signed: &str) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; new_from_slice cannot fail for Sha256.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(signed.as_bytes());
        mac
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let key = &self.keys[0];
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let signed = format!("{VERSION}.{}.{}", key.id, B64.encode(json));
        let sig = Self::mac(key, &signed).finalize().into_bytes();
        format!("{signed}.{}", B64.encode(sig))
    }

    /// Verifies signature (constant time) and expiry against `now` (unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        let (signed, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let mut parts = signed.splitn(3, '.');
        let (Some(VERSION), Some(kid), Some(payload)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.id == kid)
            .ok_or(TokenError::UnknownKey)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        Self::mac(key, signed)
            .verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        let json = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(spec: &[(&str, u8)]) -> SessionKeys {
        let spec: Vec<String> = spec
            .iter()
            .map(|(id, fill)| SessionKeys::spec_for(id, &[*fill; 32]))
            .collect();
        SessionKeys::parse(&spec.join(",")).unwrap()
    }

    fn claims() -> Claims {
        Claims {
            sid: "s1".into(),
            uid: 7,
            name: "Ada".into(),
            plan: Plan::Pro,
            locale: Locale::parse("en").unwrap(),
            exp: 1_000,
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let k = keys(&[("k1", 1)]);
        let token = k.sign(&claims());
        assert_eq!(k.verify(&token, 999), Ok(claims()));
        assert_eq!(k.verify(&token, 1_000), Err(TokenError::Expired));
        assert_eq!(claims().segment().to_string(), "pro-en");
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() {
        let old = keys(&[("k1", 1)]);
        let rotated = keys(&[("k2", 2), ("k1", 1)]);
        let token = old.sign(&claims());
        assert_eq!(rotated.verify(&token, 0), Ok(claims()));
        assert!(rotated.sign(&claims()).starts_with("v1.k2."));
        let retired = keys(&[("k2", 2)]);
        assert_eq!(retired.verify(&token, 0), Err(TokenError::UnknownKey));
    }

    #[test]
    fn tampering_is_detected() {
        let k = keys(&[("k1", 1)]);
        let token = k.sign(&claims());
        let (signed, sig) = token.rsplit_once('.').unwrap();
        let mut forged = claims();
        forged.plan = Plan::Free;
        forged.uid = 8;
        let forged_payload = B64.encode(serde_json::to_vec(&forged).unwrap());
        let forged_token = format!("v1.k1.{forged_payload}.{sig}");
        assert_eq!(k.verify(&forged_token, 0), Err(TokenError::BadSignature));
        let other_key = keys(&[("k1", 9)]);
        assert_eq!(other_key.verify(&token, 0), Err(TokenError::BadSignature));
        assert!(k.verify(&format!("{signed}.AAAA"), 0).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let k = keys(&[("k1", 1)]);
        for bad in [
            "",
            ".",
            "v1",
            "v1..",
            "v1.k1..",
            "v2.k1.e30.AA",
            "v1.k1.!!.??",
            "v1.k1.e30.e30",
        ] {
            assert!(k.verify(bad, 0).is_err(), "{bad}");
        }
        assert_eq!(k.verify(&"a".repeat(5000), 0), Err(TokenError::TooLong));
    }

    #[test]
    fn key_specs_are_validated() {
        assert_eq!(SessionKeys::parse("").unwrap_err(), KeyError::Empty);
        assert!(matches!(
            SessionKeys::parse("k1:c2hvcnQ"),
            Err(KeyError::TooShort(_))
        ));
        assert!(matches!(
            SessionKeys::parse("nocolon"),
            Err(KeyError::Malformed(_))
        ));
        let k = keys(&[("k1", 1)]);
        assert!(!format!("{k:?}").contains("AQEB"));
    }
}
