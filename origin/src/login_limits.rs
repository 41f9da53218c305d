//! What a login may cost, bounded before any password is hashed. A login flood must not
//! take the origin down: each login is argon2id (tens of ms of CPU, ~19 MiB), so logins
//! get a budget of their own, apart from the global admission pool the read APIs use:
//!
//! * per client IP and per account, a GCRA rate limit (governor): a refused login is a
//!   429 with the `Retry-After` the limiter computes;
//! * a few argon2 checks at once (`Sessions`), and a login waits for one only a short
//!   deadline, then gets a 429 with `Retry-After` instead of queueing without end.
//!
//! Neither holds an admission slot while it waits, so catalog, course and video reads
//! keep their capacity whatever the login rate (`scripts/bench-origin --login-flood`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Login limits, from the origin's config (`LOGIN_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSettings {
    /// Logins per minute from one client IP (and the burst allowed at once).
    pub per_ip_per_minute: u32,
    /// Logins per minute for one account (email), whatever the IP.
    pub per_account_per_minute: u32,
    /// Longest a login waits for an argon2 slot before a 429.
    pub hash_wait: Duration,
    /// Argon2 checks at once.
    pub concurrent_hashes: usize,
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            per_ip_per_minute: 30,
            per_account_per_minute: 10,
            hash_wait: Duration::from_millis(250),
            concurrent_hashes: 4,
        }
    }
}

/// Why a login was refused before its password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginRefused {
    #[error("too many logins from this address; retry in {retry_after_secs} s")]
    Ip { retry_after_secs: u64 },
    #[error("too many logins for this account; retry in {retry_after_secs} s")]
    Account { retry_after_secs: u64 },
    #[error("every password check is busy; retry in {retry_after_secs} s")]
    Busy { retry_after_secs: u64 },
}

impl LoginRefused {
    pub fn retry_after_secs(self) -> u64 {
        match self {
            Self::Ip { retry_after_secs }
            | Self::Account { retry_after_secs }
            | Self::Busy { retry_after_secs } => retry_after_secs,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ip { .. } => "ip",
            Self::Account { .. } => "account",
            Self::Busy { .. } => "busy",
        }
    }
}

/// Keys kept by each limiter before idle ones are dropped.
const MAX_TRACKED_KEYS: usize = 100_000;

pub struct LoginLimits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_account: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    /// When idle keys were last dropped (ms since start): at most once every 10 s, so a
    /// flood of new keys does not make every login scan the whole map.
    last_sweep_ms: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
}

impl LoginLimits {
    pub fn new(settings: &LoginSettings) -> Self {
        Self {
            per_ip: RateLimiter::keyed(per_minute(settings.per_ip_per_minute)),
            per_account: RateLimiter::keyed(per_minute(settings.per_account_per_minute)),
            clock: DefaultClock::default(),
            last_sweep_ms: std::sync::atomic::AtomicU64::new(0),
            started: std::time::Instant::now(),
        }
    }

    /// Drops idle keys when the maps have grown past [`MAX_TRACKED_KEYS`], at most
    /// every 10 s.
    fn sweep(&self) {
        use std::sync::atomic::Ordering;
        if self.per_ip.len() + self.per_account.len() <= MAX_TRACKED_KEYS {
            return;
        }
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 10_000
            || self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.per_ip.retain_recent();
        self.per_account.retain_recent();
    }

    /// Takes one login from the IP's and the account's allowance, or says when to retry.
    /// The account is checked only once the IP passes, so one address cannot spend
    /// another user's allowance faster than its own.
    pub fn check(&self, ip: Option<IpAddr>, account: &str) -> Result<(), LoginRefused> {
        let wait = |not_until: governor::NotUntil<_>| {
            not_until.wait_time_from(self.clock.now()).as_secs().max(1)
        };
        self.sweep();
        if let Some(ip) = ip {
            self.per_ip.check_key(&ip).map_err(|n| LoginRefused::Ip {
                retry_after_secs: wait(n),
            })?;
        }
        self.per_account
            .check_key(&account.to_owned())
            .map_err(|n| LoginRefused::Account {
                retry_after_secs: wait(n),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ip_and_each_account_has_its_own_allowance() {
        let limits = LoginLimits::new(&LoginSettings {
            per_ip_per_minute: 3,
            per_account_per_minute: 2,
            ..LoginSettings::default()
        });
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert!(limits.check(Some(a), "x@e").is_ok());
        assert!(limits.check(Some(a), "x@e").is_ok());
        // The account's burst of 2 is spent, from any address.
        let refused = limits.check(Some(b), "x@e").unwrap_err();
        assert!(matches!(refused, LoginRefused::Account { .. }));
        assert!(refused.retry_after_secs() >= 1);
        // The IP's burst of 3: one more for another account, then refused.
        assert!(limits.check(Some(a), "y@e").is_ok());
        assert!(matches!(
            limits.check(Some(a), "z@e"),
            Err(LoginRefused::Ip { .. })
        ));
        // Without a known address only the account limit applies.
        assert!(limits.check(None, "w@e").is_ok());
    }
}
