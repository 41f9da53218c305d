//! The shared second level: Redis, when `REDIS_URL` is set. Every operation has a short
//! deadline and failures degrade to "miss" (logged), never to a failed request.
//!
//! Layout under a prefix (default `ce:v1`, so several deployments can share a server):
//! * `<prefix>:k:<key>` holds `etag \n tags \n body` with the domain's TTL;
//! * `<prefix>:t:<tag>` is a sorted set of the keys carrying that tag, scored by when
//!   each expires: a put drops members already expired and, past [`MAX_TAG_MEMBERS`],
//!   the soonest to expire *with their data* (a key is never in Redis without being in
//!   its tags' sets, so eviction by tag stays complete). A tag set is bounded by the
//!   live keys carrying it, and by that cap;
//! * `<prefix>:e` is the eviction epoch; `<prefix>:g:<what>` the epoch at which a key
//!   (`g:k:<key>`), a tag (`g:t:<tag>`) or a domain (`g:d:<domain>`) was last evicted.
//!   A put carries the epoch read before its load began and is refused when any of
//!   them is newer: a slow load never re-inserts what another instance just evicted;
//! * `<prefix>:s:<session id>` holds a session (write-through, see `sessions`).

use std::time::Duration;

use bytes::Bytes;
use protocol::CacheTag;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{CacheKey, Entry, Eviction};

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

const DEADLINE: Duration = Duration::from_millis(250);

/// Most keys a tag's set holds; beyond it the soonest-to-expire keys are dropped, data
/// included.
pub const MAX_TAG_MEMBERS: usize = 10_000;

/// How long eviction generations are remembered: longer than any load may run.
const GENERATION_TTL_SECS: u64 = 3600;

/// KEYS: data, g:k:<key>, g:d:<domain>, g:all, then per tag (set, g:t:<tag>).
/// ARGV: value, ttl secs, since epoch, now secs, key name, max members.
/// Returns 1 when stored, 0 when an eviction since `since` covers the entry.
const PUT: &str = r"
local since = tonumber(ARGV[3])
local function newer(k)
  return tonumber(redis.call('GET', k) or '0') > since
end
if newer(KEYS[2]) or newer(KEYS[3]) or newer(KEYS[4]) then return 0 end
for i = 6, #KEYS, 2 do
  if newer(KEYS[i]) then return 0 end
end
local ttl = tonumber(ARGV[2])
local now = tonumber(ARGV[4])
local cap = tonumber(ARGV[6])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
local data_prefix = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[5])
for i = 5, #KEYS, 2 do
  local set = KEYS[i]
  redis.call('ZADD', set, now + ttl, ARGV[5])
  redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
  local over = redis.call('ZCARD', set) - cap
  if over > 0 then
    local popped = redis.call('ZPOPMIN', set, over)
    for j = 1, #popped, 2 do
      redis.call('DEL', data_prefix .. popped[j])
    end
  end
  redis.call('EXPIRE', set, ttl * 2)
end
return 1
";

/// KEYS: epoch, generation key, then (for a tag) the tag's set. ARGV: data-key prefix,
/// generation ttl. Bumps the epoch, records it, deletes the tag's keys. Returns how many.
const EVICT: &str = r"
local e = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], e, 'EX', tonumber(ARGV[2]))
local n = 0
if KEYS[3] then
  for _, member in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    redis.call('DEL', ARGV[1] .. member)
    n = n + 1
  end
  redis.call('DEL', KEYS[3])
end
return n
";

