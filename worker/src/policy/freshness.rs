//! Whether a stored entry may be served, from its age and lifetimes. The clock is
//! passed in.

use super::headers::Lifetimes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Serve as a HIT.
    Fresh,
    /// Past its lifetime but inside stale-while-revalidate: serve now, refresh behind.
    StaleRevalidate,
    /// Past both, but inside stale-if-error: serve only if the origin fails.
    StaleIfError,
    /// Too old to serve for any reason.
    Expired,
}

pub fn evaluate(age_secs: f64, lifetimes: Lifetimes) -> Freshness {
    let edge = f64::from(lifetimes.edge);
    if age_secs < edge {
        Freshness::Fresh
    } else if age_secs < edge + f64::from(lifetimes.swr) {
        Freshness::StaleRevalidate
    } else if age_secs < edge + f64::from(lifetimes.sie) {
        Freshness::StaleIfError
    } else {
        Freshness::Expired
    }
}

/// Whether an entry of this freshness may stand in for a failed origin.
pub fn usable_on_error(age_secs: f64, lifetimes: Lifetimes) -> bool {
    age_secs < f64::from(lifetimes.edge) + f64::from(lifetimes.sie.max(lifetimes.swr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_each_other() {
        let l = Lifetimes {
            edge: 10,
            swr: 5,
            sie: 30,
        };
        let table = [
            (0.0, Freshness::Fresh),
            (9.99, Freshness::Fresh),
            (10.0, Freshness::StaleRevalidate),
            (14.9, Freshness::StaleRevalidate),
            (15.0, Freshness::StaleIfError),
            (39.9, Freshness::StaleIfError),
            (40.0, Freshness::Expired),
        ];
        for (age, want) in table {
            assert_eq!(evaluate(age, l), want, "age {age}");
        }
        assert!(usable_on_error(39.0, l));
        assert!(!usable_on_error(40.0, l));
    }

    #[test]
    fn zero_windows_go_straight_to_expired() {
        let l = Lifetimes {
            edge: 5,
            swr: 0,
            sie: 0,
        };
        assert_eq!(evaluate(5.0, l), Freshness::Expired);
    }
}
