//! A stand-in for the two things a purge is delivered to outside the origin, on a
//! loopback port, recording every request and refusing what the real one would refuse:
//!
//! * Cloudflare's `POST /client/v4/zones/{zone_id}/purge_cache` (documented at
//!   developers.cloudflare.com/api/resources/cache/methods/purge): bearer token, a JSON
//!   body with exactly one of `files`, `tags`, `hosts`, `prefixes`, `purge_everything`,
//!   at most the plan's operations per call, prefixes without a scheme, files with one,
//!   and the plan's rate (token bucket; the free plan: 5 a minute, bucket 25) with 429.
//! * The worker's purge route (`POST /__edge/purge`): bearer secret, a [`Purge`] body.
//!   It applies a purge id once (as the worker's Durable Object does), so a repeated
//!   delivery shows as a duplicate, not a second effect.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use protocol::purge::Purge;
use serde_json::{Value, json};

/// A plan's documented purge limits.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub max_per_call: usize,
    pub per_minute: f64,
    pub bucket: f64,
}

impl Plan {
    pub const FREE: Self = Self {
        max_per_call: 100,
        per_minute: 5.0,
        bucket: 25.0,
    };
}

#[derive(Debug, Clone)]
pub struct Call {
    pub status: u16,
    pub body: Value,
}

struct Inner {
    zone: String,
    token: String,
    edge_secret: String,
    plan: Plan,
    tokens: f64,
    refilled: Instant,
    calls: Vec<Call>,
    edge_purges: Vec<Purge>,
    applied: HashSet<String>,
    duplicates: usize,
    /// Answer this many edge purges with 503 before accepting (failure injection).
    edge_failures: usize,
    /// Paths GET through the stand-in edge (warming after a purge).
    warmed: Vec<String>,
}

#[derive(Clone)]
pub struct Recorder {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

fn cf_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "success": false,
            "errors": [{"code": code, "message": message}],
            "messages": [],
            "result": null
        })),
    )
        .into_response()
}

fn is_zone_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why the API would refuse this body, if it would.
pub fn refuse_body(body: &Value, plan: Plan) -> Option<String> {
    let Value::Object(map) = body else {
        return Some(String::from("the body is not a JSON object"));
    };
    let kinds = ["files", "tags", "hosts", "prefixes", "purge_everything"];
    if map.keys().any(|k| !kinds.contains(&k.as_str())) {
        return Some(format!(
            "unknown keys in {:?}",
            map.keys().collect::<Vec<_>>()
        ));
    }
    if map.len() != 1 {
        return Some(String::from("exactly one purge kind per call"));
    }
    let (kind, value) = map.iter().next()?;
    if kind == "purge_everything" {
        return (value != &Value::Bool(true)).then(|| String::from("purge_everything is true"));
    }
    let Value::Array(items) = value else {
        return Some(format!("{kind} is an array"));
    };
    if items.is_empty() || items.len() > plan.max_per_call {
        return Some(format!(
            "{kind}: 1 to {} per call (got {})",
            plan.max_per_call,
            items.len()
        ));
    }
    for item in items {
        let Some(s) = item.as_str() else {
            return Some(format!("{kind} items are strings"));
        };
        let bad = match kind.as_str() {
            "files" => !(s.starts_with("https://") || s.starts_with("http://")),
            "prefixes" => s.contains("://") || s.contains('?') || !s.contains('/'),
            "hosts" => s.contains('/') || s.contains("://"),
            "tags" => s.is_empty() || s.len() > 1024 || s.contains(' ') || s.contains(','),
            _ => true,
        };
        if bad {
            return Some(format!("{kind}: {s:?} is not valid"));
        }
    }
    None
}

