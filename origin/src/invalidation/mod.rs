//! The one door for invalidation at the origin.
//!
//! A content change writes its purge into the outbox **in the same transaction** as the
//! change itself (see `Store::edit_course` and friends), so a committed change always
//! has its purge on disk. The [`Invalidator`] then delivers every outbox row, in order:
//!
//! 1. evicts this instance's in-process cache and Redis (shared), by [`plan::evictions`];
//! 2. tells the other instances over the [`bus::Bus`] (NATS, Redis pub/sub or none);
//! 3. after a short settle (so peers have evicted before the edge refetches from them),
//!    delivers the edge purge, then Cloudflare's `purge_cache` calls when configured.
//!
//! A row is done only when every target acknowledged it; otherwise it is retried with
//! exponential backoff (steps already acknowledged are not repeated). Rows are claimed
//! with a lease, so several instances share the outbox without delivering a row twice
//! at once, and a row whose deliverer died is taken over when its lease runs out: a
//! crash between commit and delivery still delivers after restart. Deliveries carry the
//! outbox id and the edge applies an id once, so a repeat after a crash changes nothing.
//!
//! Fault injection: `ORIGIN_FAULT_PAUSE=before-delivery` makes the deliverer stop
//! forever after claiming a row (the crash tests SIGKILL it there).

pub mod bus;
pub mod plan;
pub mod targets;

use std::sync::Arc;
use std::time::Duration;

use protocol::purge::{Change, Purge};
use tokio::sync::{Notify, broadcast};

use crate::cache::Caches;
use crate::storage::{CountingStore, OutboxRow, Store};

pub use bus::Bus;
pub use targets::{CloudflareTarget, EdgeTarget, Targets};

/// How the deliverer paces itself.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// A claimed row is someone else's to take over after this long.
    pub lease: Duration,
    /// Look for due rows at least this often (a change wakes the deliverer at once).
    pub poll: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Between telling peers and purging the edge.
    pub settle: Duration,
    /// `Some("before-delivery")`: stop after claiming a row (fault injection).
    pub fault_pause: Option<String>,
    /// Warming after a purge: the edge's public base URL and the path prefixes whose
    /// purged URLs are re-requested through it (empty: no warming).
    pub warm_base: Option<String>,
    pub warm_prefixes: Vec<String>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(300),
            settle: Duration::from_millis(50),
            fault_pause: None,
            warm_base: None,
            warm_prefixes: Vec::new(),
        }
    }
}

/// Most URLs one purge warms.
const MAX_WARM_URLS: usize = 32;

/// How long an acknowledged purge stays in the outbox.
const RETENTION_MS: i64 = 7 * 24 * 3_600_000;

/// Names of the steps a row needs acknowledged.
const ORIGIN_STEP: &str = "origin";
const BUS_STEP: &str = "bus";

pub struct Invalidator {
    store: Arc<CountingStore>,
    caches: Arc<Caches>,
    bus: Bus,
    targets: Targets,
    settings: DeliverySettings,
    /// This instance's name on the bus.
    instance: String,
    wake: Notify,
    delivered: broadcast::Sender<i64>,
    warm_client: reqwest::Client,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn jitter() -> f64 {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    f64::from(byte[0]) / 255.0
}

impl Invalidator {
    pub fn new(
        store: Arc<CountingStore>,
        caches: Arc<Caches>,
        bus: Bus,
        targets: Targets,
        settings: DeliverySettings,
    ) -> Self {
        let mut id = [0u8; 6];
        let _ = getrandom::fill(&mut id);
        let instance: String = id.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            store,
            caches,
            bus,
            targets,
            settings,
            instance,
            wake: Notify::new(),
            delivered: broadcast::channel(256).0,
            warm_client: Targets::client(),
        }
    }

