//! Origin configuration: flags with environment fallbacks, read once at start and
//! printed (secrets masked) so an operator sees what the process actually runs with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use protocol::auth::Tokens;

use crate::admission::Limits;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "course-origin",
    about = "course-edge origin: hot-path read APIs behind the edge"
)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on; port 0 picks a free port (printed on start).
    #[arg(long, env = "ORIGIN_LISTEN", default_value = "127.0.0.1:8788")]
    pub listen: SocketAddr,

    /// Directory for the embedded SQLite database (used when DATABASE_URL is unset).
    #[arg(long, env = "ORIGIN_DATA_DIR", default_value = ".dev-state/origin")]
    pub data_dir: PathBuf,

    /// `postgres://…` to use PostgreSQL instead of the embedded SQLite store.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// `redis://…` to add Redis as a shared second-level cache (and session cache).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix for every Redis key this origin writes.
    #[arg(long, env = "REDIS_PREFIX", default_value = crate::cache::redis::DEFAULT_PREFIX)]
    pub redis_prefix: String,

    /// Session signing keys, `kid:base64url[,kid:base64url…]` (first signs, all verify;
    /// ≥ 32 bytes each). Unset: an ephemeral key (sessions die with the process).
    #[arg(long, env = "SESSION_KEYS", hide_env_values = true)]
    pub session_keys: Option<String>,

    /// Session lifetime in seconds.
    #[arg(long, env = "SESSION_TTL_SECS", default_value_t = 7 * 24 * 3600)]
    pub session_ttl_secs: u64,

    /// In-flight requests at which the feed is shed (served from its last copy or 503).
    #[arg(long, env = "SHED_FEED_AT", default_value_t = 256)]
    pub shed_feed_at: usize,

    /// In-flight requests at which search is shed.
    #[arg(long, env = "SHED_SEARCH_AT", default_value_t = 512)]
    pub shed_search_at: usize,

    /// Requests served at once; more wait up to --queue-timeout-ms.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,

    /// How long a request may wait for a slot before a 503.
    #[arg(long, env = "QUEUE_TIMEOUT_MS", default_value_t = 100)]
    pub queue_timeout_ms: u64,

    /// Catalog pages (default filters) loaded into the cache before ready.
    /// Logins per minute allowed from one client IP (429 beyond).
    #[arg(long, env = "LOGIN_PER_IP_PER_MINUTE", default_value_t = 30)]
    pub login_per_ip_per_minute: u32,

    /// Logins per minute allowed for one account, from any IP (429 beyond).
    #[arg(long, env = "LOGIN_PER_ACCOUNT_PER_MINUTE", default_value_t = 10)]
    pub login_per_account_per_minute: u32,

    /// Longest a login waits for a password-check slot before a 429 (ms).
    #[arg(long, env = "LOGIN_HASH_WAIT_MS", default_value_t = 250)]
    pub login_hash_wait_ms: u64,

    /// Password checks (argon2id, ~19 MiB each) run at once.
    #[arg(long, env = "LOGIN_CONCURRENT_HASHES", default_value_t = 4)]
    pub login_concurrent_hashes: usize,

    /// The request header that carries the client's IP: the edge sets
    /// `x-edge-client-ip` from Cloudflare's `cf-connecting-ip` and never passes a
    /// client's own; empty to use the TCP peer address. Only trust it when the origin is
    /// reachable through the edge alone.
    #[arg(long, env = "CLIENT_IP_HEADER", default_value = protocol::headers::CLIENT_IP)]
    pub client_ip_header: String,

    #[arg(long, env = "WARM_CATALOG_PAGES", default_value_t = 3)]
    pub warm_catalog_pages: u32,

    /// Most-viewed courses loaded into the cache before ready.
    #[arg(long, env = "WARM_COURSES", default_value_t = 20)]
    pub warm_courses: u32,

    /// Serve the diagnostic `/test/*` routes (end-to-end tests only; never in production).
    #[arg(long, env = "ORIGIN_TEST_ROUTES", default_value_t = false)]
    pub enable_test_routes: bool,

    /// Admin bearer tokens, `name:token[,name:token…]` (the name is who the audit log
    /// says acted; tokens ≥ 24 characters). Unset: every admin route answers 401.
    #[arg(long, env = "ADMIN_TOKENS", hide_env_values = true)]
    pub admin_tokens: Option<String>,

    /// The secret the edge presents on every request (`x-edge-secret`; the worker's
    /// ORIGIN_SECRET). Set: segment headers and `?segment=` are honoured only from
    /// requests that carry it, and admin routes refuse requests that do (they came
    /// through the edge). Unset (dev): segments are taken as sent.
    #[arg(long, env = "EDGE_SECRET", hide_env_values = true)]
    pub edge_secret: Option<String>,

    /// `nats://…`: tell the other origin instances about purges over NATS (else Redis
    /// pub/sub when REDIS_URL is set, else nobody).
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,

    /// The NATS subject / Redis channel purges are announced on.
    #[arg(long, env = "PURGE_SUBJECT", default_value = "course-edge.purge")]
    pub purge_subject: String,

    /// The worker's purge route (`https://<edge>/__edge/purge`); unset: no edge purge.
    #[arg(long, env = "EDGE_PURGE_URL")]
    pub edge_purge_url: Option<String>,

    /// The secret the worker's purge route checks (a wrangler secret there).
    #[arg(long, env = "EDGE_PURGE_SECRET", hide_env_values = true)]
    pub edge_purge_secret: Option<String>,

    /// Cloudflare zone whose cache `purge_cache` empties (with CF_API_TOKEN).
    #[arg(long, env = "CF_ZONE_ID")]
    pub cf_zone_id: Option<String>,

    #[arg(long, env = "CF_API_TOKEN", hide_env_values = true)]
    pub cf_api_token: Option<String>,

    #[arg(
        long,
        env = "CF_API_BASE",
        default_value = "https://api.cloudflare.com/client/v4"
    )]
    pub cf_api_base: String,

    /// The public site (`https://courses.example.com`) URL and prefix purges name.
    #[arg(long, env = "PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,

    /// Items per `purge_cache` call (tags, prefixes) and URLs per call: the plan's limits.
    #[arg(long, env = "CF_PURGE_MAX_ITEMS", default_value_t = 100)]
    pub cf_purge_max_items: usize,
    #[arg(long, env = "CF_PURGE_MAX_URLS", default_value_t = 100)]
    pub cf_purge_max_urls: usize,
    /// Calls per minute and bucket size (the free plan: 5 and 25).
    #[arg(long, env = "CF_PURGE_PER_MINUTE", default_value_t = 5)]
    pub cf_purge_per_minute: u32,
    #[arg(long, env = "CF_PURGE_BURST", default_value_t = 25)]
    pub cf_purge_burst: u32,

    /// A deliverer's claim on an outbox row; another instance takes over after it.
    #[arg(long, env = "OUTBOX_LEASE_MS", default_value_t = 30_000)]
    pub outbox_lease_ms: u64,

    /// First retry delay of an unacknowledged purge (doubling up to PURGE_RETRY_MAX_MS).
    #[arg(long, env = "PURGE_RETRY_BASE_MS", default_value_t = 500)]
    pub purge_retry_base_ms: u64,
    #[arg(long, env = "PURGE_RETRY_MAX_MS", default_value_t = 300_000)]
    pub purge_retry_max_ms: u64,

    /// How long an admin write waits for its purge to be acknowledged before answering
    /// (it is delivered regardless; the answer says which).
    #[arg(long, env = "ADMIN_WAIT_MS", default_value_t = 3_000)]
    pub admin_wait_ms: u64,

    /// The edge's public base URL (`https://cdn.example.com`) purged URLs are warmed
    /// through; unset: no warming.
    #[arg(long, env = "WARM_AFTER_PURGE_BASE")]
    pub warm_after_purge_base: Option<String>,

    /// Path prefixes whose purged URLs are re-requested through the edge after the purge
    /// (comma separated, e.g. `/api/courses,/api/catalog`).
    #[arg(
        long,
        env = "WARM_AFTER_PURGE",
        default_value = "/api/courses,/api/catalog,/api/videos"
    )]
    pub warm_after_purge: String,

    /// Fault injection for crash tests: `before-delivery` stops the deliverer after it
    /// claims a purge. Never set in production.
    #[arg(long, env = "ORIGIN_FAULT_PAUSE", value_parser = ["before-delivery"])]
    pub fault_pause: Option<String>,

    /// Log format: `text` for people, `json` for collectors.
    #[arg(long, env = "ORIGIN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Start serving (the default).
    Serve,
    /// Load demo content from a JSON file into the store (idempotent), recompute feeds, exit.
    Seed {
        #[arg(long)]
        file: PathBuf,
    },
}

