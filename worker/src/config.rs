//! Worker configuration: wrangler `[vars]` and secrets, read once per request into a
//! plain struct and validated. The lookup is injected so the parsing is tested natively.

use std::time::Duration;

use thiserror::Error;

use crate::policy::PolicyTable;
use crate::policy::table::PolicyError;

/// Names of the wrangler vars this worker reads (see `wrangler.toml`).
pub mod vars {
    /// Base URL of the origin, e.g. `http://127.0.0.1:8787` (no trailing path).
    pub const ORIGIN_URL: &str = "ORIGIN_URL";
    /// How long the edge waits for the origin before treating it as down, in ms.
    pub const ORIGIN_TIMEOUT_MS: &str = "ORIGIN_TIMEOUT_MS";
    /// `Retry-After` seconds on a 503 when the origin is down and nothing is cached.
    pub const RETRY_AFTER_SECS: &str = "RETRY_AFTER_SECS";
    /// The host cache keys are spelled with (default: the request's host).
    pub const CANONICAL_HOST: &str = "CANONICAL_HOST";
    /// Comma-separated origin paths the edge never passes through (a trailing `/` makes
    /// a prefix). Default: the origin's operational endpoints and test routes.
    pub const INTERNAL_PATHS: &str = "INTERNAL_PATHS";
    /// Secret: the origin's session keys (`kid:base64url,…`), to verify session cookies.
    pub const SESSION_KEYS: &str = "SESSION_KEYS";
    /// Largest image source, bytes (default 40000000).
    pub const IMAGE_MAX_SOURCE_BYTES: &str = "IMAGE_MAX_SOURCE_BYTES";
    /// Largest image source, pixels (default 50000000).
    pub const IMAGE_MAX_SOURCE_PIXELS: &str = "IMAGE_MAX_SOURCE_PIXELS";
    /// JPEG sources of at least this many bytes get a working copy (0: never).
    pub const IMAGE_WORKING_COPY_MIN_BYTES: &str = "IMAGE_WORKING_COPY_MIN_BYTES";
    /// The derivative policy (see `image::policy` and the README's table): allowed box
    /// widths and heights (× dpr), qualities, backgrounds (comma-separated, or `any`),
    /// gravity (`named`, `grid:<step>`, `any`), presets (`name:options;…`) and the access
    /// mode (`open`, or `signed-or-preset`, the default when IMAGE_SIGNING_KEY is set).
    pub const IMAGE_WIDTHS: &str = "IMAGE_WIDTHS";
    pub const IMAGE_HEIGHTS: &str = "IMAGE_HEIGHTS";
    pub const IMAGE_QUALITIES: &str = "IMAGE_QUALITIES";
    pub const IMAGE_BACKGROUNDS: &str = "IMAGE_BACKGROUNDS";
    pub const IMAGE_GRAVITY: &str = "IMAGE_GRAVITY";
    pub const IMAGE_PRESETS: &str = "IMAGE_PRESETS";
    pub const IMAGE_FILTERS: &str = "IMAGE_FILTERS";
    pub const IMAGE_ACCESS: &str = "IMAGE_ACCESS";
    /// `derived/` objects the sweeper (the cron trigger) examines per run, 1–500 (it
    /// deletes derivatives whose source is gone or replaced).
    pub const IMAGE_SWEEP_BATCH: &str = "IMAGE_SWEEP_BATCH";
    /// Seconds a source's ETag is trusted without asking R2 again, 1–86400 (default 60).
    /// It bounds how long a replaced original can still be served as its derivatives.
    pub const IMAGE_SOURCE_TTL: &str = "IMAGE_SOURCE_TTL";
    /// Remote sources (`/img/<options>/https://host/path`): comma-separated
    /// `https://host[:port]/path-prefix` patterns (`*.` for subdomains). Empty: none.
    /// A Worker cannot see the address a name resolves to: list only hosts whose DNS the
    /// deployment trusts (`image::remote`).
    pub const IMAGE_REMOTE_PATTERNS: &str = "IMAGE_REMOTE_PATTERNS";
    /// `allow`: literal private and loopback hosts may be listed (local development).
    pub const IMAGE_REMOTE_PRIVATE: &str = "IMAGE_REMOTE_PRIVATE";
    /// Milliseconds a remote fetch (each redirect hop) may take, 100–30000 (default 10000).
    pub const IMAGE_REMOTE_TIMEOUT_MS: &str = "IMAGE_REMOTE_TIMEOUT_MS";
    /// The secret the origin presents on `POST /__edge/purge` (a wrangler secret).
    pub const EDGE_PURGE_SECRET: &str = "EDGE_PURGE_SECRET";
    /// How long an isolate trusts the purge ledger's latest generation, in ms: with one
    /// Durable Object round trip, the bound on serving a purged entry.
    pub const PURGE_MEMO_MS: &str = "PURGE_MEMO_MS";
    /// The secret the edge presents to the origin on every request (`x-edge-secret`),
    /// the origin's `EDGE_SECRET` (a wrangler secret).
    pub const ORIGIN_SECRET: &str = "ORIGIN_SECRET";
    /// Fault injection (tests only): `unreachable` makes every purge-ledger call fail,
    /// as when the Durable Object cannot be reached.
    pub const PURGE_LEDGER_FAULT: &str = "PURGE_LEDGER_FAULT";
    /// Fault injection (drills only): `on` opens `POST /__edge/fault?r2=down|up`
    /// (purge-secret authenticated), which switches this isolate's R2 reads off and on.
    pub const FAULT_INJECTION: &str = "FAULT_INJECTION";
    /// Secret: who may upload originals through `PUT /admin/media/<key>`,
    /// `name:token[,name:token…]` (tokens of 24+ characters; the name goes to the log).
    pub const UPLOAD_TOKENS: &str = "UPLOAD_TOKENS";
    /// Largest upload, bytes (default 104857600; at most 5000000000, R2's single put).
    pub const UPLOAD_MAX_BYTES: &str = "UPLOAD_MAX_BYTES";
    /// Secret: when set, image URLs need `sig=` (hex HMAC-SHA256, see `image::sign`).
    pub const IMAGE_SIGNING_KEY: &str = "IMAGE_SIGNING_KEY";
    /// Experiments, a JSON array: `[{"name":"hero","salt":"2026-12",
    /// "arms":[["control",50],["bold",50]],"classes":["html"]}]` (see `visitor`).
    pub const EXPERIMENTS: &str = "EXPERIMENTS";
    /// The canary origin (scheme://host[:port]); unset: no canary (see `canary`).
    pub const CANARY_ORIGIN_URL: &str = "CANARY_ORIGIN_URL";
    /// The share of visitors the canary origin serves, 0–100 (default 0).
    pub const CANARY_PERCENT: &str = "CANARY_PERCENT";
    /// `on`: everyone goes to the stable origin, whatever the share (default `off`).
    pub const CANARY_KILL_SWITCH: &str = "CANARY_KILL_SWITCH";
    /// The bucketing salt (default `canary`); changing it reshuffles who is in the canary.
    pub const CANARY_SALT: &str = "CANARY_SALT";
    /// The breaker: its sliding window (ms, default 30000), the fewest outcomes it
    /// decides on (default 20), the failure percent above which it opens (default 10)
    /// and how long it stays open before probing (ms, default 30000).
    pub const CANARY_BREAKER_WINDOW_MS: &str = "CANARY_BREAKER_WINDOW_MS";
    pub const CANARY_BREAKER_MIN_REQUESTS: &str = "CANARY_BREAKER_MIN_REQUESTS";
    pub const CANARY_BREAKER_ERROR_PERCENT: &str = "CANARY_BREAKER_ERROR_PERCENT";
    pub const CANARY_BREAKER_COOL_DOWN_MS: &str = "CANARY_BREAKER_COOL_DOWN_MS";
    // Per-class cache policy overrides: `POLICY_<CLASS>`, see `policy::table`.
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Origin base URL without a trailing slash.
    pub origin_url: String,
    pub origin_timeout: Duration,
    pub retry_after_secs: u32,
    /// Lowercase host for cache keys, when set.
    pub canonical_host: Option<String>,
    /// The cache policy in force (defaults plus `POLICY_*` overrides).
    pub policy: PolicyTable,
    /// Origin paths never reachable through the edge.
    pub internal_paths: Vec<String>,
    /// Keys to verify session cookies with; without them every viewer is anonymous.
    pub session_keys: Option<std::sync::Arc<protocol::SessionKeys>>,
    /// Image source limits.
    pub image_limits: crate::image::limits::Limits,
    /// Which derivatives may be minted, and how (presets, signatures, allow-lists).
    pub image_policy: crate::image::policy::DerivativePolicy,
    /// `derived/` objects the sweeper examines per cron run.
    pub image_sweep_batch: u32,
    /// Seconds a source's ETag is trusted before R2 is asked again.
    pub image_source_ttl: u32,
    /// Which remote sources may be fetched (`IMAGE_REMOTE_PATTERNS`).
    pub image_remote: crate::image::remote::RemotePolicy,
    pub image_remote_timeout: Duration,
    /// When set, image URLs must be signed with it.
    pub image_signing_key: Option<Vec<u8>>,
    /// The origin's purge secret; unset: the purge route refuses everything.
    pub purge_secret: Option<String>,
    /// How long the isolate memoizes the purge ledger's answers.
    pub purge_memo: Duration,
    /// Fault injection: the ledger is unreachable.
    pub purge_ledger_down: bool,
    /// Fault injection: the drills' fault route exists.
    pub fault_injection: bool,
    /// Presented to the origin on every request.
    pub origin_secret: Option<String>,
    /// Who may upload; empty: the upload route refuses everything.
    pub upload_tokens: protocol::auth::Tokens,
    /// Largest upload, bytes.
    pub upload_max_bytes: u64,
    /// Experiments (sticky arms by the visitor id).
    pub experiments: std::sync::Arc<Vec<crate::visitor::Experiment>>,
    /// How `<img>`s pointing at originals become responsive on the pages the edge fills:
    /// the default ladder within `IMAGE_WIDTHS`, signed when signing is on.
    pub responsive: crate::personalize::Responsive,
    /// The origin canary, when `CANARY_ORIGIN_URL` is set.
    pub canary: Option<std::sync::Arc<crate::canary::Canary>>,
}

