//! The origin canary: which origin serves a visitor (the stable `ORIGIN_URL` or the
//! canary `CANARY_ORIGIN_URL`), and the circuit breaker that sends everyone back to the
//! stable origin while the canary fails. Pure: the glue hands in the visitor id, the
//! clock and each canary origin outcome; everything decided here is natively tested.
//!
//! **Arms.** A visitor is in the canary when `point < CANARY_PERCENT`, where `point` is
//! the visitor id bucketed as experiments are (`visitor` module: SHA-256 of
//! `"<CANARY_SALT>:<id>"`, first 8 bytes big-endian, mod 100). Sticky: the id is the
//! `ce_vid` cookie, which sign-in and sign-out never touch; raising the share from 5 to
//! 25 % only moves visitors from stable to canary, never back. A request to a publicly
//! cacheable class without an id goes to the stable arm (such answers never set the
//! cookie). A page or session request without one gets a new id and that id's arm, so
//! a client that keeps no cookies lands on the canary at random, at about the share.
//! The arm is visible (`x-edge-arm`), and since the client chooses its cookie, anyone
//! can put themselves into the canary: it is a delivery mechanism, not a boundary.
//!
//! **Kill switch.** `CANARY_KILL_SWITCH=on` sends everyone to the stable arm.
//!
//! **Breaker.** A per-isolate sliding window over the canary origin's outcomes (a 5xx,
//! a timeout or a refused connection is a failure; cache hits never reach it, so a
//! well-cached class cannot hide or dilute canary failures). When at least
//! `min_requests` outcomes in the window fail at more than `error_percent`, it opens:
//! everyone goes to the stable arm for `cool_down`. Then it half-opens: canary visitors
//! go to the canary until `PROBES` requests have reached the canary origin (cache hits
//! take none; the rest of the share stays on the stable origin meanwhile); `PROBES`
//! successes close it (with an empty window), one failure opens it again. Each request carries the breaker's epoch: an outcome of a request sent before
//! the breaker last changed state is ignored. The window is kept in `BUCKETS` buckets, so
//! its memory is fixed whatever the request rate.
//!
//! Each isolate keeps its own breaker (nothing is shared between isolates or
//! locations): an isolate trips after it has itself seen `min_requests` canary outcomes
//! with too many failures, so the reaction time is per isolate — at low traffic an
//! isolate may never see enough outcomes to decide, and a fresh isolate starts closed.
//! Across a fleet, a canary that fails every request costs about `min_requests` failed
//! requests per isolate that serves canary visitors before that isolate routes them
//! away, then up to `PROBES` per cool-down while it stays broken; one that fails only
//! some requests can run longer below the threshold. The rollout's error-rate check
//! (`scripts/rollout`) is the fleet-wide net.

use std::time::Duration;

use crate::visitor::{VisitorId, bucket_point};

/// Which origin serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    Stable,
    Canary,
}

impl Arm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Canary => "canary",
        }
    }
}

/// Why a request got its arm (the `Server-Timing` `arm` entry's description).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// No canary is configured (or its share is 0).
    NoCanary,
    /// `CANARY_KILL_SWITCH` is on.
    Killed,
    /// The request carries no visitor id.
    NoVisitor,
    /// The visitor's point is outside the canary's share.
    Outside,
    /// The visitor is in the canary's share but the breaker is open.
    BreakerOpen,
    /// The visitor is in the canary's share.
    Inside,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoCanary => "no-canary",
            Self::Killed => "kill-switch",
            Self::NoVisitor => "no-visitor",
            Self::Outside => "outside-share",
            Self::BreakerOpen => "breaker-open",
            Self::Inside => "inside-share",
        }
    }
}

/// The response header naming the arm that served (or would have served) a request.
pub const ARM_HEADER: &str = "x-edge-arm";

/// Breaker settings (the `CANARY_BREAKER_*` vars).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    pub window: Duration,
    pub min_requests: u32,
    /// Opens when more than this percent of the window's outcomes failed.
    pub error_percent: u32,
    pub cool_down: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(30),
            min_requests: 20,
            error_percent: 10,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// The canary as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    /// `CANARY_ORIGIN_URL`, without a trailing slash.
    pub url: String,
    /// 0–100.
    pub percent: u32,
    pub salt: String,
    pub killed: bool,
    pub breaker: BreakerSettings,
}

impl Canary {
    pub const DEFAULT_SALT: &'static str = "canary";