/// What the application needs at run time, independent of how it was configured.
#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    pub session_ttl: Duration,
    pub warm_catalog_pages: u32,
    pub warm_courses: u32,
    pub test_routes: bool,
    /// What a login may cost (see `login_limits`).
    pub login: crate::login_limits::LoginSettings,
    /// The header naming the client IP, lowercase; `None`: the TCP peer.
    pub client_ip_header: Option<String>,
    /// Admin tokens: (who, token).
    pub admin_tokens: Tokens,
    /// How long an admin write waits for its purge's acknowledgement.
    pub admin_wait: Duration,
    /// The edge's shared secret, when requests must prove they came through the edge.
    pub edge_secret: Option<String>,
    /// Where the origin asks `HEAD /media/<key>` for an uploaded image's size: the public
    /// base URL, else the edge the purges go to.
    pub media_base: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            warm_catalog_pages: 3,
            warm_courses: 20,
            test_routes: false,
            login: crate::login_limits::LoginSettings::default(),
            client_ip_header: Some(String::from(protocol::headers::CLIENT_IP)),
            admin_tokens: Tokens::default(),
            admin_wait: Duration::from_secs(3),
            edge_secret: None,
            media_base: None,
        }
    }
}

/// `name:token[,name:token…]` (see `protocol::auth::Tokens`).
pub fn parse_admin_tokens(spec: &str) -> Result<Tokens, String> {
    Tokens::parse("ADMIN_TOKENS", spec)
}