impl Config {
    pub const DEFAULT_ORIGIN_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_RETRY_AFTER_SECS: u32 = 5;
    pub const DEFAULT_IMAGE_SOURCE_TTL: u32 = 60;
    pub const DEFAULT_PURGE_MEMO: Duration = Duration::from_millis(1000);
    pub const DEFAULT_INTERNAL_PATHS: &'static str = "/metrics,/healthz,/readyz,/test/";

    /// Whether `path` is an origin-internal path the edge refuses to pass through.
    pub fn is_internal(&self, path: &str) -> bool {
        self.internal_paths.iter().any(|p| {
            if p.ends_with('/') {
                path.starts_with(p.as_str()) || path == p.trim_end_matches('/')
            } else {
                path == p || path.starts_with(&format!("{p}/"))
            }
        })
    }

    /// Reads every setting through `lookup` (a var name to its value) and validates it.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let origin_url = lookup(vars::ORIGIN_URL).ok_or(ConfigError::Missing(vars::ORIGIN_URL))?;
        let origin_url = parse_origin_url(vars::ORIGIN_URL, &origin_url)?;
        let origin_timeout = match lookup(vars::ORIGIN_TIMEOUT_MS) {
            None => Self::DEFAULT_ORIGIN_TIMEOUT,
            Some(raw) => {
                Duration::from_millis(parse_bounded(vars::ORIGIN_TIMEOUT_MS, &raw, 1, 120_000)?)
            }
        };
        let retry_after_secs = match lookup(vars::RETRY_AFTER_SECS) {
            None => Self::DEFAULT_RETRY_AFTER_SECS,
            Some(raw) => parse_bounded(vars::RETRY_AFTER_SECS, &raw, 1, 3600)? as u32,
        };
        let canonical_host = match lookup(vars::CANONICAL_HOST) {
            None => None,
            Some(host) if host.is_empty() => None,
            Some(host) => {
                let valid = host.len() <= 253
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
                if !valid {
                    return Err(ConfigError::Invalid {
                        name: vars::CANONICAL_HOST,
                        value: host,
                        why: "must be a host name, optionally with :port",
                    });
                }
                Some(host.to_ascii_lowercase())
            }
        };
        let policy = PolicyTable::from_lookup(&lookup)?;
        let internal_paths = lookup(vars::INTERNAL_PATHS)
            .unwrap_or_else(|| String::from(Self::DEFAULT_INTERNAL_PATHS))
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        let session_keys = match lookup(vars::SESSION_KEYS) {
            None => None,
            Some(spec) if spec.is_empty() => None,
            Some(spec) => Some(std::sync::Arc::new(
                protocol::SessionKeys::parse(&spec)
                    // The error names the key id at most, never the secret.
                    .map_err(|e| ConfigError::SessionKeys(e.to_string()))?,
            )),
        };
        let mut image_limits = crate::image::limits::Limits::default();
        if let Some(raw) = lookup(vars::IMAGE_MAX_SOURCE_BYTES) {
            image_limits.max_source_bytes =
                parse_bounded(vars::IMAGE_MAX_SOURCE_BYTES, &raw, 1, 100_000_000)?;
        }
        if let Some(raw) = lookup(vars::IMAGE_MAX_SOURCE_PIXELS) {
            image_limits.max_source_pixels =
                parse_bounded(vars::IMAGE_MAX_SOURCE_PIXELS, &raw, 1, 100_000_000)?;
        }
        if let Some(raw) = lookup(vars::IMAGE_WORKING_COPY_MIN_BYTES) {
            image_limits.working_copy_min_bytes =
                parse_bounded(vars::IMAGE_WORKING_COPY_MIN_BYTES, &raw, 0, 100_000_000)?;
        }
        let image_signing_key = lookup(vars::IMAGE_SIGNING_KEY)
            .filter(|k| !k.is_empty())
            .map(|k| {
                if k.len() < 32 {
                    Err(ConfigError::Invalid {
                        name: vars::IMAGE_SIGNING_KEY,
                        value: String::from("(hidden)"),
                        why: "must be at least 32 characters",
                    })
                } else {
                    Ok(k.into_bytes())
                }
            })
            .transpose()?;
        let image_policy = image_policy(&lookup, image_signing_key.is_some())?;
        let image_source_ttl = match lookup(vars::IMAGE_SOURCE_TTL) {
            None => Self::DEFAULT_IMAGE_SOURCE_TTL,
            Some(raw) => parse_bounded(vars::IMAGE_SOURCE_TTL, &raw, 1, 86_400)? as u32,
        };
        let allow_private = match lookup(vars::IMAGE_REMOTE_PRIVATE).as_deref() {
            None | Some("" | "refuse") => false,
            Some("allow") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: vars::IMAGE_REMOTE_PRIVATE,
                    value: other.to_owned(),
                    why: "must be `allow` (local development) or `refuse` (the default)",
                });
            }
        };
        let image_remote = crate::image::remote::RemotePolicy::parse(
            &lookup(vars::IMAGE_REMOTE_PATTERNS).unwrap_or_default(),
            allow_private,
        )
        .map_err(ConfigError::Remote)?;
        let image_remote_timeout =
            Duration::from_millis(match lookup(vars::IMAGE_REMOTE_TIMEOUT_MS) {
                None => u64::from(crate::image::remote::DEFAULT_TIMEOUT_MS),
                Some(raw) => parse_bounded(vars::IMAGE_REMOTE_TIMEOUT_MS, &raw, 100, 30_000)?,
            });
        let image_sweep_batch = match lookup(vars::IMAGE_SWEEP_BATCH) {
            None => 500,
            Some(raw) => parse_bounded(vars::IMAGE_SWEEP_BATCH, &raw, 1, 500)? as u32,
        };
        let purge_secret = match lookup(vars::EDGE_PURGE_SECRET).filter(|s| !s.is_empty()) {
            Some(secret) if secret.len() < 24 => {
                return Err(ConfigError::Invalid {
                    name: vars::EDGE_PURGE_SECRET,
                    value: String::from("(hidden)"),
                    why: "must be at least 24 characters",
                });
            }
            other => other,
        };
        let purge_memo = match lookup(vars::PURGE_MEMO_MS) {
            None => Self::DEFAULT_PURGE_MEMO,
            Some(raw) => {
                Duration::from_millis(parse_bounded(vars::PURGE_MEMO_MS, &raw, 0, 60_000)?)
            }
        };
        let purge_ledger_down = match lookup(vars::PURGE_LEDGER_FAULT).as_deref() {
            None | Some("") => false,
            Some("unreachable") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: vars::PURGE_LEDGER_FAULT,
                    value: other.to_owned(),
                    why: "is unset, or `unreachable` (fault injection for tests)",
                });
            }
        };
        let fault_injection = match lookup(vars::FAULT_INJECTION).as_deref().map(str::trim) {
            None | Some("") | Some("off") => false,
            Some("on") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: vars::FAULT_INJECTION,
                    value: other.to_owned(),
                    why: "is `on` (drills only) or `off`",
                });
            }
        };
        let origin_secret = match lookup(vars::ORIGIN_SECRET).filter(|s| !s.is_empty()) {
            Some(secret) if secret.len() < 24 || !secret.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(ConfigError::Invalid {
                    name: vars::ORIGIN_SECRET,
                    value: String::from("(hidden)"),
                    why: "must be at least 24 visible ASCII characters",
                });
            }
            other => other,
        };
        let upload_tokens = match lookup(vars::UPLOAD_TOKENS) {
            None => protocol::auth::Tokens::default(),
            Some(spec) => protocol::auth::Tokens::parse(vars::UPLOAD_TOKENS, &spec)
                .map_err(ConfigError::Tokens)?,
        };
        let upload_max_bytes = match lookup(vars::UPLOAD_MAX_BYTES) {
            None => crate::upload::DEFAULT_MAX_BYTES,
            Some(raw) => parse_bounded(
                vars::UPLOAD_MAX_BYTES,
                &raw,
                1,
                crate::upload::MAX_MAX_BYTES,
            )?,
        };
        let experiments = match lookup(vars::EXPERIMENTS) {
            None => Vec::new(),
            Some(raw) if raw.trim().is_empty() => Vec::new(),
            Some(raw) => {
                crate::visitor::parse_experiments(&raw).map_err(ConfigError::Experiments)?
            }
        };
        let responsive = crate::personalize::Responsive::new(
            image_policy.widths.as_deref(),
            image_signing_key.clone(),
        );
        let canary = canary(&lookup)?.map(std::sync::Arc::new);
        Ok(Self {
            canary,
            responsive,
            experiments: std::sync::Arc::new(experiments),
            upload_tokens,
            upload_max_bytes,
            origin_secret,
            purge_secret,
            purge_memo,
            purge_ledger_down,
            fault_injection,
            origin_url,
            origin_timeout,
            retry_after_secs,
            canonical_host,
            policy,
            internal_paths,
            session_keys,
            image_limits,
            image_policy,
            image_sweep_batch,
            image_source_ttl,
            image_remote,
            image_remote_timeout,
            image_signing_key,
        })
    }

    /// The absolute origin URL for a path that starts with `/`, on the arm's origin.
    pub fn origin(&self, arm: crate::canary::Arm, path_and_query: &str) -> String {
        let base = match (arm, &self.canary) {
            (crate::canary::Arm::Canary, Some(canary)) => canary.url.as_str(),
            _ => self.origin_url.as_str(),
        };
        format!("{base}{path_and_query}")
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("wrangler var {0} is not set; add it under [vars] in wrangler.toml")]
    Missing(&'static str),
    #[error("wrangler var {name} = {value:?} is invalid: {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: &'static str,
    },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("wrangler var {0}")]
    Remote(String),
    #[error("wrangler var IMAGE_PRESETS is invalid: {0}")]
    Presets(String),
    #[error("wrangler var EXPERIMENTS is invalid: {0}")]
    Experiments(String),
    #[error("secret SESSION_KEYS is invalid: {0}; set it with `wrangler secret put SESSION_KEYS`")]
    SessionKeys(String),
    /// The message names the variable and the entry, never a token.
    #[error("{0}; set it with `wrangler secret put UPLOAD_TOKENS`")]
    Tokens(String),
}

