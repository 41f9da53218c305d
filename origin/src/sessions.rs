//! Sessions, write-through: every write goes to the store and the cache together, and a
//! read never returns a session the store does not have.
//!
//! * login: verify the password (argon2id), insert the row, then put it in the cache,
//!   then sign claims into the cookie (format in `protocol::session`).
//! * read: verify the cookie's signature and expiry first (no I/O for forgeries), then
//!   cache, then store; a store miss is a 401.
//! * logout: a `Revoked` marker replaces the cached session for the rest of its
//!   lifetime, then the row is deleted; reads only fill empty cache slots, so a read
//!   racing the logout cannot put the session back.
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
    #[error(transparent)]
    Busy(crate::login_limits::LoginRefused),
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

/// A cached session, or the marker a logout leaves for the rest of the session's
/// lifetime so that a read racing the logout cannot put the session back.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
enum Cached {
    Live(Session),
    Revoked,
}

enum SessionCache {
    Local(moka::future::Cache<String, Arc<Cached>>),
    Redis(RedisL2),
}

pub struct Sessions {
    keys: SessionKeys,
    ttl: Duration,
    cache: SessionCache,
    /// Password checks at once: each takes ~19 MiB and milliseconds of CPU (argon2id).
    hashing: tokio::sync::Semaphore,
    /// Longest a login waits for a hashing permit (then `Busy`, a 429).
    hash_wait: Duration,
    /// Logins whose revoked marker could not be written to the cache (Redis down): this
    /// instance refuses them itself until the marker is written or the session expires.
    unmarked: moka::future::Cache<String, ()>,
}