impl Config {
    /// Checks what clap cannot: engines we speak and limits that keep the shedding order.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(format!(
                "DATABASE_URL must start with postgres:// (got {}); unset it to use the embedded SQLite store",
                mask_url(url)
            ));
        }
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(format!(
                "REDIS_URL must start with redis:// (got {})",
                mask_url(url)
            ));
        }
        if self.session_ttl_secs < 60 || self.session_ttl_secs > 90 * 24 * 3600 {
            return Err(String::from("SESSION_TTL_SECS must be from 60 to 7776000"));
        }
        if let Some(spec) = &self.admin_tokens {
            parse_admin_tokens(spec)?;
        }
        if self
            .edge_secret
            .as_ref()
            .is_some_and(|s| !s.is_empty() && s.len() < 24)
        {
            return Err(String::from("EDGE_SECRET must be at least 24 characters"));
        }
        if self.edge_purge_url.is_some() != self.edge_purge_secret.is_some() {
            return Err(String::from(
                "EDGE_PURGE_URL and EDGE_PURGE_SECRET go together: set both or neither",
            ));
        }
        if self.cf_zone_id.is_some() != self.cf_api_token.is_some() {
            return Err(String::from(
                "CF_ZONE_ID and CF_API_TOKEN go together: set both or neither",
            ));
        }
        if self.cf_zone_id.is_some() && self.public_base_url.is_none() {
            return Err(String::from(
                "CF_ZONE_ID needs PUBLIC_BASE_URL (https://your-site) to spell URL purges",
            ));
        }
        if let Some(url) = &self.nats_url
            && !url.starts_with("nats://")
            && !url.starts_with("tls://")
        {
            return Err(format!(
                "NATS_URL must start with nats:// (got {})",
                mask_url(url)
            ));
        }
        self.settings().limits.validate()
    }

    /// How the invalidator delivers.
    pub fn delivery(&self) -> crate::invalidation::DeliverySettings {
        crate::invalidation::DeliverySettings {
            lease: Duration::from_millis(self.outbox_lease_ms.max(100)),
            retry_base: Duration::from_millis(self.purge_retry_base_ms.max(10)),
            retry_max: Duration::from_millis(self.purge_retry_max_ms.max(self.purge_retry_base_ms)),
            fault_pause: self.fault_pause.clone(),
            warm_base: self.warm_after_purge_base.clone().filter(|b| !b.is_empty()),
            warm_prefixes: self
                .warm_after_purge
                .split(',')
                .map(str::trim)
                .filter(|p| p.starts_with('/'))
                .map(str::to_owned)
                .collect(),
            ..crate::invalidation::DeliverySettings::default()
        }
    }

    pub fn settings(&self) -> Settings {
        Settings {
            limits: Limits {
                shed_feed_at: self.shed_feed_at,
                shed_search_at: self.shed_search_at,
                max_in_flight: self.max_in_flight,
                queue_timeout: Duration::from_millis(self.queue_timeout_ms),
            },
            session_ttl: Duration::from_secs(self.session_ttl_secs),
            warm_catalog_pages: self.warm_catalog_pages,
            warm_courses: self.warm_courses,
            test_routes: self.enable_test_routes,
            login: crate::login_limits::LoginSettings {
                per_ip_per_minute: self.login_per_ip_per_minute.max(1),
                per_account_per_minute: self.login_per_account_per_minute.max(1),
                hash_wait: Duration::from_millis(self.login_hash_wait_ms),
                concurrent_hashes: self.login_concurrent_hashes.max(1),
            },
            client_ip_header: Some(self.client_ip_header.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty()),
            admin_tokens: self
                .admin_tokens
                .as_deref()
                .and_then(|spec| parse_admin_tokens(spec).ok())
                .unwrap_or_default(),
            admin_wait: Duration::from_millis(self.admin_wait_ms),
            edge_secret: self.edge_secret.clone().filter(|s| !s.is_empty()),
            media_base: crate::media::base_of(
                self.public_base_url.as_deref(),
                self.edge_purge_url.as_deref(),
            ),
        }
    }

    /// One line for the log, with credentials masked.
    pub fn describe(&self) -> String {
        let store = match &self.database_url {
            Some(url) => mask_url(url),
            None => format!("sqlite:{}", self.data_dir.join("origin.db").display()),
        };
        let redis = self
            .redis_url
            .as_deref()
            .map_or_else(|| String::from("off"), mask_url);
        let keys = if self.session_keys.is_some() {
            "set"
        } else {
            "ephemeral"
        };
        let admins = self
            .admin_tokens
            .as_deref()
            .and_then(|spec| parse_admin_tokens(spec).ok())
            .map_or(0, |t| t.len());
        format!(
            "listen={} store={store} redis={redis} nats={} admin_tokens={admins} session_keys={keys} session_ttl={}s \
             shed_feed_at={} shed_search_at={} max_in_flight={} queue_timeout={}ms log_format={}",
            self.listen,
            self.nats_url
                .as_deref()
                .map_or_else(|| String::from("off"), mask_url),
            self.session_ttl_secs,
            self.shed_feed_at,
            self.shed_search_at,
            self.max_in_flight,
            self.queue_timeout_ms,
            self.log_format
        )
    }
}