    /// Whether the visitor is inside the canary's share (the breaker aside).
    pub fn includes(&self, visitor: &VisitorId) -> bool {
        bucket_point(&self.salt, visitor, 100) < u64::from(self.percent)
    }
}

/// Which origin serves a request, and under which breaker epoch it was admitted (an
/// outcome reported under an older epoch is ignored: a request sent before the
/// breaker changed state says nothing about the state it is in now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub arm: Arm,
    epoch: u64,
}

impl Ticket {
    /// The stable arm (its outcomes are not the breaker's).
    pub const STABLE: Self = Self {
        arm: Arm::Stable,
        epoch: 0,
    };
}

/// The arm for a request, and why.
pub fn route(
    canary: Option<&Canary>,
    visitor: Option<&VisitorId>,
    breaker: &mut Breaker,
    now_ms: u64,
) -> (Ticket, Why) {
    let stable = |why| (Ticket::STABLE, why);
    let Some(canary) = canary.filter(|c| c.percent > 0) else {
        return stable(Why::NoCanary);
    };
    if canary.killed {
        return stable(Why::Killed);
    }
    let Some(visitor) = visitor else {
        return stable(Why::NoVisitor);
    };
    if !canary.includes(visitor) {
        return stable(Why::Outside);
    }
    match breaker.admits(now_ms) {
        Some(epoch) => (
            Ticket {
                arm: Arm::Canary,
                epoch,
            },
            Why::Inside,
        ),
        None => stable(Why::BreakerOpen),
    }
}

/// One canary origin outcome, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
}

impl Outcome {
    /// A response: a 5xx is a failure (whatever the origin meant by it).
    pub fn of_status(status: u16) -> Self {
        if (500..600).contains(&status) {
            Self::Failed
        } else {
            Self::Ok
        }
    }
}

/// Successes in a row that close a half-open breaker; also how many requests a
/// half-open breaker lets through at a time (the rest of the canary's share stays on
/// the stable origin until they answer).
pub const PROBES: u32 = 5;
/// The window's buckets.
pub const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Everyone to stable until this time (ms).
    Open {
        until_ms: u64,
    },
    /// Canary requests are let through while fewer than `PROBES` have reached the
    /// canary origin (`admitted`, counted when a fetch starts: a cache hit is no probe);
    /// `successes` so far. Probes that never report (a cancelled request) are written
    /// off after a cool-down (`since_ms`).
    HalfOpen {
        successes: u32,
        admitted: u32,
        since_ms: u64,
    },
}

/// A change of the breaker's state, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Opened { failed: u32, total: u32 },
    Reopened,
    HalfOpened,
    Closed,
}