impl Sessions {
    pub fn new(
        keys: SessionKeys,
        ttl: Duration,
        redis: Option<RedisL2>,
        login: &crate::login_limits::LoginSettings,
    ) -> Self {
        let cache = match redis {
            Some(redis) => SessionCache::Redis(redis),
            None => SessionCache::Local(
                moka::future::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(ttl)
                    .build(),
            ),
        };
        Self {
            keys,
            ttl,
            cache,
            hashing: tokio::sync::Semaphore::new(login.concurrent_hashes),
            hash_wait: login.hash_wait,
            unmarked: moka::future::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Writes `entry` for `id`. `overwrite: false` only fills an empty slot, so a read
    /// can never replace a logout's `Revoked` marker (nor anything newer).
    async fn cache_write(
        &self,
        id: &str,
        entry: Cached,
        ttl: Duration,
        overwrite: bool,
    ) -> Result<(), SessionError> {
        match &self.cache {
            SessionCache::Local(cache) => {
                let entry = Arc::new(entry);
                if overwrite {
                    cache.insert(id.to_owned(), entry).await;
                } else {
                    cache.entry(id.to_owned()).or_insert(entry).await;
                }
                Ok(())
            }
            SessionCache::Redis(redis) => {
                let json = serde_json::to_vec(&entry).unwrap_or_default();
                redis
                    .session_put(id, json, ttl, overwrite)
                    .await
                    .map_err(SessionError::Internal)
            }
        }
    }

    async fn cache_get(&self, id: &str) -> Option<Cached> {
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

    fn remaining(expires_at: i64, now: i64) -> Duration {
        Duration::from_secs(u64::try_from(expires_at - now).unwrap_or(0).max(1))
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
        // Argon2 is deliberately slow CPU work: off the async workers, a few at a time,
        // and a login waits for its turn only briefly (a flood gets 429s, not a queue).
        let _permit = match tokio::time::timeout(self.hash_wait, self.hashing.acquire()).await {
            Ok(permit) => permit.map_err(|e| SessionError::Internal(e.to_string()))?,
            Err(_) => {
                return Err(SessionError::Busy(
                    crate::login_limits::LoginRefused::Busy {
                        retry_after_secs: 1,
                    },
                ));
            }
        };
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| SessionError::Internal(e.to_string()))?;
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
        let ttl = Self::remaining(expires_at, now);
        if let Err(e) = self
            .cache_write(&session.id, Cached::Live(session.clone()), ttl, false)
            .await
        {
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
        if self.unmarked.contains_key(&claims.sid) {
            return Err(SessionError::Unauthenticated("revoked"));
        }
        match self.cache_get(&claims.sid).await {
            Some(Cached::Live(session)) if session.expires_at > now => return Ok(session),
            Some(Cached::Live(_)) => return Err(SessionError::Unauthenticated("expired")),
            Some(Cached::Revoked) => return Err(SessionError::Unauthenticated("revoked")),
            None => {}
        }
        match store.session(&claims.sid).await? {
            Some(session) if session.expires_at > now => {
                let ttl = Self::remaining(session.expires_at, now);
                if let Err(e) = self
                    .cache_write(&session.id, Cached::Live(session.clone()), ttl, false)
                    .await
                {
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
    ) -> Result<protocol::Claims, SessionError> {
        let claims = self
            .keys
            .verify(token, now)
            .map_err(|e| SessionError::Unauthenticated(e.as_str()))?;
        // The marker goes first and outlives the session, so no read that started
        // before the delete can re-cache it; then the row goes. The store is the truth:
        // the row is deleted whatever the cache does. If the marker cannot be written
        // (Redis down), this instance refuses the session itself and keeps retrying the
        // marker in the background until it is written or the session has expired, so a
        // `Live` copy left in Redis cannot outlive the logout once Redis is back.
        let ttl = Self::remaining(claims.exp, now);
        let marked = self
            .cache_write(&claims.sid, Cached::Revoked, ttl, true)
            .await;
        if let Err(e) = &marked {
            tracing::warn!(error = %e, "revoked marker not written; the store row goes anyway, the marker is retried");
            let already = self.unmarked.contains_key(&claims.sid);
            self.unmarked.insert(claims.sid.clone(), ()).await;
            // One retry task per session, however often its logout is replayed.
            if let (false, SessionCache::Redis(redis)) = (already, &self.cache) {
                tokio::spawn(retry_marker(
                    redis.clone(),
                    self.unmarked.clone(),
                    claims.sid.clone(),
                    ttl,
                ));
            }
        }
        store.delete_session(&claims.sid).await?;
        Ok(claims)
    }
}

/// Writes a logout's revoked marker once Redis answers again (backing off to 30 s), then
/// lets this instance forget it; gives up when the session would have expired anyway.
async fn retry_marker(
    redis: RedisL2,
    unmarked: moka::future::Cache<String, ()>,
    sid: String,
    ttl: Duration,
) {
    let started = tokio::time::Instant::now();
    let marker = serde_json::to_vec(&Cached::Revoked).unwrap_or_default();
    let mut delay = Duration::from_millis(250);
    while started.elapsed() < ttl {
        tokio::time::sleep(delay).await;
        let left = ttl.saturating_sub(started.elapsed());
        if redis
            .session_put(&sid, marker.clone(), left, true)
            .await
            .is_ok()
        {
            tracing::info!("revoked marker written after a cache failure");
            unmarked.invalidate(&sid).await;
            return;
        }
        delay = (delay * 2).min(Duration::from_secs(30));
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

    #[tokio::test]
    async fn a_read_racing_a_logout_cannot_put_the_session_back() {
        let keys = SessionKeys::parse(&SessionKeys::spec_for("k", &[3; 32])).unwrap();
        let sessions = Sessions::new(
            keys,
            Duration::from_secs(60),
            None,
            &crate::login_limits::LoginSettings::default(),
        );
        let session = Session {
            id: "s1".into(),
            user: User {
                id: 1,
                display_name: "A".into(),
                plan: protocol::Plan::Free,
                locale: protocol::Locale::parse("en").unwrap(),
            },
            created_at: 0,
            expires_at: 100,
        };
        let ttl = Duration::from_secs(60);
        sessions
            .cache_write("s1", Cached::Revoked, ttl, true)
            .await
            .unwrap();
        // A read that loaded the row before the delete now tries to cache it.
        sessions
            .cache_write("s1", Cached::Live(session.clone()), ttl, false)
            .await
            .unwrap();
        assert!(matches!(
            sessions.cache_get("s1").await,
            Some(Cached::Revoked)
        ));
        // An empty slot is filled.
        sessions
            .cache_write("s2", Cached::Live(session), ttl, false)
            .await
            .unwrap();
        assert!(matches!(
            sessions.cache_get("s2").await,
            Some(Cached::Live(_))
        ));
    }

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