/// `scheme://user:secret@host/db` -> `scheme://user:***@host/db`.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::from("***");
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_url("postgres://app:s3cret@db:5432/test"),
            "postgres://app:***@db:5432/test"
        );
        assert_eq!(mask_url("postgres://db/test"), "postgres://db/test");
        assert_eq!(mask_url("garbage"), "***");
    }

    #[test]
    fn only_known_engines_are_accepted() {
        let mut config = Config::parse_from(["course-origin"]);
        assert!(config.validate().is_ok());
        config.database_url = Some("mysql://root:pw@x/db".into());
        let err = config.validate().unwrap_err();
        assert!(err.contains("postgres://") && !err.contains("pw"), "{err}");
        config.database_url = None;
        config.redis_url = Some("memcached://x".into());
        assert!(config.validate().is_err());
    }

    #[test]
    fn description_masks_secrets() {
        let config = Config::parse_from([
            "course-origin",
            "--database-url",
            "postgres://u:hunter2@db/x",
            "--session-keys",
            "k1:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",
        ]);
        let line = config.describe();
        assert!(
            !line.contains("hunter2") && !line.contains("c2VjcmV0"),
            "{line}"
        );
        assert!(line.contains("session_keys=set"));
    }

    #[test]
    fn shedding_limits_out_of_order_are_refused() {
        let config = Config::parse_from([
            "course-origin",
            "--shed-feed-at",
            "900",
            "--shed-search-at",
            "100",
        ]);
        assert!(config.validate().is_err());
    }
}
