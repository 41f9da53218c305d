//! The shared second level: Redis, when `REDIS_URL` is set. Every operation has a short
//! deadline and failures degrade to "miss" (logged), never to a failed request.
//!
//! Layout under a prefix (default `ce:v1`, so several deployments can share a server):
//! `<prefix>:k:<key>` holds `etag \n tags \n body` with the domain's TTL;
//! `<prefix>:t:<tag>` is a set of the keys carrying that tag, for eviction by tag;
//! `<prefix>:s:<session id>` holds a session (write-through, see `sessions`).

use std::time::Duration;

use bytes::Bytes;
use protocol::CacheTag;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::Entry;

const DEADLINE: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct RedisL2 {
    conn: ConnectionManager,
    prefix: std::sync::Arc<str>,
}

/// The key prefix used unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "ce:v1";

/// `etag \n tag,tag \n body`.
fn encode(entry: &Entry) -> Vec<u8> {
    let tags = &entry.tag_header;
    let mut out = Vec::with_capacity(entry.etag.len() + tags.len() + entry.body.len() + 2);
    out.extend_from_slice(entry.etag.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(tags.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&entry.body);
    out
}

fn decode(bytes: Vec<u8>) -> Option<Entry> {
    let first = bytes.iter().position(|&b| b == b'\n')?;
    let second = first + 1 + bytes[first + 1..].iter().position(|&b| b == b'\n')?;
    let etag = std::str::from_utf8(&bytes[..first]).ok()?.to_owned();
    let tags = std::str::from_utf8(&bytes[first + 1..second])
        .ok()?
        .split(',')
        .filter(|t| !t.is_empty())
        .map(CacheTag::parse)
        .collect::<Option<Vec<_>>>()?;
    let body = Bytes::copy_from_slice(&bytes[second + 1..]);
    Some(Entry::new(body, etag, tags))
}

impl RedisL2 {
    /// Connects (and fails loudly: an operator who set `REDIS_URL` wants Redis).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let conn = tokio::time::timeout(Duration::from_secs(5), ConnectionManager::new(client))
            .await
            .map_err(|_| {
                redis::RedisError::from((
                    redis::ErrorKind::IoError,
                    "connecting to Redis timed out",
                ))
            })??;
        Ok(Self {
            conn,
            prefix: prefix.into(),
        })
    }

    fn data_key(&self, key: &str) -> String {
        format!("{}:k:{key}", self.prefix)
    }

    fn tag_key(&self, tag: &CacheTag) -> String {
        format!("{}:t:{tag}", self.prefix)
    }

    fn session_key(&self, id: &str) -> String {
        format!("{}:s:{id}", self.prefix)
    }

    pub async fn get(&self, key: &str) -> Option<Entry> {
        let mut conn = self.conn.clone();
        let got: Result<Result<Option<Vec<u8>>, _>, _> =
            tokio::time::timeout(DEADLINE, conn.get(self.data_key(key))).await;
        match got {
            Ok(Ok(Some(bytes))) => decode(bytes),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "redis get failed; treating as a miss");
                None
            }
            Err(_) => {
                tracing::warn!("redis get timed out; treating as a miss");
                None
            }
        }
    }

    pub async fn put(&self, key: &str, entry: &Entry, ttl: Duration) {
        let mut conn = self.conn.clone();
        let secs = ttl.as_secs().max(1);
        let mut pipe = redis::pipe();
        pipe.set_ex(self.data_key(key), encode(entry), secs)
            .ignore();
        for tag in &entry.tags {
            pipe.sadd(self.tag_key(tag), key)
                .ignore()
                .expire(self.tag_key(tag), (secs * 2) as i64)
                .ignore();
        }
        let done: Result<Result<(), _>, _> =
            tokio::time::timeout(DEADLINE, pipe.query_async(&mut conn)).await;
        if !matches!(done, Ok(Ok(()))) {
            tracing::warn!("redis put failed or timed out; the entry stays local only");
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let done: Result<Result<(), _>, _> =
            tokio::time::timeout(DEADLINE, conn.del(self.data_key(key))).await;
        match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(String::from("timed out")),
        }
    }

    pub async fn delete_tag(&self, tag: &CacheTag) -> Result<usize, String> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = tokio::time::timeout(DEADLINE, conn.smembers(self.tag_key(tag)))
            .await
            .map_err(|_| String::from("timed out"))?
            .map_err(|e: redis::RedisError| e.to_string())?;
        let mut pipe = redis::pipe();
        for key in &members {
            pipe.del(self.data_key(key)).ignore();
        }
        pipe.del(self.tag_key(tag)).ignore();
        tokio::time::timeout(DEADLINE, pipe.query_async::<()>(&mut conn))
            .await
            .map_err(|_| String::from("timed out"))?
            .map_err(|e| e.to_string())?;
        Ok(members.len())
    }

    /// Session write-through: the serialized entry under `<prefix>:s:<id>`. Without
    /// `overwrite` it is `SET … NX`: only an empty slot is filled.
    pub async fn session_put(
        &self,
        id: &str,
        value: Vec<u8>,
        ttl: Duration,
        overwrite: bool,
    ) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.session_key(id))
            .arg(value)
            .arg("EX")
            .arg(ttl.as_secs().max(1));
        if !overwrite {
            cmd.arg("NX");
        }
        tokio::time::timeout(DEADLINE, cmd.query_async::<Option<String>>(&mut conn))
            .await
            .map_err(|_| String::from("timed out"))?
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub async fn session_get(&self, id: &str) -> Result<Option<Vec<u8>>, String> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(DEADLINE, conn.get(self.session_key(id)))
            .await
            .map_err(|_| String::from("timed out"))?
            .map_err(|e: redis::RedisError| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_the_wire_format() {
        let entry = Entry::new(
            Bytes::from_static(b"{\"a\":\"line\\nbreak\"}\n"),
            "\"abc\"".into(),
            vec![CacheTag::Catalog, CacheTag::Course(4)],
        );
        let back = decode(encode(&entry)).unwrap();
        assert_eq!(back.body, entry.body);
        assert_eq!(back.etag, entry.etag);
        assert_eq!(back.tags, entry.tags);
    }

    #[test]
    fn garbage_decodes_to_nothing() {
        assert!(decode(b"no newline".to_vec()).is_none());
        assert!(decode(b"etag\nbad-tag\nbody".to_vec()).is_none());
    }
}
