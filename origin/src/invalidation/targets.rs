//! Where a purge is delivered beyond the origin: the edge's purge route (the worker,
//! which records generations in its Durable Object) and, in production, Cloudflare's
//! `purge_cache` API. Each delivery names what acknowledged it, so a retry repeats only
//! what did not.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use protocol::purge::{Change, Purge};

use super::plan::{CallLimits, cloudflare_calls};

/// A failed delivery: what to say in the log and the outbox, and a `Retry-After` if
/// the target sent one.
#[derive(Debug)]
pub struct Refused {
    pub target: String,
    pub message: String,
    pub retry_after: Option<Duration>,
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The worker's purge route: `POST <url>` with the purge as JSON and the shared secret.
#[derive(Clone)]
pub struct EdgeTarget {
    pub url: String,
    pub secret: String,
    pub client: reqwest::Client,
}

impl EdgeTarget {
    pub const NAME: &'static str = "edge";

    pub async fn deliver(&self, purge: &Purge) -> Result<(), Refused> {
        let refused = |message: String, retry_after| Refused {
            target: Self::NAME.into(),
            message,
            retry_after,
        };
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.secret)
            .json(purge)
            .send()
            .await
            .map_err(|e| refused(format!("POST {}: {e}", self.url), None))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let after = retry_after(&response);
        let body: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        Err(refused(
            format!("POST {} answered {status}: {body}", self.url),
            after,
        ))
    }
}

/// Cloudflare's `POST {base}/zones/{zone}/purge_cache`, paced to the plan's rate (a
/// token bucket: the free plan allows 5 calls a minute with a bucket of 25).
#[derive(Clone)]
pub struct CloudflareTarget {
    pub base: String,
    pub zone: String,
    pub token: String,
    /// `https://courses.example.com`: what URL and prefix purges are spelled against.
    pub public_base: String,
    pub limits: CallLimits,
    pub client: reqwest::Client,
    pub pace: Arc<DefaultDirectRateLimiter>,
}

impl CloudflareTarget {
    pub fn pace(per_minute: u32, burst: u32) -> Arc<DefaultDirectRateLimiter> {
        let per_minute = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Arc::new(RateLimiter::direct(
            Quota::per_minute(per_minute).allow_burst(burst),
        ))
    }

    /// The names of this change's calls, in order (`cloudflare:0`, …).
    pub fn call_names(&self, change: &Change) -> Vec<String> {
        (0..cloudflare_calls(change, &self.public_base, self.limits).len())
            .map(|i| format!("cloudflare:{i}"))
            .collect()
    }

    /// Makes the calls not in `acked`; pushes each acknowledged call's name into it.
    pub async fn deliver(&self, change: &Change, acked: &mut Vec<String>) -> Result<(), Refused> {
        let url = format!(
            "{}/zones/{}/purge_cache",
            self.base.trim_end_matches('/'),
            self.zone
        );
        for (i, call) in cloudflare_calls(change, &self.public_base, self.limits)
            .iter()
            .enumerate()
        {
            let name = format!("cloudflare:{i}");
            if acked.contains(&name) {
                continue;
            }
            let refused = |message: String, retry_after| Refused {
                target: name.clone(),
                message,
                retry_after,
            };
            if let Err(not_until) = self.pace.check() {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                return Err(refused(
                    String::from("paced: the plan's purge rate is used up"),
                    Some(wait),
                ));
            }
            let response = self
                .client
                .post(&url)
                .bearer_auth(&self.token)
                .json(&call.body())
                .send()
                .await
                .map_err(|e| refused(format!("POST {url}: {e}"), None))?;
            let status = response.status();
            let after = retry_after(&response);
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            if status.is_success() && body.get("success") == Some(&serde_json::Value::Bool(true)) {
                acked.push(name);
                continue;
            }
            let errors = body
                .get("errors")
                .map(ToString::to_string)
                .unwrap_or_default();
            return Err(refused(
                format!("Cloudflare purge_cache answered {status}: {errors}"),
                after,
            ));
        }
        Ok(())
    }
}

/// Every target a purge goes to beyond the origin's own caches.
#[derive(Clone, Default)]
pub struct Targets {
    pub edge: Option<EdgeTarget>,
    pub cloudflare: Option<CloudflareTarget>,
}

impl Targets {
    pub fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new())
    }

    pub fn describe(&self) -> String {
        let edge = self.edge.as_ref().map_or("off", |e| e.url.as_str());
        let cf = self.cloudflare.as_ref().map_or("off", |c| c.base.as_str());
        format!("edge_purge={edge} cloudflare={cf}")
    }
}