impl std::fmt::Display for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Opened { failed, total } => write!(
                f,
                "canary breaker opened: {failed} of {total} canary origin outcomes in the window failed; everyone goes to the stable origin"
            ),
            Self::Reopened => write!(
                f,
                "canary breaker opened again: a probe failed while half-open"
            ),
            Self::HalfOpened => write!(f, "canary breaker half-open: probing the canary origin"),
            Self::Closed => write!(
                f,
                "canary breaker closed: {PROBES} probes succeeded; canary visitors go to the canary again"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bucket {
    /// Which slice of time it counts (`now / bucket width`); stale ones are skipped.
    slice: u64,
    total: u32,
    failed: u32,
}

/// The circuit breaker of one isolate.
#[derive(Debug, Clone)]
pub struct Breaker {
    settings: BreakerSettings,
    buckets: [Bucket; BUCKETS],
    state: BreakerState,
    /// The half-open transition `admits` made that nobody has logged yet.
    pending: Option<Transition>,
    /// Bumped at every change of state; tickets carry the epoch they were issued in.
    epoch: u64,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            buckets: [Bucket::default(); BUCKETS],
            state: BreakerState::Closed,
            pending: None,
            epoch: 1,
        }
    }

    pub fn settings(&self) -> BreakerSettings {
        self.settings
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    fn width_ms(&self) -> u64 {
        (self.settings.window.as_millis() as u64 / BUCKETS as u64).max(1)
    }

    fn enter(&mut self, state: BreakerState) {
        self.state = state;
        self.epoch += 1;
    }

    /// Whether a canary visitor may go to the canary now, and under which epoch (an
    /// open breaker whose cool-down has passed half-opens here; half-open, only while
    /// fewer than `PROBES` probes have started).
    pub fn admits(&mut self, now_ms: u64) -> Option<u64> {
        if let BreakerState::Open { until_ms } = self.state {
            if now_ms < until_ms {
                return None;
            }
            self.enter(BreakerState::HalfOpen {
                successes: 0,
                admitted: 0,
                since_ms: now_ms,
            });
            self.pending = Some(Transition::HalfOpened);
        }
        if let BreakerState::HalfOpen {
            successes,
            admitted,
            since_ms,
        } = self.state
        {
            let cool_down = self.settings.cool_down.as_millis() as u64;
            // Probes that never answered within a cool-down are written off.
            let (admitted, since_ms) = if now_ms >= since_ms.saturating_add(cool_down) {
                (successes, now_ms)
            } else {
                (admitted, since_ms)
            };
            self.state = BreakerState::HalfOpen {
                successes,
                admitted,
                since_ms,
            };
            if admitted >= PROBES {
                return None;
            }
        }
        Some(self.epoch)
    }

    /// A canary request admitted under `ticket` is about to reach the canary origin:
    /// half-open, it takes a probe. (Requests routed at the same moment may start a few
    /// more than `PROBES`; the cap is on what reaches the origin, not on cache hits.)
    pub fn started(&mut self, ticket: Ticket) {
        if ticket.arm != Arm::Canary || ticket.epoch != self.epoch {
            return;
        }
        if let BreakerState::HalfOpen {
            successes,
            admitted,
            since_ms,
        } = self.state
        {
            self.state = BreakerState::HalfOpen {
                successes,
                admitted: admitted.saturating_add(1),
                since_ms,
            };
        }
    }

    /// The window's totals at `now_ms`: (failed, total).
    pub fn window(&self, now_ms: u64) -> (u32, u32) {
        let current = now_ms / self.width_ms();
        self.buckets
            .iter()
            .filter(|b| b.total > 0 && current.saturating_sub(b.slice) < BUCKETS as u64)
            .fold((0u32, 0u32), |(f, t), b| {
                (f.saturating_add(b.failed), t.saturating_add(b.total))
            })
    }

    /// The half-open transition `admits` made, once (for the log).
    pub fn take_transition(&mut self) -> Option<Transition> {
        self.pending.take()
    }

    /// Counts the outcome of a canary request admitted under `ticket`; returns the
    /// transition it caused, if any. Stable tickets and tickets of an earlier epoch
    /// (sent before the breaker last changed state) change nothing.
    pub fn record(&mut self, now_ms: u64, ticket: Ticket, outcome: Outcome) -> Option<Transition> {
        if ticket.arm != Arm::Canary || ticket.epoch != self.epoch {
            return None;
        }
        match self.state {
            BreakerState::Open { .. } => None,
            BreakerState::HalfOpen {
                successes,
                admitted,
                since_ms,
            } => match outcome {
                Outcome::Failed => {
                    self.open(now_ms);
                    Some(Transition::Reopened)
                }
                Outcome::Ok if successes + 1 >= PROBES => {
                    self.enter(BreakerState::Closed);
                    self.buckets = [Bucket::default(); BUCKETS];
                    Some(Transition::Closed)
                }
                Outcome::Ok => {
                    self.state = BreakerState::HalfOpen {
                        successes: successes + 1,
                        admitted,
                        since_ms,
                    };
                    None
                }
            },
            BreakerState::Closed => {
                let slice = now_ms / self.width_ms();
                let bucket = &mut self.buckets[(slice % BUCKETS as u64) as usize];
                if bucket.slice != slice {
                    *bucket = Bucket {
                        slice,
                        total: 0,
                        failed: 0,
                    };
                }
                bucket.total = bucket.total.saturating_add(1);
                if outcome == Outcome::Failed {
                    bucket.failed = bucket.failed.saturating_add(1);
                }
                let (failed, total) = self.window(now_ms);
                let too_many = u64::from(failed) * 100
                    > u64::from(total) * u64::from(self.settings.error_percent);
                if total >= self.settings.min_requests && too_many {
                    self.open(now_ms);
                    Some(Transition::Opened { failed, total })
                } else {
                    None
                }
            }
        }
    }

    fn open(&mut self, now_ms: u64) {
        self.enter(BreakerState::Open {
            until_ms: now_ms.saturating_add(self.settings.cool_down.as_millis() as u64),
        });
    }
}

#[cfg(test)]
mod tests;
