//! Request collapsing: the first request for a key that must go upstream leads; the
//! ones that arrive while it is in flight follow — they wait for *that* flight to land
//! and read what it stored, instead of going upstream themselves (N cold requests, one
//! origin fetch; N requests for one derivative, one transform). Pure bookkeeping with
//! the clock passed in; `edge::cache` polls it from the isolate's single thread.
//!
//! A flight has an id, so a follower waits for the flight it joined, not for the key to
//! be free (back-to-back flights of a key that is never stored would otherwise hold
//! followers for their whole timeout). A flight older than the caller's bound is taken
//! as abandoned (a leader whose request was cancelled never lands) and replaced.

use std::collections::HashMap;

/// How many followers one flight takes; the rest go upstream on their own rather than
/// queue without bound.
pub const MAX_FOLLOWERS: usize = 10_000;

#[derive(Debug)]
struct Flight<W> {
    id: u64,
    started_ms: f64,
    followers: Vec<W>,
}

/// The flights in progress, by key, with their followers' handles.
#[derive(Debug)]
pub struct Flights<W> {
    in_flight: HashMap<String, Flight<W>>,
    next_id: u64,
}

/// A request's part in a flight.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined {
    /// Go upstream, then [`Flights::land`] this flight (whatever happened).
    Leader(u64),
    /// Wait until this flight is no longer [`Flights::flying`], then look again.
    Follower(u64),
    /// The flight is full: go upstream alone.
    Alone,
}

impl<W> Default for Flights<W> {
    fn default() -> Self {
        Self {
            in_flight: HashMap::new(),
            next_id: 0,
        }
    }
}

impl<W> Flights<W> {
    /// Joins the flight for `key` at `now_ms`; a flight older than `abandoned_after_ms`
    /// is replaced by a new one this request leads. `waiter` is called only for a
    /// follower.
    pub fn join(
        &mut self,
        key: &str,
        now_ms: f64,
        abandoned_after_ms: f64,
        waiter: impl FnOnce() -> W,
    ) -> Joined {
        if let Some(flight) = self.in_flight.get_mut(key)
            && now_ms - flight.started_ms < abandoned_after_ms
        {
            if flight.followers.len() >= MAX_FOLLOWERS {
                return Joined::Alone;
            }
            flight.followers.push(waiter());
            return Joined::Follower(flight.id);
        }
        self.next_id = self.next_id.wrapping_add(1);
        self.in_flight.insert(
            key.to_owned(),
            Flight {
                id: self.next_id,
                started_ms: now_ms,
                followers: Vec::new(),
            },
        );
        Joined::Leader(self.next_id)
    }

    /// Ends flight `id` of `key`, handing back its followers; a flight that was
    /// already replaced is left alone.
    pub fn land(&mut self, key: &str, id: u64) -> Vec<W> {
        match self.in_flight.get(key) {
            Some(flight) if flight.id == id => self
                .in_flight
                .remove(key)
                .map(|f| f.followers)
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Whether flight `id` of `key` is still in the air.
    pub fn flying(&self, key: &str, id: u64) -> bool {
        self.in_flight.get(key).is_some_and(|f| f.id == id)
    }

    /// Whether any flight for `key` is in the air.
    pub fn busy(&self, key: &str) -> bool {
        self.in_flight.contains_key(key)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: f64 = 30_000.0;

    #[test]
    fn one_leader_per_key_and_everyone_else_follows_that_flight() {
        let mut flights = Flights::default();
        let Joined::Leader(a) = flights.join("a", 0.0, LONG, || 1) else {
            panic!("the first request leads")
        };
        assert_eq!(flights.join("a", 1.0, LONG, || 2), Joined::Follower(a));
        let Joined::Leader(b) = flights.join("b", 1.0, LONG, || 3) else {
            panic!("another key, another flight")
        };
        assert_eq!(flights.join("a", 2.0, LONG, || 4), Joined::Follower(a));
        assert_eq!(flights.in_flight(), 2);
        assert!(flights.flying("a", a) && flights.busy("a") && !flights.busy("c"));
        assert_eq!(flights.land("a", a), vec![2, 4]);
        assert!(!flights.flying("a", a));
        assert_eq!(
            flights.land("a", a),
            Vec::<i32>::new(),
            "landing twice is harmless"
        );
        // The next request after a landing leads a new flight, which the old
        // followers do not wait for.
        let Joined::Leader(a2) = flights.join("a", 3.0, LONG, || 5) else {
            panic!("a new flight")
        };
        assert_ne!(a, a2);
        assert!(!flights.flying("a", a) && flights.flying("a", a2));
        assert_eq!(flights.land("b", b), Vec::<i32>::new());
        assert_eq!(flights.in_flight(), 1);
    }

    #[test]
    fn an_abandoned_flight_is_replaced_and_its_late_landing_ignored() {
        let mut flights = Flights::default();
        let Joined::Leader(old) = flights.join("k", 0.0, 1_000.0, || 0) else {
            panic!()
        };
        assert_eq!(
            flights.join("k", 999.0, 1_000.0, || 1),
            Joined::Follower(old)
        );
        let Joined::Leader(new) = flights.join("k", 1_000.0, 1_000.0, || 2) else {
            panic!("past the bound, the flight is taken as abandoned")
        };
        assert!(!flights.flying("k", old), "its followers stop waiting");
        assert_eq!(flights.land("k", old), Vec::<i32>::new(), "a late landing");
        assert!(flights.flying("k", new));
    }

    #[test]
    fn a_full_flight_sends_the_rest_alone() {
        let mut flights = Flights::default();
        let Joined::Leader(id) = flights.join("k", 0.0, LONG, || 0) else {
            panic!()
        };
        for i in 0..MAX_FOLLOWERS {
            assert_eq!(flights.join("k", 0.0, LONG, || i), Joined::Follower(id));
        }
        let mut made = false;
        assert_eq!(
            flights.join("k", 0.0, LONG, || {
                made = true;
                0
            }),
            Joined::Alone
        );
        assert!(!made, "no waiter is made for a request that will not wait");
        assert_eq!(flights.land("k", id).len(), MAX_FOLLOWERS);
    }
}
