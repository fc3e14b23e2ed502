//! Slowing down password guessing: failed sign-ins are counted per login, per node.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{ApiError, ApiResult};

/// Failed sign-ins a login may have in one window before it must wait for the window's end.
pub const MAX_FAILURES: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Logins tracked at once; beyond, finished windows are forgotten first.
const MAX_TRACKED: usize = 100_000;

#[derive(Default)]
pub struct SignInLimiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl SignInLimiter {
    /// RATE_LIMITED while `login` has used up its failures in the current window.
    pub fn check(&self, login: &str) -> ApiResult<()> {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        match failures.get(login) {
            Some((count, since)) if *count >= MAX_FAILURES && since.elapsed() < WINDOW => {
                let wait = WINDOW.saturating_sub(since.elapsed()).as_secs().max(1);
                Err(ApiError::RateLimited {
                    retry_after_secs: wait,
                })
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, login: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, (_, since)| since.elapsed() < WINDOW);
        }
        let entry = failures
            .entry(login.to_owned())
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    pub fn succeeded(&self, login: &str) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(login);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lock_a_login_until_the_window_ends() {
        let limiter = SignInLimiter::default();
        for _ in 0..MAX_FAILURES {
            assert!(limiter.check("ada").is_ok());
            limiter.failed("ada");
        }
        assert_eq!(
            limiter.check("ada").err().map(|e| e.code()),
            Some("RATE_LIMITED")
        );
        assert!(limiter.check("bob").is_ok());
        limiter.succeeded("ada");
        assert!(limiter.check("ada").is_ok());
    }
}
