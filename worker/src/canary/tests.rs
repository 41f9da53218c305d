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
    assert_eq!(
        route(None, Some(&inside), &mut breaker, 0),
        (Arm::Stable, Why::NoCanary)
    );
    assert_eq!(
        route(Some(&canary(0)), Some(&inside), &mut breaker, 0),
        (Arm::Stable, Why::NoCanary)
    );
    let mut killed = c.clone();
    killed.killed = true;
    assert_eq!(
        route(Some(&killed), Some(&inside), &mut breaker, 0),
        (Arm::Stable, Why::Killed)
    );
    assert_eq!(
        route(Some(&c), None, &mut breaker, 0),
        (Arm::Stable, Why::NoVisitor)
    );
    assert_eq!(
        route(Some(&c), Some(&outside), &mut breaker, 0),
        (Arm::Stable, Why::Outside)
    );
    assert_eq!(
        route(Some(&c), Some(&inside), &mut breaker, 0),
        (Arm::Canary, Why::Inside)
    );
    for t in 0..10 {
        breaker.record(t, Outcome::Failed);
    }
    assert_eq!(
        route(Some(&c), Some(&inside), &mut breaker, 20),
        (Arm::Stable, Why::BreakerOpen)
    );
    assert_eq!(
        route(Some(&c), Some(&outside), &mut breaker, 20),
        (Arm::Stable, Why::Outside)
    );
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
        assert_eq!(b.record(t * 10, Outcome::Failed), None);
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert!(b.admits(100));
}

#[test]
fn it_opens_above_the_error_percent_and_not_at_it() {
    // 20 % of 10 is 2: two failures in ten keep it closed, a third opens it.
    let mut b = Breaker::new(settings());
    for t in 0..8 {
        b.record(t, Outcome::Ok);
    }
    b.record(8, Outcome::Failed);
    assert_eq!(b.record(9, Outcome::Failed), None);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(
        b.record(10, Outcome::Failed),
        Some(Transition::Opened {
            failed: 3,
            total: 11
        })
    );
    assert_eq!(b.state(), BreakerState::Open { until_ms: 5010 });
    assert!(!b.admits(5009));
}

#[test]
fn old_outcomes_leave_the_window() {
    let mut b = Breaker::new(settings());
    for t in 0..9 {
        b.record(t, Outcome::Failed);
    }
    // Eleven seconds later the nine failures are out of the 10 s window.
    for i in 0..9 {
        assert_eq!(b.record(11_000 + i, Outcome::Ok), None);
    }
    assert_eq!(b.window(11_010), (0, 9));
    assert_eq!(b.record(11_100, Outcome::Failed), None);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn the_window_is_sliding_not_tumbling() {
    let mut b = Breaker::new(settings());
    // Failures just before a bucket boundary and just after still count together.
    for i in 0..5 {
        b.record(9_990 + i, Outcome::Failed);
    }
    for i in 0..4 {
        assert_eq!(b.record(10_010 + i, Outcome::Failed), None);
    }
    assert!(matches!(
        b.record(10_020, Outcome::Failed),
        Some(Transition::Opened { failed: 10, .. })
    ));
}

#[test]
fn it_half_opens_after_the_cool_down_and_closes_after_the_probes() {
    let mut b = Breaker::new(settings());
    for t in 0..10 {
        b.record(t, Outcome::Failed);
    }
    let open_until = 9 + 5_000;
    assert!(!b.admits(open_until - 1));
    assert_eq!(b.take_transition(), None);
    assert!(b.admits(open_until));
    assert_eq!(b.take_transition(), Some(Transition::HalfOpened));
    assert_eq!(b.take_transition(), None);
    for i in 0..PROBES - 1 {
        assert_eq!(b.record(open_until + u64::from(i), Outcome::Ok), None);
    }
    assert_eq!(
        b.record(open_until + 10, Outcome::Ok),
        Some(Transition::Closed)
    );
    assert_eq!(b.state(), BreakerState::Closed);
    // The window starts empty: the failures that opened it count no more.
    assert_eq!(b.window(open_until + 10), (0, 0));
}

#[test]
fn a_failed_probe_opens_it_again_for_a_full_cool_down() {
    let mut b = Breaker::new(settings());
    for t in 0..10 {
        b.record(t, Outcome::Failed);
    }
    assert!(b.admits(6_000));
    b.record(6_001, Outcome::Ok);
    assert_eq!(b.record(6_002, Outcome::Failed), Some(Transition::Reopened));
    assert_eq!(b.state(), BreakerState::Open { until_ms: 11_002 });
    assert!(!b.admits(11_001));
    assert!(b.admits(11_002));
}

#[test]
fn outcomes_of_requests_sent_before_it_opened_change_nothing() {
    let mut b = Breaker::new(settings());
    for t in 0..10 {
        b.record(t, Outcome::Failed);
    }
    let state = b.state();
    for t in 10..100 {
        assert_eq!(b.record(t, Outcome::Ok), None);
    }
    assert_eq!(b.state(), state);
}

#[test]
fn counts_saturate_instead_of_overflowing() {
    let mut b = Breaker::new(BreakerSettings {
        min_requests: u32::MAX,
        ..settings()
    });
    for _ in 0..1000 {
        b.record(5, Outcome::Failed);
    }
    assert_eq!(b.window(5), (1000, 1000));
}
