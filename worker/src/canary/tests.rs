use super::*;

fn canary(percent: u32) -> Canary {
    Canary {
        url: String::from("http://canary.test"),
        percent,
        salt: String::from(Canary::DEFAULT_SALT),
        killed: false,
        breaker: BreakerSettings::default(),
    }
}

/// Ids as a test would mint them: the counter's bytes, hashed into 16 bytes.
fn synthetic(i: u64) -> VisitorId {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("synthetic-{i}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    VisitorId::from_bytes(bytes)
}

fn settings() -> BreakerSettings {
    BreakerSettings {
        window: Duration::from_secs(10),
        min_requests: 10,
        error_percent: 20,
        cool_down: Duration::from_secs(5),
    }
}

#[test]
fn the_share_is_within_two_points_of_the_setting_over_10k_ids() {
    for percent in [1, 5, 25, 50, 75, 100] {
        let c = canary(percent);
        let inside = (0..10_000).filter(|i| c.includes(&synthetic(*i))).count();
        let share = inside as f64 / 100.0;
        assert!(
            (share - f64::from(percent)).abs() <= 2.0,
            "{percent} %: {share} % of 10k ids in the canary"
        );
    }
    assert!((0..10_000).all(|i| !canary(0).includes(&synthetic(i))));
}

#[test]
fn raising_the_share_only_moves_visitors_into_the_canary() {
    let (five, twenty_five) = (canary(5), canary(25));
    for i in 0..10_000 {
        let id = synthetic(i);
        if five.includes(&id) {
            assert!(twenty_five.includes(&id), "{id:?} left the canary at 25 %");
        }
    }
}

#[test]
fn a_visitor_keeps_their_arm_and_the_salt_reshuffles() {
    let c = canary(50);
    let mut other = canary(50);
    other.salt = String::from("another");
    let ids: Vec<VisitorId> = (0..1000).map(synthetic).collect();
    for id in &ids {
        assert_eq!(c.includes(id), c.includes(&id.clone()));
    }
    let moved = ids
        .iter()
        .filter(|id| c.includes(id) != other.includes(id))
        .count();
    assert!((400..600).contains(&moved), "{moved} of 1000 moved");
}

#[test]
fn routing_reasons() {
    let mut breaker = Breaker::new(settings());
    let inside = (0..)
        .map(synthetic)
        .find(|id| canary(50).includes(id))
        .unwrap();
    let outside = (0..)
        .map(synthetic)
        .find(|id| !canary(50).includes(id))
        .unwrap();
    let c = canary(50);
    let why = |canary: Option<&Canary>, visitor: Option<&VisitorId>, b: &mut Breaker| {
        let (ticket, why) = route(canary, visitor, b, 0);
        (ticket.arm, why)
    };
    assert_eq!(
        why(None, Some(&inside), &mut breaker),
        (Arm::Stable, Why::NoCanary)
    );
    assert_eq!(
        why(Some(&canary(0)), Some(&inside), &mut breaker),
        (Arm::Stable, Why::NoCanary)
    );
    let mut killed = c.clone();
    killed.killed = true;
    assert_eq!(
        why(Some(&killed), Some(&inside), &mut breaker),
        (Arm::Stable, Why::Killed)
    );
    assert_eq!(
        why(Some(&c), None, &mut breaker),
        (Arm::Stable, Why::NoVisitor)
    );
    assert_eq!(
        why(Some(&c), Some(&outside), &mut breaker),
        (Arm::Stable, Why::Outside)
    );
    assert_eq!(
        why(Some(&c), Some(&inside), &mut breaker),
        (Arm::Canary, Why::Inside)
    );
    fail(&mut breaker, 10, 0);
    assert_eq!(
        why(Some(&c), Some(&inside), &mut breaker),
        (Arm::Stable, Why::BreakerOpen)
    );
    assert_eq!(
        why(Some(&c), Some(&outside), &mut breaker),
        (Arm::Stable, Why::Outside)
    );
}

/// A ticket of the breaker's current epoch, as `route` issues one, for a request that
/// then reaches the canary origin.
fn ticket(b: &mut Breaker, now: u64) -> Ticket {
    let epoch = b.admits(now).expect("admitted");
    let ticket = Ticket {
        arm: Arm::Canary,
        epoch,
    };
    b.started(ticket);
    ticket
}

/// `n` failed canary requests, admitted and answered at `at`, `at + 1`, …
fn fail(b: &mut Breaker, n: u64, at: u64) -> Option<Transition> {
    let mut last = None;
    for t in at..at + n {
        let tk = ticket(b, t);
        last = b.record(t, tk, Outcome::Failed).or(last);
    }
    last
}

fn ok(b: &mut Breaker, at: u64) -> Option<Transition> {
    let tk = ticket(b, at);
    b.record(at, tk, Outcome::Ok)
}

#[test]
fn statuses_as_outcomes() {
    for (status, outcome) in [
        (200, Outcome::Ok),
        (304, Outcome::Ok),
        (404, Outcome::Ok),
        (429, Outcome::Ok),
        (499, Outcome::Ok),
        (500, Outcome::Failed),
        (503, Outcome::Failed),
        (599, Outcome::Failed),
    ] {
        assert_eq!(Outcome::of_status(status), outcome, "{status}");
    }
}

#[test]
fn too_few_outcomes_never_open_the_breaker() {
    let mut b = Breaker::new(settings());
    for t in 0..9 {
        assert_eq!(fail(&mut b, 1, t * 10), None);
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert!(b.admits(100).is_some());
}

#[test]
fn it_opens_above_the_error_percent_and_not_at_it() {
    // 20 % of 10 is 2: two failures in ten keep it closed, a third opens it.
    let mut b = Breaker::new(settings());
    for t in 0..8 {
        ok(&mut b, t);
    }
    fail(&mut b, 1, 8);
    assert_eq!(fail(&mut b, 1, 9), None);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(
        fail(&mut b, 1, 10),
        Some(Transition::Opened {
            failed: 3,
            total: 11
        })
    );
    assert_eq!(b.state(), BreakerState::Open { until_ms: 5010 });
    assert_eq!(b.admits(5009), None);
}

#[test]
fn old_outcomes_leave_the_window() {
    let mut b = Breaker::new(settings());
    fail(&mut b, 9, 0);
    // Eleven seconds later the nine failures are out of the 10 s window.
    for i in 0..9 {
        assert_eq!(ok(&mut b, 11_000 + i), None);
    }
    assert_eq!(b.window(11_010), (0, 9));
    assert_eq!(fail(&mut b, 1, 11_100), None);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn the_window_is_sliding_not_tumbling() {
    let mut b = Breaker::new(settings());
    // Failures just before a bucket boundary and just after still count together.
    fail(&mut b, 5, 9_990);
    assert_eq!(fail(&mut b, 4, 10_010), None);
    assert!(matches!(
        fail(&mut b, 1, 10_020),
        Some(Transition::Opened { failed: 10, .. })
    ));
}

#[test]
fn half_open_lets_probes_through_a_few_at_a_time_and_closes_after_them() {
    let mut b = Breaker::new(settings());
    fail(&mut b, 10, 0);
    let open_until = 9 + 5_000;
    assert_eq!(b.admits(open_until - 1), None);
    assert_eq!(b.take_transition(), None);
    // PROBES tickets at once, then no more until they answer.
    let probes: Vec<Ticket> = (0..PROBES).map(|_| ticket(&mut b, open_until)).collect();
    assert_eq!(b.take_transition(), Some(Transition::HalfOpened));
    assert_eq!(b.take_transition(), None);
    assert_eq!(b.admits(open_until + 1), None, "more than PROBES in flight");
    for (i, probe) in probes.iter().enumerate() {
        let closed = b.record(open_until + 10, *probe, Outcome::Ok);
        if i + 1 < PROBES as usize {
            assert_eq!(closed, None);
        } else {
            assert_eq!(closed, Some(Transition::Closed));
        }
    }
    assert_eq!(b.state(), BreakerState::Closed);
    // The window starts empty: the failures that opened it count no more.
    assert_eq!(b.window(open_until + 10), (0, 0));
    assert!(b.admits(open_until + 11).is_some());
}

#[test]
fn cache_hits_take_no_probe() {
    let mut b = Breaker::new(settings());
    fail(&mut b, 10, 0);
    // Twenty canary requests routed while half-open, all answered from the cache: none
    // reached the origin, so the probes are all still there.
    for _ in 0..20 {
        assert!(b.admits(5_009).is_some());
    }
    let probes: Vec<Ticket> = (0..PROBES).map(|_| ticket(&mut b, 5_010)).collect();
    assert_eq!(b.admits(5_011), None);
    for probe in probes {
        b.record(5_012, probe, Outcome::Ok);
    }
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn probes_that_never_answer_are_written_off_after_a_cool_down() {
    let mut b = Breaker::new(settings());
    fail(&mut b, 10, 0);
    let half_open = 5_009;
    for _ in 0..PROBES {
        ticket(&mut b, half_open);
    }
    assert_eq!(b.admits(half_open + 4_999), None);
    assert!(b.admits(half_open + 5_000).is_some(), "stuck half-open");
}

#[test]
fn a_failed_probe_opens_it_again_for_a_full_cool_down() {
    let mut b = Breaker::new(settings());
    fail(&mut b, 10, 0);
    let first = ticket(&mut b, 6_000);
    let second = ticket(&mut b, 6_000);
    b.record(6_001, first, Outcome::Ok);
    assert_eq!(
        b.record(6_002, second, Outcome::Failed),
        Some(Transition::Reopened)
    );
    assert_eq!(b.state(), BreakerState::Open { until_ms: 11_002 });
    assert_eq!(b.admits(11_001), None);
    assert!(b.admits(11_002).is_some());
}

#[test]
fn outcomes_of_requests_sent_before_a_change_of_state_change_nothing() {
    let mut b = Breaker::new(settings());
    // Nine requests admitted while closed are still in flight when the tenth failure
    // of other requests opens the breaker.
    let slow: Vec<Ticket> = (0..9).map(|t| ticket(&mut b, t)).collect();
    fail(&mut b, 10, 0);
    let state = b.state();
    for (t, tk) in slow.iter().enumerate() {
        assert_eq!(b.record(100 + t as u64, *tk, Outcome::Ok), None);
    }
    assert_eq!(b.state(), state);
    // … and after the cool-down, a late failure from before does not reopen it.
    let probe = ticket(&mut b, 6_000);
    assert_eq!(b.record(6_001, slow[0], Outcome::Failed), None);
    assert!(matches!(b.state(), BreakerState::HalfOpen { .. }));
    assert_eq!(b.record(6_002, probe, Outcome::Ok), None);
    // A stable ticket never counts.
    assert_eq!(b.record(6_003, Ticket::STABLE, Outcome::Failed), None);
    assert!(matches!(b.state(), BreakerState::HalfOpen { .. }));
}

#[test]
fn counts_saturate_instead_of_overflowing() {
    let mut b = Breaker::new(BreakerSettings {
        min_requests: u32::MAX,
        ..settings()
    });
    fail(&mut b, 1000, 5);
    assert_eq!(b.window(1004), (1000, 1000));
    b.buckets = [Bucket {
        slice: 0,
        total: u32::MAX,
        failed: u32::MAX,
    }; BUCKETS];
    assert_eq!(b.window(0), (u32::MAX, u32::MAX));
}
