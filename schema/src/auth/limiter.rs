//! Slowing down password guessing, per (login, client address): a few failures are free,
//! then every further one doubles the wait before the next try from that address, up to
//! [`MAX_WAIT`]. Counted per (login, address) so that a stranger typing wrong passwords for
//! somebody's username slows only himself: the owner, from her own address, signs in as ever
//! (guessing from many addresses meets the per-address budget of `signIn` first).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{ApiError, ApiResult};

/// Failed sign-ins one (login, address) may have before each further one must wait.
pub const FREE_FAILURES: u32 = 10;
/// The longest wait: a failure this long ago is forgotten too.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Pairs tracked at once; beyond, the ones whose wait is over are forgotten first.
const MAX_TRACKED: usize = 100_000;

#[derive(Default)]
pub struct SignInLimiter {
    failures: Mutex<HashMap<(String, Option<IpAddr>), Failures>>,
}

struct Failures {
    count: u32,
    last: Instant,
    /// No try before this.
    until: Instant,
}

impl SignInLimiter {
    /// RATE_LIMITED while `login` from `ip` must wait.
    pub fn check(&self, login: &str, ip: Option<IpAddr>) -> ApiResult<()> {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match failures.get(&(login.to_owned(), ip)) {
            Some(entry) if entry.until > now => {
                crate::metrics::rate_limited("signInFailures");
                Err(ApiError::RateLimited {
                    retry_after_secs: (entry.until - now).as_secs_f64().ceil().max(1.0) as u64,
                })
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, login: &str, ip: Option<IpAddr>) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, entry| now.duration_since(entry.last) < MAX_WAIT);
        }
        let entry = failures.entry((login.to_owned(), ip)).or_insert(Failures {
            count: 0,
            last: now,
            until: now,
        });
        if now.duration_since(entry.last) >= MAX_WAIT {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
        if entry.count >= FREE_FAILURES {
            let doublings = (entry.count - FREE_FAILURES).min(20);
            entry.until = now + Duration::from_secs(1u64 << doublings).min(MAX_WAIT);
        }
    }

    pub fn succeeded(&self, login: &str, ip: Option<IpAddr>) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(login.to_owned(), ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_slow_down_one_login_from_one_address() {
        let limiter = SignInLimiter::default();
        let stranger = Some(IpAddr::from([203, 0, 113, 9]));
        let owner = Some(IpAddr::from([198, 51, 100, 1]));
        for _ in 0..FREE_FAILURES {
            assert!(limiter.check("ada", stranger).is_ok());
            limiter.failed("ada", stranger);
        }
        assert_eq!(
            limiter.check("ada", stranger).err().map(|e| e.code()),
            Some("RATE_LIMITED")
        );
        assert!(
            limiter.check("ada", owner).is_ok(),
            "the owner is not locked out"
        );
        assert!(limiter.check("bob", stranger).is_ok());
        limiter.succeeded("ada", stranger);
        assert!(limiter.check("ada", stranger).is_ok());
    }
}
