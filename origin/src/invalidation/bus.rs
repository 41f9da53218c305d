//! Telling the other origin instances to evict what a purge covers: NATS when
//! `NATS_URL` is set, else Redis pub/sub when Redis is, else nobody (one instance).
//!
//! Both are at-most-once: a message sent while an instance is disconnected never reaches
//! it. So an instance that may have missed one evicts its whole in-process cache (what it
//! missed is unknown): on NATS, on every disconnect, reconnect and slow-consumer drop the
//! client reports (its event callback, so no blip goes unseen between two polls); on
//! Redis, when it subscribes again. Redis, the shared level, is evicted by the
//! delivering instance itself and never depends on the bus. Each such flush is counted in
//! `origin_bus_flushes_total{reason}`.

use std::sync::Arc;

use futures_util::StreamExt;
use protocol::purge::Change;
use serde::{Deserialize, Serialize};

use crate::cache::{Caches, Eviction};

use super::plan::evictions;

/// One bus message: which instance sent it (so it ignores its own) and the change.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Message {
    from: String,
    id: i64,
    change: Change,
}

#[derive(Clone)]
pub enum Bus {
    /// One instance: nothing to tell.
    Local,
    Nats {
        client: async_nats::Client,
        subject: String,
        /// Bumped by the client's event callback whenever messages may have been missed
        /// (the reason of the latest).
        missed: tokio::sync::watch::Receiver<(u64, &'static str)>,
    },
    Redis {
        client: redis::Client,
        channel: String,
    },
}

impl Bus {
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Nats { .. } => "nats",
            Self::Redis { .. } => "redis",
        }
    }

    /// Connects to NATS (fails loudly: an operator who set `NATS_URL` wants it).
    pub async fn nats(url: &str, subject: &str) -> Result<Self, String> {
        let (tell, missed) = tokio::sync::watch::channel((0, ""));
        let tell = Arc::new(tell);
        // The first `Connected` is the initial connect (reported on a task of its own,
        // possibly after the listener started): nothing was missed before it.
        let connected_before = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            async_nats::ConnectOptions::new()
                .name("course-origin")
                .retry_on_initial_connect()
                .event_callback(move |event| {
                    let tell = tell.clone();
                    let connected_before = connected_before.clone();
                    async move {
                        let first_connect = matches!(event, async_nats::Event::Connected)
                            && !connected_before.swap(true, std::sync::atomic::Ordering::SeqCst);
                        if first_connect {
                            return;
                        }
                        if let Some(reason) = missed_by(&event) {
                            tell.send_modify(|(n, why)| {
                                *n += 1;
                                *why = reason;
                            });
                        }
                    }
                })
                .connect(url),
        )
        .await
        .map_err(|_| format!("connecting to NATS at {url} timed out"))?
        .map_err(|e| format!("connecting to NATS at {url}: {e}"))?;
        Ok(Self::Nats {
            client,
            subject: subject.to_owned(),
            missed,
        })
    }

    pub fn redis(url: &str, channel: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("REDIS_URL: {e}"))?;
        Ok(Self::Redis {
            client,
            channel: channel.to_owned(),
        })
    }

    /// Tells the other instances. `Ok` means handed to the server (NATS flushes).
    pub async fn publish(&self, from: &str, id: i64, change: &Change) -> Result<(), String> {
        let payload = serde_json::to_vec(&Message {
            from: from.to_owned(),
            id,
            change: change.clone(),
        })
        .map_err(|e| e.to_string())?;
        let deadline = std::time::Duration::from_secs(2);
        match self {
            Self::Local => Ok(()),
            Self::Nats {
                client, subject, ..
            } => tokio::time::timeout(deadline, async {
                client
                    .publish(subject.clone(), payload.into())
                    .await
                    .map_err(|e| e.to_string())?;
                client.flush().await.map_err(|e| e.to_string())
            })
            .await
            .map_err(|_| String::from("NATS publish timed out"))?,
            Self::Redis { client, channel } => tokio::time::timeout(deadline, async {
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| e.to_string())?;
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async::<i64>(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|_| String::from("Redis publish timed out"))?,
        }
    }

    /// Runs for the life of the process: applies other instances' changes to this
    /// instance's in-process cache. Returns only on `Local`.
    pub async fn listen(self, me: String, caches: Arc<Caches>) {
        match self {
            Self::Local => {}
            Self::Nats {
                client,
                subject,
                missed,
            } => listen_nats(client, subject, missed, me, caches).await,
            Self::Redis { client, channel } => listen_redis(client, channel, me, caches).await,
        }
    }
}

