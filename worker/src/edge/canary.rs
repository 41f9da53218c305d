//! The isolate's canary breaker (the decisions are `crate::canary`'s): which arm a
//! visitor gets now, and each canary origin outcome counted, with the breaker's
//! transitions logged.

use std::cell::RefCell;

use crate::canary::{self, Arm, Breaker, Outcome, Why};
use crate::config::Config;
use crate::visitor::VisitorId;

thread_local! {
    /// One breaker per isolate (see `crate::canary` for what that means for its
    /// reaction time), made with the settings of the isolate's config.
    static BREAKER: RefCell<Option<Breaker>> = const { RefCell::new(None) };
}

fn with_breaker<T>(config: &Config, f: impl FnOnce(&mut Breaker) -> T) -> Option<T> {
    let canary = config.canary.as_deref()?;
    BREAKER.with(|cell| {
        let mut cell = cell.borrow_mut();
        let breaker = cell.get_or_insert_with(|| Breaker::new(canary.breaker));
        Some(f(breaker))
    })
}

fn now() -> u64 {
    super::now_ms() as u64
}

/// The arm for this visitor now, and why.
pub(super) fn route(config: &Config, visitor: Option<&VisitorId>) -> (Arm, Why) {
    let routed = with_breaker(config, |breaker| {
        let routed = canary::route(config.canary.as_deref(), visitor, breaker, now());
        if let Some(transition) = breaker.take_transition() {
            worker::console_warn!("{transition}");
        }
        routed
    });
    routed.unwrap_or((Arm::Stable, Why::NoCanary))
}

/// Counts an origin outcome of the canary arm (the stable arm's are not the breaker's).
pub(super) fn record(config: &Config, arm: Arm, outcome: Outcome) {
    if arm != Arm::Canary {
        return;
    }
    if let Some(Some(transition)) = with_breaker(config, |b| b.record(now(), outcome)) {
        worker::console_warn!("{transition}");
    }
}