async fn purge_cache(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(zone): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let record = |status: u16, inner: &mut Inner| {
        inner.calls.push(Call {
            status,
            body: parsed.clone(),
        });
    };
    if !is_zone_id(&zone) || zone != inner.zone {
        record(404, &mut inner);
        return cf_error(
            StatusCode::NOT_FOUND,
            7003,
            "Could not route to /zones: invalid zone id",
        );
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {}", inner.token)) {
        record(403, &mut inner);
        return cf_error(StatusCode::FORBIDDEN, 10000, "Authentication error");
    }
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        record(400, &mut inner);
        return cf_error(StatusCode::BAD_REQUEST, 6003, "Invalid request headers");
    }
    if let Some(why) = refuse_body(&parsed, inner.plan) {
        record(400, &mut inner);
        return cf_error(StatusCode::BAD_REQUEST, 1012, &why);
    }
    // Token bucket at the plan's rate.
    let now = Instant::now();
    let elapsed = now.duration_since(inner.refilled).as_secs_f64();
    inner.tokens = (inner.tokens + elapsed * inner.plan.per_minute / 60.0).min(inner.plan.bucket);
    inner.refilled = now;
    if inner.tokens < 1.0 {
        record(429, &mut inner);
        let wait = ((1.0 - inner.tokens) * 60.0 / inner.plan.per_minute).ceil() as u64;
        let mut response = cf_error(StatusCode::TOO_MANY_REQUESTS, 10429, "rate limited");
        response
            .headers_mut()
            .insert("retry-after", wait.max(1).to_string().parse().unwrap());
        return response;
    }
    inner.tokens -= 1.0;
    record(200, &mut inner);
    let n = inner.calls.len();
    axum::Json(json!({
        "success": true,
        "errors": [],
        "messages": [],
        "result": {"id": format!("purge-{n}")}
    }))
    .into_response()
}

async fn edge_purge(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {}", inner.edge_secret)) {
        return (StatusCode::UNAUTHORIZED, "bad secret").into_response();
    }
    if inner.edge_failures > 0 {
        inner.edge_failures -= 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "injected failure").into_response();
    }
    let Ok(purge) = Purge::parse(&body) else {
        return (StatusCode::BAD_REQUEST, "not a purge").into_response();
    };
    if !inner.applied.insert(purge.id.clone()) {
        inner.duplicates += 1;
    }
    inner.edge_purges.push(purge);
    axum::Json(json!({"applied": true})).into_response()
}

async fn warm(State(inner): State<Arc<Mutex<Inner>>>, uri: axum::http::Uri) -> Response {
    inner.lock().unwrap().warmed.push(uri.to_string());
    (StatusCode::OK, "warm").into_response()
}

impl Recorder {
    pub const ZONE: &'static str = "0123456789abcdef0123456789abcdef";
    pub const TOKEN: &'static str = "cf-test-token";
    pub const EDGE_SECRET: &'static str = "edge-test-secret-0123456789";

    pub async fn start(plan: Plan) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            zone: Self::ZONE.into(),
            token: Self::TOKEN.into(),
            edge_secret: Self::EDGE_SECRET.into(),
            plan,
            tokens: plan.bucket,
            refilled: Instant::now(),
            calls: Vec::new(),
            edge_purges: Vec::new(),
            applied: HashSet::new(),
            duplicates: 0,
            edge_failures: 0,
            warmed: Vec::new(),
        }));
        let router = Router::new()
            .route("/client/v4/zones/{zone}/purge_cache", post(purge_cache))
            .route("/__edge/purge", post(edge_purge))
            .fallback(warm)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { addr, inner }
    }

    pub fn api_base(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    pub fn edge_url(&self) -> String {
        format!("http://{}/__edge/purge", self.addr)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    pub fn edge_purges(&self) -> Vec<Purge> {
        self.inner.lock().unwrap().edge_purges.clone()
    }

    /// Distinct purge ids applied, and deliveries that repeated one.
    pub fn applied(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap();
        (inner.applied.len(), inner.duplicates)
    }

    /// The stand-in edge's public base (what warming requests go to).
    pub fn public_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn warmed(&self) -> Vec<String> {
        self.inner.lock().unwrap().warmed.clone()
    }

    pub fn fail_edge(&self, times: usize) {
        self.inner.lock().unwrap().edge_failures = times;
    }
}
