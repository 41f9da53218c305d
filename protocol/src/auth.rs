//! Shared secrets and bearer tokens, checked the same way on both sides: the edge's
//! secret on origin requests, the purge secret on the worker's purge route, the origin's
//! admin tokens and the worker's upload tokens. Every comparison is of SHA-256 digests
//! in constant time (`subtle`), so timing says nothing about how much of a secret
//! matched, nor — for token lists — which entry did.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest token a token list accepts.
pub const MIN_TOKEN: usize = 24;

/// Whether `presented` is `secret`. No (or an empty) secret: nothing matches.
pub fn secret_matches(presented: &[u8], secret: Option<&str>) -> bool {
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return false;
    };
    bool::from(Sha256::digest(presented).ct_eq(&Sha256::digest(secret.as_bytes())))
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is
/// case-insensitive, RFC 9110 §11.1); `None` for any other scheme or an empty token.
pub fn bearer(authorization: Option<&str>) -> Option<&str> {
    let (scheme, token) = authorization?.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether an `Authorization` value carries `secret` as a bearer token.
pub fn bearer_matches(authorization: Option<&str>, secret: Option<&str>) -> bool {
    secret_matches(bearer(authorization).unwrap_or("").as_bytes(), secret)
}

/// Named tokens, `name:token[,name:token…]`: the name is who an audit line says acted.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tokens(Vec<(String, String)>);

impl std::fmt::Debug for Tokens {
    /// Names only: a token never reaches a log through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

impl Tokens {
    /// Parses `spec`; the error names the variable and the entry, never the token.
    pub fn parse(var: &str, spec: &str) -> Result<Self, String> {
        let entries = spec
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
            .map(|(i, entry)| {
                let n = i + 1;
                let (name, token) = entry
                    .split_once(':')
                    .map(|(name, token)| (name.trim(), token.trim()))
                    .ok_or_else(|| format!("{var} entry {n} is not name:token"))?;
                let name_ok = !name.is_empty()
                    && name.len() <= 64
                    && name.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@')
                    });
                if !name_ok {
                    return Err(format!(
                        "{var} entry {n}: the name is 1-64 of A-Z a-z 0-9 - _ . @"
                    ));
                }
                if token.len() < MIN_TOKEN {
                    return Err(format!(
                        "{var} entry {n} ({name}): the token is shorter than {MIN_TOKEN} characters"
                    ));
                }
                Ok((name.to_owned(), token.to_owned()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self(entries))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The name of the token an `Authorization` value presents; `None` when none
    /// matches. Every token is compared, whatever matched before.
    pub fn holder(&self, authorization: Option<&str>) -> Option<&str> {
        let presented = Sha256::digest(bearer(authorization)?.as_bytes());
        let mut found = None;
        for (name, token) in &self.0 {
            let matched = bool::from(presented.ct_eq(&Sha256::digest(token.as_bytes())));
            if matched && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configured_bearer_token_names_its_holder() {
        let spec = format!("ops:{}, content: {}", "a".repeat(32), "b".repeat(32));
        let tokens = Tokens::parse("ADMIN_TOKENS", &spec).unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.holder(None), None);
        for (value, expected) in [
            (format!("Bearer {}", "b".repeat(32)), Some("content")),
            (format!("Bearer {}", "a".repeat(32)), Some("ops")),
            (format!("Bearer  {} ", "a".repeat(32)), Some("ops")),
            (format!("Bearer {}", "a".repeat(31)), None),
            (format!("Basic {}", "a".repeat(32)), None),
            (format!("bearer {}", "a".repeat(32)), Some("ops")),
            (String::from("Bearer "), None),
            (String::from("Bearer"), None),
        ] {
            assert_eq!(tokens.holder(Some(&value)), expected, "{value}");
        }
        assert!(
            !format!("{tokens:?}").contains("aaaa"),
            "Debug hides tokens"
        );
    }

    #[test]
    fn a_bad_token_list_names_the_entry_not_the_token() {
        let short = "s".repeat(MIN_TOKEN - 1);
        for (spec, says) in [
            ("ops".to_owned(), "UPLOAD_TOKENS entry 1 is not name:token"),
            (format!("o p:{}", "a".repeat(30)), "entry 1: the name"),
            (format!("x:{},ops:{short}", "a".repeat(30)), "entry 2 (ops)"),
        ] {
            let err = Tokens::parse("UPLOAD_TOKENS", &spec).unwrap_err();
            assert!(err.contains(says), "{err}");
            assert!(!err.contains(&short), "{err}");
        }
        assert!(Tokens::parse("X", " , ").unwrap().is_empty());
    }

    #[test]
    fn secrets_match_only_exactly_and_never_when_unset() {
        assert!(secret_matches(b"s3cret", Some("s3cret")));
        assert!(!secret_matches(b"s3cre", Some("s3cret")));
        assert!(!secret_matches(b"", Some("")));
        assert!(!secret_matches(b"", None));
        assert!(bearer_matches(Some("Bearer s3cret"), Some("s3cret")));
        assert!(bearer_matches(Some("BEARER s3cret"), Some("s3cret")));
        assert!(!bearer_matches(Some("Token s3cret"), Some("s3cret")));
        assert!(!bearer_matches(None, Some("s3cret")));
        assert!(!bearer_matches(Some("Bearer "), Some("")));
    }
}
