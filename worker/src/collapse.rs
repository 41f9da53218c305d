//! Request collapsing: the first request for a key that must go upstream leads; the
//! ones that arrive while it is in flight follow — they wait for it to land and read
//! what it stored, instead of going upstream themselves (N cold requests, one origin
//! fetch; N requests for one derivative, one transform). Pure bookkeeping over waiter
//! handles; `edge::cache` plugs in a one-shot channel and the isolate's single thread.

use std::collections::HashMap;

/// How many followers one flight takes; the rest go upstream on their own rather than
/// queue without bound.
pub const MAX_FOLLOWERS: usize = 10_000;

/// The flights in progress, by key, with their followers' wake-up handles.
#[derive(Debug)]
pub struct Flights<W> {
    in_flight: HashMap<String, Vec<W>>,
}

/// A request's part in a flight.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined {
    /// Go upstream, then [`Flights::land`] the key (whatever happened).
    Leader,
    /// Wait for the leader's landing, then look again.
    Follower,
    /// The flight is full: go upstream alone.
    Alone,
}

impl<W> Default for Flights<W> {
    fn default() -> Self {
        Self {
            in_flight: HashMap::new(),
        }
    }
}

impl<W> Flights<W> {
    /// Joins the flight for `key`; `waiter` is called only for a follower.
    pub fn join(&mut self, key: &str, waiter: impl FnOnce() -> W) -> Joined {
        match self.in_flight.get_mut(key) {
            None => {
                self.in_flight.insert(key.to_owned(), Vec::new());
                Joined::Leader
            }
            Some(followers) if followers.len() < MAX_FOLLOWERS => {
                followers.push(waiter());
                Joined::Follower
            }
            Some(_) => Joined::Alone,
        }
    }

    /// Ends the flight for `key`, handing back its followers to wake.
    pub fn land(&mut self, key: &str) -> Vec<W> {
        self.in_flight.remove(key).unwrap_or_default()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether a flight for `key` is in the air.
    pub fn flying(&self, key: &str) -> bool {
        self.in_flight.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_leader_per_key_and_everyone_else_follows() {
        let mut flights = Flights::default();
        assert_eq!(flights.join("a", || 1), Joined::Leader);
        assert_eq!(flights.join("a", || 2), Joined::Follower);
        assert_eq!(flights.join("b", || 3), Joined::Leader);
        assert_eq!(flights.join("a", || 4), Joined::Follower);
        assert_eq!(flights.in_flight(), 2);
        assert!(flights.flying("a") && !flights.flying("c"));
        assert_eq!(flights.land("a"), vec![2, 4]);
        assert!(!flights.flying("a"));
        assert_eq!(
            flights.land("a"),
            Vec::<i32>::new(),
            "landing twice is harmless"
        );
        // The next request after a landing leads a new flight.
        assert_eq!(flights.join("a", || 5), Joined::Leader);
        assert_eq!(flights.land("b"), Vec::<i32>::new());
        assert_eq!(flights.in_flight(), 1);
    }

    #[test]
    fn a_full_flight_sends_the_rest_alone() {
        let mut flights = Flights::default();
        assert_eq!(flights.join("k", || 0), Joined::Leader);
        for i in 0..MAX_FOLLOWERS {
            assert_eq!(flights.join("k", || i), Joined::Follower);
        }
        let mut made = false;
        assert_eq!(
            flights.join("k", || {
                made = true;
                0
            }),
            Joined::Alone
        );
        assert!(!made, "no waiter is made for a request that will not wait");
        assert_eq!(flights.land("k").len(), MAX_FOLLOWERS);
    }
}
