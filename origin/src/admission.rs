//! Admission control and load shedding per class. Under overload the feed is shed
//! first (its last precomputed copy is served, or a 503), then search; catalog, course,
//! video metadata and sessions keep serving, bounded by a global in-flight limit with a
//! bounded queue wait.
//!
//! The decision ([`decide`]) is pure and table-tested; [`Admission`] holds the counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Feed,
    Search,
    Catalog,
    Course,
    Video,
    Session,
}

impl Class {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Feed => "feed",
            Self::Search => "search",
            Self::Catalog => "catalog",
            Self::Course => "course",
            Self::Video => "video",
            Self::Session => "session",
        }
    }

    /// Classes shed before the global limit is reached.
    fn shed_threshold(self, limits: &Limits) -> Option<usize> {
        match self {
            Self::Feed => Some(limits.shed_feed_at),
            Self::Search => Some(limits.shed_search_at),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// In-flight requests at which feed requests are shed.
    pub shed_feed_at: usize,
    /// In-flight requests at which search requests are shed.
    pub shed_search_at: usize,
    /// Requests served at once; more wait up to `queue_timeout`, then get 503.
    pub max_in_flight: usize,
    pub queue_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            shed_feed_at: 256,
            shed_search_at: 512,
            max_in_flight: 1024,
            queue_timeout: Duration::from_millis(100),
        }
    }
}

impl Limits {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.shed_feed_at <= self.shed_search_at && self.shed_search_at <= self.max_in_flight)
        {
            return Err(String::from(
                "shedding order needs shed_feed_at <= shed_search_at <= max_in_flight",
            ));
        }
        if self.max_in_flight == 0 {
            return Err(String::from("max_in_flight must be at least 1"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Admit,
    Shed,
}

/// Whether a request of `class` is admitted while `in_flight` others are being served.
pub fn decide(class: Class, in_flight: usize, limits: &Limits) -> Decision {
    match class.shed_threshold(limits) {
        Some(at) if in_flight >= at => Decision::Shed,
        _ => Decision::Admit,
    }
}

/// A request that was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shed {
    pub class: Class,
}

pub struct Admission {
    limits: Limits,
    in_flight: Arc<AtomicUsize>,
    permits: Arc<Semaphore>,
}

/// One unit of the in-flight count, given back on drop.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Held while a request is served.
pub struct Guard {
    _counted: Counted,
    _permit: OwnedSemaphorePermit,
}

impl Admission {
    pub fn new(limits: Limits) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_in_flight)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            limits,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub async fn enter(&self, class: Class) -> Result<Guard, Shed> {
        let shed = || {
            metrics::counter!("origin_shed_total", "class" => class.as_str()).increment(1);
            Shed { class }
        };
        if decide(class, self.in_flight(), &self.limits) == Decision::Shed {
            return Err(shed());
        }
        // Counted from here; the counter is released by whoever holds `counted` when it
        // drops — including a cancelled request dropped during the queue wait below.
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let counted = Counted(self.in_flight.clone());
        let permit = match (
            class.shed_threshold(&self.limits),
            self.permits.clone().try_acquire_owned(),
        ) {
            (_, Ok(permit)) => Some(permit),
            // Sheddable classes never queue.
            (Some(_), Err(_)) => None,
            // The core waits, boundedly (the timer is only armed on this slow path).
            (None, Err(_)) => tokio::time::timeout(
                self.limits.queue_timeout,
                self.permits.clone().acquire_owned(),
            )
            .await
            .ok()
            .and_then(Result::ok),
        };
        match permit {
            Some(permit) => Ok(Guard {
                _counted: counted,
                _permit: permit,
            }),
            None => Err(shed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            shed_feed_at: 2,
            shed_search_at: 4,
            max_in_flight: 6,
            queue_timeout: Duration::from_millis(20),
        }
    }

    #[test]
    fn feed_is_shed_first_then_search_and_the_core_never_by_threshold() {
        use Decision::*;
        let table = [
            (0, [Admit, Admit, Admit, Admit, Admit, Admit]),
            (2, [Shed, Admit, Admit, Admit, Admit, Admit]),
            (4, [Shed, Shed, Admit, Admit, Admit, Admit]),
            (100, [Shed, Shed, Admit, Admit, Admit, Admit]),
        ];
        let classes = [
            Class::Feed,
            Class::Search,
            Class::Catalog,
            Class::Course,
            Class::Video,
            Class::Session,
        ];
        for (in_flight, want) in table {
            for (class, want) in classes.iter().zip(want) {
                assert_eq!(
                    decide(*class, in_flight, &limits()),
                    want,
                    "{class:?} at {in_flight}"
                );
            }
        }
    }

    #[tokio::test]
    async fn the_core_waits_a_bounded_time_for_a_slot() {
        let admission = Admission::new(limits());
        let mut held = Vec::new();
        for _ in 0..6 {
            held.push(admission.enter(Class::Catalog).await.unwrap());
        }
        assert_eq!(admission.in_flight(), 6);
        assert!(admission.enter(Class::Course).await.is_err());
        assert!(admission.enter(Class::Feed).await.is_err());
        held.pop();
        assert!(admission.enter(Class::Video).await.is_ok());
        drop(held);
        assert_eq!(admission.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_request_cancelled_while_queued_gives_its_count_back() {
        let admission = Admission::new(Limits {
            queue_timeout: Duration::from_secs(10),
            ..limits()
        });
        let held: Vec<_> =
            futures_util::future::join_all((0..6).map(|_| admission.enter(Class::Video)))
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
        let queued = admission.enter(Class::Course);
        // Dropped mid-wait, as hyper drops a handler when the client goes away.
        let _ = tokio::time::timeout(Duration::from_millis(20), queued).await;
        assert_eq!(admission.in_flight(), 6);
        drop(held);
        assert_eq!(admission.in_flight(), 0);
    }

    #[test]
    fn limits_must_keep_the_order() {
        assert!(Limits::default().validate().is_ok());
        let mut bad = limits();
        bad.shed_feed_at = 5;
        assert!(bad.validate().is_err());
    }
}