/// The derivative policy from its vars; unset vars keep the documented defaults.
fn image_policy(
    lookup: &impl Fn(&str) -> Option<String>,
    signing: bool,
) -> Result<crate::image::policy::DerivativePolicy, ConfigError> {
    use crate::image::options::{MAX_SIDE, Rgba};
    use crate::image::policy::{self, Access, DerivativePolicy};
    let mut p = DerivativePolicy::default();
    let invalid = |name: &'static str, value: &str, why: &'static str| ConfigError::Invalid {
        name,
        value: value.to_owned(),
        why,
    };
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let side = |v: &str| v.parse::<u32>().ok().filter(|n| (1..=MAX_SIDE).contains(n));
    if let Some(raw) = get(vars::IMAGE_WIDTHS) {
        p.widths = policy::parse_list(&raw, side).map_err(|_| {
            invalid(
                vars::IMAGE_WIDTHS,
                &raw,
                "`any` or comma-separated pixels 1-4096",
            )
        })?;
    }
    if let Some(raw) = get(vars::IMAGE_HEIGHTS) {
        p.heights = policy::parse_list(&raw, side).map_err(|_| {
            invalid(
                vars::IMAGE_HEIGHTS,
                &raw,
                "`any` or comma-separated pixels 1-4096",
            )
        })?;
    }
    if let Some(raw) = get(vars::IMAGE_QUALITIES) {
        let quality = |v: &str| v.parse::<u8>().ok().filter(|q| (1..=100).contains(q));
        p.qualities = policy::parse_list(&raw, quality).map_err(|_| {
            invalid(
                vars::IMAGE_QUALITIES,
                &raw,
                "`any` or comma-separated 1-100",
            )
        })?;
    }
    if let Some(raw) = get(vars::IMAGE_BACKGROUNDS) {
        p.backgrounds = policy::parse_list(&raw, Rgba::parse).map_err(|_| {
            invalid(
                vars::IMAGE_BACKGROUNDS,
                &raw,
                "`any` or comma-separated CSS colours",
            )
        })?;
    }
    if let Some(raw) = get(vars::IMAGE_GRAVITY) {
        p.gravity = policy::parse_gravity(&raw).ok_or_else(|| {
            invalid(
                vars::IMAGE_GRAVITY,
                &raw,
                "`named`, `any` or `grid:<step>` (a step dividing 1, at most 0.5)",
            )
        })?;
    }
    if let Some(raw) = get(vars::IMAGE_FILTERS) {
        p.filters = policy::parse_filters(&raw)
            .ok_or_else(|| invalid(vars::IMAGE_FILTERS, &raw, "`listed`, `any` or `off`"))?;
    }
    if let Some(raw) = get(vars::IMAGE_PRESETS) {
        p.presets = policy::parse_presets(&raw).map_err(ConfigError::Presets)?;
    }
    p.access = match get(vars::IMAGE_ACCESS) {
        None if signing => Access::SignedOrPreset,
        None => Access::Open,
        Some(raw) => Access::parse(&raw)
            .ok_or_else(|| invalid(vars::IMAGE_ACCESS, &raw, "`open` or `signed-or-preset`"))?,
    };
    if p.access == Access::SignedOrPreset && !signing && p.presets.is_empty() {
        return Err(invalid(
            vars::IMAGE_ACCESS,
            p.access.as_str(),
            "needs IMAGE_SIGNING_KEY (wrangler secret put IMAGE_SIGNING_KEY) or IMAGE_PRESETS",
        ));
    }
    Ok(p)
}

