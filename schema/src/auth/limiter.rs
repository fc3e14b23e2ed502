//! Slowing down password guessing, per (login, client address): a few failures are free,
//! then every further one doubles the wait before the next try from that address, up to
//! [`MAX_WAIT`]. Counted per (login, address) so that a stranger typing wrong passwords for
//! somebody's username slows only himself: the owner, from her own address, signs in as ever
//! (guessing from many addresses meets the per-address budget of `signIn` first).
//!
//! With `REDIS_URL` the failures are counted in Redis ([`crate::shared_limits`]), so failing
//! on one node slows the same (login, address) down on every node; the map here counts only
//! what Redis could not take in time, and is consulted too (a failure counted here while
//! Redis was away still slows down).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{ApiError, ApiResult};
use crate::shared_limits::SharedLimits;

/// Failed sign-ins one (login, address) may have before each further one must wait.
pub const FREE_FAILURES: u32 = 10;
/// The longest wait: a failure this long ago is forgotten too.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Pairs tracked at once; beyond, the ones whose wait is over are forgotten first.
const MAX_TRACKED: usize = 100_000;

#[derive(Default)]
pub struct SignInLimiter {
    /// The deployment's count (with Redis); the map below when it cannot be reached.
    shared: SharedLimits,
    failures: Mutex<HashMap<(String, Option<IpAddr>), Failures>>,
}

struct Failures {
    count: u32,
    last: Instant,
    /// No try before this.
    until: Instant,
}

impl SignInLimiter {
    /// Failures counted in `shared` (Redis) when it is, else on this node.
    pub fn new(shared: SharedLimits) -> Self {
        Self {
            shared,
            failures: Mutex::default(),
        }
    }

    /// RATE_LIMITED while `login` from `ip` must wait.
    pub async fn check(&self, login: &str, ip: Option<IpAddr>) -> ApiResult<()> {
        let here = self.wait_here(login, ip);
        let shared = self
            .shared
            .sign_in_wait(login, ip)
            .await
            .unwrap_or_default();
        let wait = here.max(shared);
        if wait.is_zero() {
            return Ok(());
        }
        crate::metrics::rate_limited("signInFailures");
        Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        })
    }

    /// How long `login` from `ip` must wait by this node's own count.
    fn wait_here(&self, login: &str, ip: Option<IpAddr>) -> Duration {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        failures
            .get(&(login.to_owned(), ip))
            .map_or(Duration::ZERO, |entry| {
                entry.until.saturating_duration_since(now)
            })
    }

    /// Count a failed sign-in: in Redis, or here when Redis does not take it.
    pub async fn failed(&self, login: &str, ip: Option<IpAddr>) {
        if self
            .shared
            .sign_in_failed(login, ip, FREE_FAILURES)
            .await
            .is_none()
        {
            self.failed_here(login, ip);
        }
    }

    fn failed_here(&self, login: &str, ip: Option<IpAddr>) {
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

    /// Forget the failures of `login` from `ip`, here and in Redis.
    pub async fn succeeded(&self, login: &str, ip: Option<IpAddr>) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(login.to_owned(), ip));
        // Redis not hearing of it only leaves a wait that ends by itself.
        let _ = self.shared.sign_in_succeeded(login, ip).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_slow_down_one_login_from_one_address() {
        let limiter = SignInLimiter::default();
        let stranger = Some(IpAddr::from([203, 0, 113, 9]));
        let owner = Some(IpAddr::from([198, 51, 100, 1]));
        for _ in 0..FREE_FAILURES {
            assert!(limiter.check("ada", stranger).await.is_ok());
            limiter.failed("ada", stranger).await;
        }
        assert_eq!(
            limiter.check("ada", stranger).await.err().map(|e| e.code()),
            Some("RATE_LIMITED")
        );
        assert!(
            limiter.check("ada", owner).await.is_ok(),
            "the owner is not locked out"
        );
        assert!(limiter.check("bob", stranger).await.is_ok());
        limiter.succeeded("ada", stranger).await;
        assert!(limiter.check("ada", stranger).await.is_ok());
    }
}
