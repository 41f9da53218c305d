//! Sessions, write-through: every write goes to the store and the cache together, and a
//! read never returns a session the store does not have.
//!
//! * login: verify the password (argon2id), insert the row, then put it in the cache,
//!   then sign claims into the cookie (format in `protocol::session`).
//! * read: verify the cookie's signature and expiry first (no I/O for forgeries), then
//!   cache, then store; a store miss is a 401.
//! * logout: evict, delete the row, evict again (a concurrent read between the first
//!   eviction and the delete may have re-cached it).
//!
//! With Redis configured the session cache is Redis, shared by every origin instance,
//! so a logout on one instance is seen by all; without it the cache is in process
//! (one instance).

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, PasswordHash};
use protocol::{Claims, SessionKeys};

use crate::cache::RedisL2;
use crate::domain::{Session, User};
use crate::storage::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("wrong email or password")]
    BadCredentials,
    #[error("no valid session ({0})")]
    Unauthenticated(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

fn new_session_id() -> Result<String, SessionError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| SessionError::Internal(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

enum SessionCache {
    Local(moka::future::Cache<String, Arc<Session>>),
    Redis(RedisL2),
}

pub struct Sessions {
    keys: SessionKeys,
    ttl: Duration,
    cache: SessionCache,
}

impl Sessions {
    pub fn new(keys: SessionKeys, ttl: Duration, redis: Option<RedisL2>) -> Self {
        let cache = match redis {
            Some(redis) => SessionCache::Redis(redis),
            None => SessionCache::Local(
                moka::future::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(ttl)
                    .build(),
            ),
        };
        Self { keys, ttl, cache }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    async fn cache_put(&self, session: &Session, now: i64) -> Result<(), SessionError> {
        match &self.cache {
            SessionCache::Local(cache) => {
                cache
                    .insert(session.id.clone(), Arc::new(session.clone()))
                    .await;
                Ok(())
            }
            SessionCache::Redis(redis) => {
                let left =
                    Duration::from_secs(u64::try_from(session.expires_at - now).unwrap_or(1));
                let json = serde_json::to_vec(session).unwrap_or_default();
                redis
                    .session_put(&session.id, json, left)
                    .await
                    .map_err(SessionError::Internal)
            }
        }
    }

    async fn cache_get(&self, id: &str) -> Option<Session> {
        match &self.cache {
            SessionCache::Local(cache) => cache.get(id).await.map(|s| (*s).clone()),
            SessionCache::Redis(redis) => match redis.session_get(id).await {
                Ok(Some(bytes)) => serde_json::from_slice(&bytes).ok(),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "session cache read failed; reading the store");
                    None
                }
            },
        }
    }

    async fn cache_evict(&self, id: &str) -> Result<(), SessionError> {
        match &self.cache {
            SessionCache::Local(cache) => {
                cache.invalidate(id).await;
                Ok(())
            }
            SessionCache::Redis(redis) => redis
                .session_delete(id)
                .await
                .map_err(SessionError::Internal),
        }
    }

    /// Checks the password, creates the session in store and cache, returns it with the
    /// signed cookie value.
    pub async fn login(
        &self,
        store: &dyn Store,
        email: &str,
        password: &str,
        now: i64,
    ) -> Result<(Session, String), SessionError> {
        let credentials = store.credentials(email).await?;
        // Verify against a dummy hash when the user is unknown, so timing does not
        // reveal which emails exist.
        let (user, hash) = match credentials {
            Some(c) => (Some(c.user), c.password_hash),
            None => (None, dummy_hash().to_owned()),
        };
        let ok = verify_password(password, &hash);
        let user = match (user, ok) {
            (Some(user), true) => user,
            _ => return Err(SessionError::BadCredentials),
        };
        let expires_at = now + i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let session = Session {
            id: new_session_id()?,
            user,
            created_at: now,
            expires_at,
        };
        store
            .insert_session(&session.id, session.user.id, now, expires_at)
            .await?;
        if let Err(e) = self.cache_put(&session, now).await {
            // The store has it; a cache miss later reads it from there.
            tracing::warn!(error = %e, "session cache write failed");
        }
        let token = self.keys.sign(&claims_for(&session));
        Ok((session, token))
    }

    /// The session a cookie names, if its signature, expiry and row all check out.
    pub async fn current(
        &self,
        store: &dyn Store,
        token: &str,
        now: i64,
    ) -> Result<Session, SessionError> {
        let claims = self
            .keys
            .verify(token, now)
            .map_err(|e| SessionError::Unauthenticated(e.as_str()))?;
        if let Some(session) = self.cache_get(&claims.sid).await {
            if session.expires_at > now {
                return Ok(session);
            }
            return Err(SessionError::Unauthenticated("expired"));
        }
        match store.session(&claims.sid).await? {
            Some(session) if session.expires_at > now => {
                if let Err(e) = self.cache_put(&session, now).await {
                    tracing::warn!(error = %e, "session cache write failed");
                }
                Ok(session)
            }
            Some(_) => Err(SessionError::Unauthenticated("expired")),
            None => Err(SessionError::Unauthenticated("revoked")),
        }
    }

    /// Ends the session a cookie names. Idempotent.
    pub async fn logout(
        &self,
        store: &dyn Store,
        token: &str,
        now: i64,
    ) -> Result<(), SessionError> {
        let claims = self
            .keys
            .verify(token, now)
            .map_err(|e| SessionError::Unauthenticated(e.as_str()))?;
        self.cache_evict(&claims.sid).await?;
        store.delete_session(&claims.sid).await?;
        self.cache_evict(&claims.sid).await?;
        Ok(())
    }
}

fn claims_for(session: &Session) -> Claims {
    let User {
        id,
        display_name,
        plan,
        locale,
    } = &session.user;
    Claims {
        sid: session.id.clone(),
        uid: *id,
        name: display_name.clone(),
        plan: *plan,
        locale: *locale,
        exp: session.expires_at,
    }
}

/// An argon2id hash of a random password nobody knows, verified against for unknown
/// users so a login costs the same whether or not the email exists.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let mut secret = [0u8; 24];
        let _ = getrandom::fill(&mut secret);
        let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        hash_password(&secret).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("x", "not a hash"));
        assert!(!verify_password("x", dummy_hash()));
    }
}
