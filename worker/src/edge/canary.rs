//! The isolate's canary breaker (the decisions are `crate::canary`'s): which arm a
//! visitor gets now, and each canary origin outcome counted, with the breaker's
//! transitions logged.

use std::cell::RefCell;

use crate::canary::{self, Breaker, Outcome, Ticket, Why};
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

/// The arm for this visitor now (as a ticket its outcome is reported with), and why.
pub(super) fn route(config: &Config, visitor: Option<&VisitorId>) -> (Ticket, Why) {
    let routed = with_breaker(config, |breaker| {
        let routed = canary::route(config.canary.as_deref(), visitor, breaker, now());
        if let Some(transition) = breaker.take_transition() {
            worker::console_warn!("{transition}");
        }
        routed
    });
    routed.unwrap_or((Ticket::STABLE, Why::NoCanary))
}

/// A request with `ticket` is about to reach its origin (a half-open breaker's probe).
pub(super) fn started(config: &Config, ticket: Ticket) {
    with_breaker(config, |b| b.started(ticket));
}

/// Counts an origin outcome (the breaker ignores the stable arm's, and those of
/// requests admitted before it last changed state).
pub(super) fn record(config: &Config, ticket: Ticket, outcome: Outcome) {
    if let Some(Some(transition)) = with_breaker(config, |b| b.record(now(), ticket, outcome)) {
        worker::console_warn!("{transition}");
    }
}