/// The canary from its vars: `None` without `CANARY_ORIGIN_URL`; a share without a
/// canary origin is refused (it would silently route nobody).
fn canary(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<crate::canary::Canary>, ConfigError> {
    use crate::canary::{BreakerSettings, Canary};
    let set = |name| lookup(name).filter(|v| !v.trim().is_empty());
    let percent = match set(vars::CANARY_PERCENT) {
        None => 0,
        Some(raw) => parse_bounded(vars::CANARY_PERCENT, &raw, 0, 100)? as u32,
    };
    let Some(url) = set(vars::CANARY_ORIGIN_URL) else {
        if percent > 0 {
            return Err(ConfigError::Invalid {
                name: vars::CANARY_PERCENT,
                value: percent.to_string(),
                why: "needs CANARY_ORIGIN_URL (the canary origin's scheme://host[:port])",
            });
        }
        return Ok(None);
    };
    let url = parse_origin_url(vars::CANARY_ORIGIN_URL, &url)?;
    let killed = match set(vars::CANARY_KILL_SWITCH).as_deref().map(str::trim) {
        None | Some("off") => false,
        Some("on") => true,
        Some(other) => {
            return Err(ConfigError::Invalid {
                name: vars::CANARY_KILL_SWITCH,
                value: other.to_owned(),
                why: "is `on` (everyone to the stable origin) or `off`",
            });
        }
    };
    let salt = set(vars::CANARY_SALT).unwrap_or_else(|| String::from(Canary::DEFAULT_SALT));
    if salt.len() > 64 {
        return Err(ConfigError::Invalid {
            name: vars::CANARY_SALT,
            value: salt,
            why: "is at most 64 bytes",
        });
    }
    let mut breaker = BreakerSettings::default();
    if let Some(raw) = set(vars::CANARY_BREAKER_WINDOW_MS) {
        breaker.window = Duration::from_millis(parse_bounded(
            vars::CANARY_BREAKER_WINDOW_MS,
            &raw,
            1_000,
            3_600_000,
        )?);
    }
    if let Some(raw) = set(vars::CANARY_BREAKER_MIN_REQUESTS) {
        breaker.min_requests =
            parse_bounded(vars::CANARY_BREAKER_MIN_REQUESTS, &raw, 1, 100_000)? as u32;
    }
    if let Some(raw) = set(vars::CANARY_BREAKER_ERROR_PERCENT) {
        breaker.error_percent =
            parse_bounded(vars::CANARY_BREAKER_ERROR_PERCENT, &raw, 0, 99)? as u32;
    }
    if let Some(raw) = set(vars::CANARY_BREAKER_COOL_DOWN_MS) {
        breaker.cool_down = Duration::from_millis(parse_bounded(
            vars::CANARY_BREAKER_COOL_DOWN_MS,
            &raw,
            100,
            3_600_000,
        )?);
    }
    Ok(Some(Canary {
        url,
        percent,
        salt,
        killed,
        breaker,
    }))
}

fn parse_origin_url(name: &'static str, raw: &str) -> Result<String, ConfigError> {
    let invalid = |why| ConfigError::Invalid {
        name,
        value: raw.to_owned(),
        why,
    };
    let trimmed = raw.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .ok_or_else(|| invalid("must start with http:// or https://"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(invalid("must be scheme://host[:port] with no path"));
    }
    Ok(trimmed.to_owned())
}

fn parse_bounded(name: &'static str, raw: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    match raw.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError::Invalid {
            name,
            value: raw.to_owned(),
            why: "must be a whole number in range",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::Arm;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_only_the_origin_is_set() {
        let config = parse(&[("ORIGIN_URL", "http://127.0.0.1:9000/")]).unwrap();
        assert_eq!(config.origin_url, "http://127.0.0.1:9000");
        assert_eq!(config.origin_timeout, Config::DEFAULT_ORIGIN_TIMEOUT);
        assert_eq!(config.retry_after_secs, Config::DEFAULT_RETRY_AFTER_SECS);
        assert_eq!(
            config.origin(Arm::Stable, "/healthz"),
            "http://127.0.0.1:9000/healthz"
        );
        // Without a canary, the canary arm is the stable origin too.
        assert_eq!(
            config.origin(Arm::Canary, "/healthz"),
            "http://127.0.0.1:9000/healthz"
        );
        assert!(config.canary.is_none());
    }

    #[test]
    fn the_canary_is_read_with_its_breaker() {
        let config = parse(&[
            ("ORIGIN_URL", "http://stable"),
            ("CANARY_ORIGIN_URL", "https://canary:8443/"),
            ("CANARY_PERCENT", "25"),
            ("CANARY_BREAKER_WINDOW_MS", "5000"),
            ("CANARY_BREAKER_MIN_REQUESTS", "4"),
            ("CANARY_BREAKER_ERROR_PERCENT", "50"),
            ("CANARY_BREAKER_COOL_DOWN_MS", "2000"),
        ])
        .unwrap();
        let canary = config.canary.as_deref().unwrap();
        assert_eq!(canary.url, "https://canary:8443");
        assert_eq!(canary.percent, 25);
        assert!(!canary.killed);
        assert_eq!(canary.salt, "canary");
        assert_eq!(
            canary.breaker,
            crate::canary::BreakerSettings {
                window: Duration::from_secs(5),
                min_requests: 4,
                error_percent: 50,
                cool_down: Duration::from_secs(2),
            }
        );
        assert_eq!(
            config.origin(Arm::Canary, "/x?y"),
            "https://canary:8443/x?y"
        );
        assert_eq!(config.origin(Arm::Stable, "/x"), "http://stable/x");
        let killed = parse(&[
            ("ORIGIN_URL", "http://stable"),
            ("CANARY_ORIGIN_URL", "http://canary"),
            ("CANARY_PERCENT", "5"),
            ("CANARY_KILL_SWITCH", "on"),
        ])
        .unwrap();
        assert!(killed.canary.unwrap().killed);
    }

    #[test]
    fn bad_canary_settings_are_named() {
        for (name, value) in [
            ("CANARY_PERCENT", "101"),
            ("CANARY_PERCENT", "5%"),
            ("CANARY_ORIGIN_URL", "canary:80"),
            ("CANARY_ORIGIN_URL", "http://canary/path"),
            ("CANARY_KILL_SWITCH", "yes"),
            ("FAULT_INJECTION", "yes"),
            ("CANARY_BREAKER_WINDOW_MS", "10"),
            ("CANARY_BREAKER_MIN_REQUESTS", "0"),
            ("CANARY_BREAKER_ERROR_PERCENT", "100"),
            ("CANARY_BREAKER_COOL_DOWN_MS", "x"),
        ] {
            let mut pairs = vec![("ORIGIN_URL", "http://o")];
            if name != "CANARY_ORIGIN_URL" {
                pairs.push(("CANARY_ORIGIN_URL", "http://canary"));
            }
            pairs.push((name, value));
            let err = parse(&pairs).unwrap_err();
            assert!(err.to_string().contains(name), "{name}={value}: {err}");
        }
        // A share with no canary origin would route nobody: refused, naming what is missing.
        let err = parse(&[("ORIGIN_URL", "http://o"), ("CANARY_PERCENT", "5")]).unwrap_err();
        assert!(err.to_string().contains("CANARY_ORIGIN_URL"), "{err}");
    }

    #[test]
    fn a_missing_origin_is_named() {
        let err = parse(&[]).unwrap_err();
        assert_eq!(err, ConfigError::Missing("ORIGIN_URL"));
        assert!(err.to_string().contains("wrangler.toml"));
    }

    #[test]
    fn bad_values_are_rejected_with_their_name() {
        let table = [
            ("ORIGIN_URL", "ftp://x"),
            ("ORIGIN_URL", "http://"),
            ("ORIGIN_URL", "http://host/path"),
            ("ORIGIN_TIMEOUT_MS", "0"),
            ("ORIGIN_TIMEOUT_MS", "abc"),
            ("ORIGIN_TIMEOUT_MS", "999999"),
            ("RETRY_AFTER_SECS", "-1"),
        ];
        for (name, value) in table {
            let mut pairs = vec![("ORIGIN_URL", "http://127.0.0.1:1")];
            if name == "ORIGIN_URL" {
                pairs.clear();
            }
            pairs.push((name, value));
            let err = parse(&pairs).unwrap_err();
            assert!(err.to_string().contains(name), "{name}={value}: {err}");
        }
    }

    #[test]
    fn policy_overrides_and_canonical_host_are_read() {
        let config = parse(&[
            ("ORIGIN_URL", "http://o"),
            ("POLICY_SEARCH", "edge=5"),
            ("CANONICAL_HOST", "Edge.Example.com"),
        ])
        .unwrap();
        assert_eq!(
            config.policy.get(crate::policy::ContentClass::Search).edge,
            5
        );
        assert_eq!(config.canonical_host.as_deref(), Some("edge.example.com"));
        let err = parse(&[("ORIGIN_URL", "http://o"), ("POLICY_SEARCH", "edge=x")]).unwrap_err();
        assert!(err.to_string().contains("POLICY_SEARCH"), "{err}");
        assert!(parse(&[("ORIGIN_URL", "http://o"), ("CANONICAL_HOST", "a b")]).is_err());
    }

    #[test]
    fn internal_paths_are_refused_by_default_and_configurable() {
        let config = parse(&[("ORIGIN_URL", "http://o")]).unwrap();
        for path in [
            "/metrics",
            "/healthz",
            "/readyz",
            "/test/echo",
            "/test",
            "/metrics/x",
        ] {
            assert!(config.is_internal(path), "{path}");
        }
        for path in ["/metricsx", "/api/catalog", "/testing", "/"] {
            assert!(!config.is_internal(path), "{path}");
        }
        let open = parse(&[("ORIGIN_URL", "http://o"), ("INTERNAL_PATHS", "/metrics")]).unwrap();
        assert!(!open.is_internal("/test/echo"));
    }

    #[test]
    fn session_keys_are_validated_without_echoing_them() {
        let err = parse(&[("ORIGIN_URL", "http://o"), ("SESSION_KEYS", "k1:c2hvcnQ")]).unwrap_err();
        assert!(err.to_string().contains("SESSION_KEYS") && !err.to_string().contains("c2hvcnQ"));
        let spec = protocol::SessionKeys::spec_for("k1", &[1; 32]);
        assert!(
            parse(&[("ORIGIN_URL", "http://o"), ("SESSION_KEYS", &spec)])
                .unwrap()
                .session_keys
                .is_some()
        );
    }

    #[test]
    fn image_settings_are_read_and_validated() {
        let config = parse(&[
            ("ORIGIN_URL", "http://o"),
            ("IMAGE_WIDTHS", "320, 640"),
            ("IMAGE_HEIGHTS", "any"),
            ("IMAGE_QUALITIES", "70"),
            ("IMAGE_GRAVITY", "named"),
            ("IMAGE_PRESETS", "thumb:w=320,h=320,fit=cover"),
            ("IMAGE_MAX_SOURCE_PIXELS", "1000"),
        ])
        .unwrap();
        let policy = &config.image_policy;
        assert_eq!(policy.widths, Some(vec![320, 640]));
        assert_eq!(policy.heights, None);
        assert_eq!(policy.qualities, Some(vec![70]));
        assert!(policy.presets.contains_key("thumb"));
        assert_eq!(policy.access, crate::image::policy::Access::Open);
        assert_eq!(config.image_limits.max_source_pixels, 1000);
        // A signing key makes signed-or-preset the default.
        let signed = parse(&[
            ("ORIGIN_URL", "http://o"),
            ("IMAGE_SIGNING_KEY", &"k".repeat(32)),
        ])
        .unwrap();
        assert_eq!(
            signed.image_policy.access,
            crate::image::policy::Access::SignedOrPreset
        );
        for (name, value) in [
            ("IMAGE_WIDTHS", "320,x"),
            ("IMAGE_HEIGHTS", "0"),
            ("IMAGE_QUALITIES", "101"),
            ("IMAGE_BACKGROUNDS", "nope"),
            ("IMAGE_GRAVITY", "grid:0.3"),
            ("IMAGE_PRESETS", "thumb:blur=0"),
            ("IMAGE_FILTERS", "some"),
            ("IMAGE_ACCESS", "signed-or-preset"),
            ("IMAGE_SIGNING_KEY", "short"),
            ("IMAGE_MAX_SOURCE_BYTES", "0"),
            ("IMAGE_REMOTE_PATTERNS", "ftp://h/"),
            ("IMAGE_REMOTE_PRIVATE", "yes"),
            ("IMAGE_REMOTE_TIMEOUT_MS", "5"),
        ] {
            let err = parse(&[("ORIGIN_URL", "http://o"), (name, value)]).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn timeouts_and_retry_after_are_read() {
        let config = parse(&[
            ("ORIGIN_URL", "https://origin.example"),
            ("ORIGIN_TIMEOUT_MS", "250"),
            ("RETRY_AFTER_SECS", "30"),
        ])
        .unwrap();
        assert_eq!(config.origin_timeout, Duration::from_millis(250));
        assert_eq!(config.retry_after_secs, 30);
    }

    #[test]
    fn upload_tokens_and_limit_are_read_without_echoing_tokens() {
        let off = parse(&[("ORIGIN_URL", "http://o")]).unwrap();
        assert!(off.upload_tokens.is_empty());
        assert_eq!(off.upload_max_bytes, crate::upload::DEFAULT_MAX_BYTES);
        let token = "t".repeat(30);
        let on = parse(&[
            ("ORIGIN_URL", "http://o"),
            ("UPLOAD_TOKENS", &format!("content:{token}")),
            ("UPLOAD_MAX_BYTES", "5000"),
        ])
        .unwrap();
        assert_eq!(
            on.upload_tokens.holder(Some(&format!("Bearer {token}"))),
            Some("content")
        );
        assert_eq!(on.upload_max_bytes, 5000);
        let short = "s".repeat(10);
        let err = parse(&[
            ("ORIGIN_URL", "http://o"),
            ("UPLOAD_TOKENS", &format!("content:{short}")),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("UPLOAD_TOKENS entry 1 (content)"), "{err}");
        assert!(!err.contains(&short), "{err}");
        for bad in ["0", "6000000000", "ten"] {
            let err = parse(&[("ORIGIN_URL", "http://o"), ("UPLOAD_MAX_BYTES", bad)]).unwrap_err();
            assert!(err.to_string().contains("UPLOAD_MAX_BYTES"), "{err}");
        }
    }

    #[test]
    fn the_srcset_ladder_follows_image_widths_and_experiments_are_checked() {
        let config =
            parse(&[("ORIGIN_URL", "http://o"), ("IMAGE_WIDTHS", "320,640,1000")]).unwrap();
        assert_eq!(config.responsive.ladder(), [320, 640]);
        assert!(config.experiments.is_empty());
        let open = parse(&[("ORIGIN_URL", "http://o")]).unwrap();
        assert_eq!(open.responsive.ladder(), crate::personalize::DEFAULT_LADDER);
        let err = parse(&[("ORIGIN_URL", "http://o"), ("EXPERIMENTS", "[{}]")]).unwrap_err();
        assert!(err.to_string().contains("EXPERIMENTS"), "{err}");
    }
}
