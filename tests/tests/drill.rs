//! The short drills of `scripts/test`: the real drill (`tests/src/bin/drill.rs`, what
//! `scripts/drill` runs) with the origin killed, its PostgreSQL stopped, and the edge's
//! R2 reads switched off, one at a time, on a stack of its own. The drill asserts its expectations itself (cached classes
//! answer with 0 5xx inside their stale-if-error windows, fresh copies return after
//! recovery, an acknowledged write survives and reaches the edge, a write during the
//! database outage is a 503 that changes nothing); this checks it ran them and passed.
//! The full drill (every fault) is run by hand: `scripts/drill`.

// A test crate: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used)]

#[test]
fn the_origin_postgres_and_r2_drills_hold() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_drill"))
        .args(["--faults", "origin,postgres,r2", "--quick"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the drill failed:\n{text}");
    for line in [
        "== fault: origin ==",
        "== fault: postgres ==",
        "== fault: r2 ==",
        "a write during the outage answered 503",
        "writes: refused during the outage: not applied",
        "drill: every expectation held (origin, postgres, r2)",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    // The faults were seen by the edge: stale copies served while they lasted.
    let stale_during: usize = text
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("during"))
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<usize>().ok())
        .sum();
    assert!(
        stale_during > 0,
        "no stale answer during either fault:\n{text}"
    );
}