#[derive(Clone)]
pub struct RedisL2 {
    conn: ConnectionManager,
    prefix: std::sync::Arc<str>,
    tag_cap: usize,
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
            tag_cap: MAX_TAG_MEMBERS,
        })
    }

    /// The same with another bound on a tag's set (tests use a small one).
    pub fn with_tag_cap(mut self, cap: usize) -> Self {
        self.tag_cap = cap.max(1);
        self
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

    /// Reads an entry (`get` is the cache-aside path; this is for tests and tools).
    pub async fn peek(&self, key: &CacheKey) -> Option<Entry> {
        self.get(key.as_str()).await
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

    /// The eviction epoch now (read before a load starts); `None` when Redis does not
    /// answer (the load's value then stays out of Redis).
    pub async fn epoch(&self) -> Option<u64> {
        let mut conn = self.conn.clone();
        let got: Result<Result<Option<u64>, _>, _> =
            tokio::time::timeout(DEADLINE, conn.get(self.epoch_key())).await;
        match got {
            Ok(Ok(epoch)) => Some(epoch.unwrap_or(0)),
            _ => None,
        }
    }

    fn epoch_key(&self) -> String {
        format!("{}:e", self.prefix)
    }

    fn generation_key(&self, what: &str) -> String {
        format!("{}:g:{what}", self.prefix)
    }

    /// Stores `entry` unless an eviction after `since` covers its key, domain or tags.
    pub async fn put(&self, key: &CacheKey, entry: &Entry, ttl: Duration, since: u64) {
        let mut conn = self.conn.clone();
        let script = redis::Script::new(PUT);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.data_key(key.as_str()))
            .key(self.generation_key(&format!("k:{}", key.as_str())))
            .key(self.generation_key(&format!("d:{}", key.domain.as_str())))
            .key(self.generation_key("all"));
        for tag in &entry.tags {
            invocation
                .key(self.tag_key(tag))
                .key(self.generation_key(&format!("t:{tag}")));
        }
        invocation
            .arg(encode(entry))
            .arg(ttl.as_secs().max(1))
            .arg(since)
            .arg(unix_secs())
            .arg(key.as_str())
            .arg(self.tag_cap);
        let done: Result<Result<i64, _>, _> =
            tokio::time::timeout(DEADLINE, invocation.invoke_async(&mut conn)).await;
        match done {
            Ok(Ok(1)) => {}
            Ok(Ok(_)) => tracing::debug!(
                key = key.as_str(),
                "redis put refused: evicted while loading"
            ),
            _ => tracing::warn!("redis put failed or timed out; the entry stays local only"),
        }
    }

    /// Evicts in Redis and records the eviction's generation (see the module docs).
    pub async fn evict(&self, eviction: &Eviction) -> Result<usize, String> {
        let (generation, set) = match eviction {
            Eviction::Key(key) => (format!("k:{}", key.as_str()), None),
            Eviction::Tag(tag) => (format!("t:{tag}"), Some(self.tag_key(tag))),
            Eviction::Domain(domain) => (format!("d:{}", domain.as_str()), None),
            Eviction::All => (String::from("all"), None),
        };
        let mut conn = self.conn.clone();
        let script = redis::Script::new(EVICT);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.epoch_key())
            .key(self.generation_key(&generation));
        if let Some(set) = &set {
            invocation.key(set);
        }
        invocation
            .arg(format!("{}:k:", self.prefix))
            .arg(GENERATION_TTL_SECS);
        let evicted: usize = tokio::time::timeout(DEADLINE, invocation.invoke_async(&mut conn))
            .await
            .map_err(|_| String::from("timed out"))?
            .map_err(|e: redis::RedisError| e.to_string())?;
        match eviction {
            Eviction::Key(key) => self.delete(key.as_str()).await.map(|()| 1),
            Eviction::Tag(_) => Ok(evicted),
            Eviction::Domain(domain) => {
                self.delete_matching(&format!("{}:", domain.as_str())).await
            }
            Eviction::All => self.delete_matching("").await,
        }
    }

    /// Deletes every data key whose name starts with `key_prefix`, by SCAN in batches.
    async fn delete_matching(&self, key_prefix: &str) -> Result<usize, String> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:k:{key_prefix}*", self.prefix);
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = tokio::time::timeout(
                DEADLINE,
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut conn),
            )
            .await
            .map_err(|_| String::from("timed out"))?
            .map_err(|e: redis::RedisError| e.to_string())?;
            if !keys.is_empty() {
                deleted += keys.len();
                tokio::time::timeout(DEADLINE, conn.del::<_, ()>(keys))
                    .await
                    .map_err(|_| String::from("timed out"))?
                    .map_err(|e| e.to_string())?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    async fn delete(&self, key: &str) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let done: Result<Result<(), _>, _> =
            tokio::time::timeout(DEADLINE, conn.del(self.data_key(key))).await;
        match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(String::from("timed out")),
        }
    }

    /// Members of a tag's set (tests and diagnostics).
    pub async fn tag_members(&self, tag: &CacheTag) -> Result<usize, String> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(DEADLINE, conn.zcard(self.tag_key(tag)))
            .await
            .map_err(|_| String::from("timed out"))?
            .map_err(|e: redis::RedisError| e.to_string())
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