    pub fn describe(&self) -> String {
        format!("bus={} {}", self.bus.kind(), self.targets.describe())
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Starts the deliverer and the bus listener.
    pub fn spawn(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move { me.run().await });
        let bus = self.bus.clone();
        let instance = self.instance.clone();
        let caches = self.caches.clone();
        tokio::spawn(async move { bus.listen(instance, caches).await });
    }

    /// A change was committed: deliver now rather than at the next poll.
    pub fn kick(&self) {
        self.wake.notify_one();
    }

    /// Waits up to `within` for outbox row `id` to be acknowledged by every target.
    pub async fn wait_delivered(&self, id: i64, within: Duration) -> bool {
        let mut delivered = self.delivered.subscribe();
        self.kick();
        let wait = async {
            loop {
                match delivered.recv().await {
                    Ok(done) if done == id => return true,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if self.is_delivered(id).await {
                            return true;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return false,
                }
            }
        };
        if self.is_delivered(id).await {
            return true;
        }
        tokio::time::timeout(within, wait).await.unwrap_or(false)
    }

    async fn is_delivered(&self, id: i64) -> bool {
        matches!(self.store.purge_row(id).await, Ok(Some(row)) if row.delivered_at_ms.is_some())
    }

    async fn run(self: Arc<Self>) {
        tracing::info!(instance = %self.instance, "invalidator: delivering purges ({})", self.describe());
        let mut pruned_at = 0_i64;
        loop {
            // Acknowledged purges are kept a week for `GET /admin/purges/{id}`, then go.
            if now_ms() - pruned_at > 3_600_000 {
                pruned_at = now_ms();
                match self.store.prune_purges(pruned_at - RETENTION_MS).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(deleted = n, "invalidator: old acknowledged purges pruned")
                    }
                    Err(e) => tracing::warn!(error = %e, "invalidator: pruning the outbox failed"),
                }
            }
            // One row per claim: a claim's lease covers one delivery, never a batch
            // that could outlast it.
            loop {
                let rows = match self
                    .store
                    .claim_purges(now_ms(), self.settings.lease.as_millis() as i64, 1)
                    .await
                {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::error!(error = %e, "invalidator: reading the outbox failed");
                        break;
                    }
                };
                if rows.is_empty() {
                    break;
                }
                {
                    for row in rows {
                        if self.settings.fault_pause.as_deref() == Some("before-delivery") {
                            tracing::warn!(
                                purge = row.id,
                                "fault: paused before delivery (ORIGIN_FAULT_PAUSE=before-delivery)"
                            );
                            std::future::pending::<()>().await;
                        }
                        self.deliver(row).await;
                    }
                }
            }
            if let Ok(pending) = self.store.pending_purges().await {
                metrics::gauge!("origin_purges_pending").set(pending as f64);
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.settings.poll) => {}
            }
        }
    }

    /// One attempt at one row; records the outcome.
    async fn deliver(&self, row: OutboxRow) {
        let mut acked = row.acked.clone();
        let outcome = self.attempt(&row, &mut acked).await;
        let now = now_ms();
        match outcome {
            Ok(()) => {
                match self
                    .store
                    .purge_attempted(row.id, row.lease, &acked, None, None, now)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(
                            purge = row.id,
                            "invalidator: the claim ran out mid-delivery; the instance that took the row over records it"
                        );
                        return;
                    }
                    Err(e) => {
                        tracing::error!(purge = row.id, error = %e, "invalidator: recording a delivery failed; it will be repeated");
                        return;
                    }
                }
                metrics::counter!("origin_purges_total", "outcome" => "acknowledged").increment(1);
                tracing::info!(
                    purge = row.id,
                    actor = %row.actor,
                    attempts = row.attempts,
                    latency_ms = now - row.created_at_ms,
                    "purge acknowledged by every target"
                );
                let _ = self.delivered.send(row.id);
                self.warm(&row.change);
            }
            Err(refused) => {
                let delay = plan::retry_delay(
                    u32::try_from(row.attempts).unwrap_or(u32::MAX),
                    self.settings.retry_base,
                    self.settings.retry_max,
                    refused.retry_after,
                    jitter(),
                );
                let next = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                let message = format!("{}: {}", refused.target, refused.message);
                let _ = self
                    .store
                    .purge_attempted(row.id, row.lease, &acked, Some(next), Some(&message), now)
                    .await;
                metrics::counter!("origin_purges_total", "outcome" => "retried").increment(1);
                tracing::warn!(
                    purge = row.id,
                    attempts = row.attempts,
                    retry_in_ms = delay.as_millis() as u64,
                    error = %message,
                    "purge not acknowledged; will retry"
                );
            }
        }
    }

    async fn attempt(
        &self,
        row: &OutboxRow,
        acked: &mut Vec<String>,
    ) -> Result<(), targets::Refused> {
        let refused = |target: &str, message: String| targets::Refused {
            target: target.to_owned(),
            message,
            retry_after: None,
        };
        // Origin caches first, every attempt: a retry must not find them refilled with
        // the old value by a request that raced the first eviction (the generation check
        // prevents that too; evicting again is cheap).
        for eviction in plan::evictions(&row.change) {
            self.caches
                .evict(&eviction, true)
                .await
                .map_err(|e| refused(ORIGIN_STEP, format!("evicting Redis: {e}")))?;
        }
        if !acked.iter().any(|a| a == ORIGIN_STEP) {
            acked.push(ORIGIN_STEP.into());
        }
        if !acked.iter().any(|a| a == BUS_STEP) {
            self.bus
                .publish(&self.instance, row.id, &row.change)
                .await
                .map_err(|e| refused(BUS_STEP, e))?;
            acked.push(BUS_STEP.into());
            if !matches!(self.bus, Bus::Local) {
                tokio::time::sleep(self.settings.settle).await;
            }
        }
        metrics::counter!("origin_purges_total", "outcome" => "sent").increment(1);
        if let Some(edge) = &self.targets.edge
            && !acked.iter().any(|a| a == EdgeTarget::NAME)
        {
            let purge = Purge {
                id: purge_id(row),
                change: row.change.clone(),
            };
            edge.deliver(&purge).await?;
            acked.push(EdgeTarget::NAME.into());
        }
        if let Some(cloudflare) = &self.targets.cloudflare {
            cloudflare.deliver(&row.change, acked).await?;
        }
        Ok(())
    }

    /// Re-requests the purged hot URLs through the edge in the background, so the first
    /// visitor after a purge does not pay the miss (best effort, counted).
    fn warm(&self, change: &Change) {
        let Some(base) = &self.settings.warm_base else {
            return;
        };
        let urls = plan::warm_urls(change, &self.settings.warm_prefixes, MAX_WARM_URLS);
        if urls.is_empty() {
            return;
        }
        let base = base.trim_end_matches('/').to_owned();
        let client = self.warm_client.clone();
        tokio::spawn(async move {
            for url in urls {
                let outcome = match client.get(format!("{base}{url}")).send().await {
                    Ok(r) if r.status().is_success() => "warmed",
                    Ok(_) => "refused",
                    Err(_) => "failed",
                };
                metrics::counter!("origin_purge_warms_total", "outcome" => outcome).increment(1);
                tracing::debug!(%url, outcome, "warm after purge");
            }
        });
    }

    /// Records a purge that is not part of a content change (`POST /admin/invalidate`).
    pub async fn record(
        &self,
        change: &Change,
        actor: &str,
    ) -> Result<i64, crate::storage::StoreError> {
        let id = self.store.record_purge(change, actor, now_ms()).await?;
        self.kick();
        Ok(id)
    }
}

/// The id a purge carries to the edge: stable across retries and restarts (it is read
/// from the row), and unique across databases reset to id 1 (the creation time).
pub fn purge_id(row: &OutboxRow) -> String {
    format!("o{}-{}", row.id, row.created_at_ms)
}

/// Milliseconds since the epoch (for edits' timestamps).
pub fn unix_ms() -> i64 {
    now_ms()
}