async fn apply(payload: &[u8], me: &str, caches: &Caches) {
    let Ok(message) = serde_json::from_slice::<Message>(payload) else {
        tracing::warn!("bus: a message that is not a purge was ignored");
        return;
    };
    if message.from == me || message.change.check().is_err() {
        return;
    }
    for eviction in evictions(&message.change) {
        // Local only: the sender evicted Redis itself.
        let _ = caches.evict(&eviction, false).await;
    }
    metrics::counter!("origin_bus_received_total").increment(1);
    tracing::info!(purge = message.id, from = %message.from, "bus: evicted a peer's purge");
}

/// Whether a NATS client event means messages may have been missed, and why: the
/// connection went (messages sent meanwhile are gone), came back (the same, seen from
/// the other side), or the subscription overflowed (the client dropped messages).
fn missed_by(event: &async_nats::Event) -> Option<&'static str> {
    match event {
        async_nats::Event::Disconnected => Some("disconnected"),
        async_nats::Event::Connected => Some("reconnected"),
        async_nats::Event::SlowConsumer(_) => Some("slow-consumer"),
        _ => None,
    }
}

async fn forget_everything(caches: &Caches, why: &'static str) {
    tracing::warn!(
        reason = why,
        "bus: purges may have been missed; evicting the whole in-process cache"
    );
    metrics::counter!("origin_bus_flushes_total", "reason" => why).increment(1);
    let _ = caches.evict(&Eviction::All, false).await;
}

async fn listen_nats(
    client: async_nats::Client,
    subject: String,
    mut missed: tokio::sync::watch::Receiver<(u64, &'static str)>,
    me: String,
    caches: Arc<Caches>,
) {
    // Events from before the first subscription (the initial connect) cost nothing.
    missed.mark_unchanged();
    let mut first = true;
    loop {
        let mut subscriber = match client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "bus: NATS subscribe failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if !first {
            forget_everything(&caches, "resubscribed").await;
        }
        first = false;
        tracing::info!(%subject, "bus: listening on NATS");
        loop {
            tokio::select! {
                message = subscriber.next() => match message {
                    Some(message) => apply(&message.payload, &me, &caches).await,
                    None => {
                        tracing::warn!("bus: the NATS subscription ended; subscribing again");
                        break;
                    }
                },
                changed = missed.changed() => {
                    if changed.is_err() {
                        // The client is gone (the process is shutting down).
                        return;
                    }
                    let why = missed.borrow_and_update().1;
                    forget_everything(&caches, why).await;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn listen_redis(client: redis::Client, channel: String, me: String, caches: Arc<Caches>) {
    let mut first = true;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    if !first {
                        forget_everything(&caches, "resubscribed").await;
                    }
                    tracing::info!(%channel, "bus: listening on Redis pub/sub");
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let payload: Vec<u8> = message.get_payload().unwrap_or_default();
                        apply(&payload, &me, &caches).await;
                    }
                    tracing::warn!("bus: the Redis subscription ended; reconnecting");
                }
                Err(e) => tracing::warn!(error = %e, "bus: Redis subscribe failed; retrying"),
            },
            Err(e) => tracing::warn!(error = %e, "bus: Redis pub/sub connect failed; retrying"),
        }
        first = false;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
