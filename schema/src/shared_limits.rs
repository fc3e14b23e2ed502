//! The operation budgets ([`crate::budgets`]) and the sign-in slowdown
//! ([`crate::auth::limiter`]) kept in Redis, so that the API nodes of one deployment spend
//! one budget together instead of each its own.
//!
//! Keys live under `<REDIS_CHANNEL>:limit:` and each expires once it no longer matters (a
//! budget when it is full again, a failure count [`MAX_WAIT`] after its last failure), so
//! nothing grows forever. Every check is one round trip, atomic per key: a Lua script run
//! with `EVALSHA` (through [`redis::Script`], which loads it on `NOSCRIPT`), timed by the
//! Redis server's clock so the nodes' clocks need not agree.
//!
//! Redis must never make a request fail or hang: a call that errs or takes longer than the
//! node's timeout (`RATE_LIMIT_REDIS_TIMEOUT_MS`, 100 ms by default) answers `None`, the
//! caller then decides with its node-local limiter, and for [`RETRY_AFTER`] no call goes to
//! Redis at all (so an outage costs one timeout a second, not one per request). Each such
//! decision is counted in `codecrafter_rate_limit_redis_fallbacks_total`, and logged at
//! `warn` at most every [`WARN_EVERY`].
//!
//! The GCRA script is written here rather than taken from a crate: the crates that do it
//! (`redis-rate` on redis 0.29, requiring burst ≥ rate and taking a `redis::Client` of its
//! own; `throttle-kit`, `tower-rate-limit-redis` with connections or tower layers of their
//! own) are young, single-maintainer and not on redis 1.x with a shared
//! `ConnectionManager`, while the algorithm is the classic twenty lines (as `redis-cell` and
//! rwz/redis-gcra do it) and is tested here against the same budgets `governor` keeps.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

use crate::auth::limiter::MAX_WAIT;

/// After Redis failed a call, this node decides alone for this long before asking again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// At most one warning about deciding alone per this long.
pub const WARN_EVERY: Duration = Duration::from_secs(30);

/// One cell of a GCRA budget, in microseconds of the Redis server's clock.
///
/// KEYS[1]: the budget; it holds the theoretical arrival time (TAT), when the budget is full
/// again, and expires then. ARGV[1]: the emission interval (µs between cells at the
/// sustained rate, ≥ 1); ARGV[2]: the burst (cells allowed at once, ≥ 1).
/// Returns 0 when the cell was allowed (and spent), else the µs until it would be.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
local allowed_at = next_tat - burst * interval
if allowed_at > now then
  return allowed_at - now
end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
return 0
";

/// One failed sign-in of a (login, address).
///
/// KEYS[1]: its failure count, forgotten ARGV[2] ms after the last failure; KEYS[2]: the
/// wait it is in, expiring when the wait is over. ARGV[1]: the free failures; ARGV[2]: the
/// longest wait in ms. From the ARGV[1]-th failure on, each one sets a wait of 1 s, doubled
/// per further failure, at most ARGV[2] (as [`crate::auth::limiter::SignInLimiter`] does
/// in memory). Returns the count.
const SIGN_IN_FAILED: &str = r"
local count = redis.call('INCR', KEYS[1])
local longest = tonumber(ARGV[2])
redis.call('PEXPIRE', KEYS[1], longest)
local free = tonumber(ARGV[1])
if count >= free then
  local wait = math.min(1000 * 2 ^ math.min(count - free, 20), longest)
  redis.call('SET', KEYS[2], 1, 'PX', wait)
end
return count
";

/// Where the limits of this node are counted: here alone, or in Redis with the others.
#[derive(Clone, Default)]
pub struct SharedLimits {
    redis: Option<Arc<Link>>,
}

struct Link {
    conn: ConnectionManager,
    /// `<REDIS_CHANNEL>:limit:`
    prefix: String,
    timeout: Duration,
    gcra: redis::Script,
    sign_in_failed: redis::Script,
    /// When this link was made; the instants below are milliseconds since.
    epoch: Instant,
    /// No call goes to Redis before this.
    skip_until_ms: AtomicU64,
    /// The last warning (`u64::MAX`: none yet).
    warned_at_ms: AtomicU64,
    /// Decisions taken alone, in all and since the last warning.
    fallbacks: AtomicU64,
    unwarned: AtomicU64,
}

/// Whether a budget had a cell to spare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    Allowed,
    /// Refused; the next cell is there after this long.
    Refused(Duration),
}

impl SharedLimits {
    /// Every limit counted on this node alone (embedded mode, no `REDIS_URL`).
    pub fn local() -> Self {
        Self::default()
    }

    /// Counted in Redis through `conn` (the node's own connection, which reconnects by
    /// itself), under `<channel>:limit:`; a call waits for Redis at most `timeout`.
    pub fn redis(conn: ConnectionManager, channel: &str, timeout: Duration) -> Self {
        Self {
            redis: Some(Arc::new(Link {
                conn,
                prefix: format!("{channel}:limit:"),
                timeout,
                gcra: redis::Script::new(GCRA),
                sign_in_failed: redis::Script::new(SIGN_IN_FAILED),
                epoch: Instant::now(),
                skip_until_ms: AtomicU64::new(0),
                warned_at_ms: AtomicU64::new(u64::MAX),
                fallbacks: AtomicU64::new(0),
                unwarned: AtomicU64::new(0),
            })),
        }
    }

    /// Whether the limits are shared with other nodes.
    pub fn is_shared(&self) -> bool {
        self.redis.is_some()
    }

    /// Decisions this node took alone because Redis did not answer in time.
    pub fn fallbacks(&self) -> u64 {
        self.redis
            .as_ref()
            .map_or(0, |link| link.fallbacks.load(Ordering::Relaxed))
    }

    /// Spend one cell of the budget `key` (`interval` between cells, `burst` at once).
    /// `None`: decide alone (no Redis, or it did not answer in time).
    pub async fn spend(&self, key: &str, interval: Duration, burst: u32) -> Option<Cell> {
        let link = self.redis.as_ref()?;
        let interval_us = u64::try_from(interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut conn = link.conn.clone();
        let mut invocation = link.gcra.key(format!("{}{key}", link.prefix));
        invocation.arg(interval_us).arg(burst.max(1));
        let wait_us: u64 = link.call(invocation.invoke_async(&mut conn)).await?;
        Some(match wait_us {
            0 => Cell::Allowed,
            us => Cell::Refused(Duration::from_micros(us)),
        })
    }

    /// How long `login` from `ip` must still wait before its next try (zero: none).
    /// `None`: decide alone.
    pub async fn sign_in_wait(&self, login: &str, ip: Option<IpAddr>) -> Option<Duration> {
        let link = self.redis.as_ref()?;
        let (_, wait) = link.sign_in_keys(login, ip);
        let mut conn = link.conn.clone();
        let left_ms: i64 = link
            .call(redis::cmd("PTTL").arg(wait).query_async(&mut conn))
            .await?;
        Some(Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)))
    }

    /// Count a failed sign-in of `login` from `ip`, after `free` free ones. `None`: Redis
    /// did not take it; count it alone.
    pub async fn sign_in_failed(&self, login: &str, ip: Option<IpAddr>, free: u32) -> Option<()> {
        let link = self.redis.as_ref()?;
        let (count, wait) = link.sign_in_keys(login, ip);
        let longest_ms = u64::try_from(MAX_WAIT.as_millis()).unwrap_or(u64::MAX);
        let mut conn = link.conn.clone();
        let mut invocation = link.sign_in_failed.key(count);
        invocation.key(wait).arg(free).arg(longest_ms);
        let _count: u64 = link.call(invocation.invoke_async(&mut conn)).await?;
        Some(())
    }

    /// Forget the failures of `login` from `ip` (it signed in). `None`: Redis did not hear.
    pub async fn sign_in_succeeded(&self, login: &str, ip: Option<IpAddr>) -> Option<()> {
        let link = self.redis.as_ref()?;
        let (count, wait) = link.sign_in_keys(login, ip);
        let mut conn = link.conn.clone();
        let _deleted: u64 = link
            .call(
                redis::cmd("DEL")
                    .arg(count)
                    .arg(wait)
                    .query_async(&mut conn),
            )
            .await?;
        Some(())
    }
}

impl Link {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The failure count's and the wait's keys of (`login`, `ip`). The login is hashed:
    /// fixed-length keys, and no username or email address written to Redis.
    fn sign_in_keys(&self, login: &str, ip: Option<IpAddr>) -> (String, String) {
        let digest = Sha256::digest(login.as_bytes());
        let login: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let ip = ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
        let base = format!("{}sign-in:{ip}:{login}", self.prefix);
        (format!("{base}:failures"), format!("{base}:wait"))
    }

    /// `request`'s answer, unless Redis is being skipped, errs or is slower than the
    /// timeout; then `None`, counted, and Redis is skipped for [`RETRY_AFTER`].
    async fn call<T>(&self, request: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
        if self.now_ms() < self.skip_until_ms.load(Ordering::Relaxed) {
            self.fell_back(None);
            return None;
        }
        let error = match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(answer)) => return Some(answer),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {} ms", self.timeout.as_millis()),
        };
        let retry_ms = u64::try_from(RETRY_AFTER.as_millis()).unwrap_or(u64::MAX);
        self.skip_until_ms
            .store(self.now_ms().saturating_add(retry_ms), Ordering::Relaxed);
        self.fell_back(Some(error));
        None
    }

    /// Count a decision taken alone; warn now and then, saying how many since.
    fn fell_back(&self, error: Option<String>) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        crate::metrics::rate_limit_fallback();
        let unwarned = self.unwarned.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(error) = error else { return };
        let now = self.now_ms();
        let last = self.warned_at_ms.load(Ordering::Relaxed);
        let every = u64::try_from(WARN_EVERY.as_millis()).unwrap_or(u64::MAX);
        if last != u64::MAX && now.saturating_sub(last) < every {
            return;
        }
        if self
            .warned_at_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.unwarned.store(0, Ordering::Relaxed);
            tracing::warn!(
                %error,
                decisions_alone = unwarned,
                "rate limits: Redis did not answer; this node limits on its own for now"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sign_in_keys_hide_the_login_and_are_namespaced() -> anyhow::Result<()> {
        let client = redis::Client::open("redis://127.0.0.1:1")?;
        let conn = ConnectionManager::new_lazy_with_config(
            client,
            redis::aio::ConnectionManagerConfig::new(),
        )?;
        let limits = SharedLimits::redis(conn, "deploy-a", Duration::from_millis(50));
        let link = limits
            .redis
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("link"))?;
        let (count, wait) = link.sign_in_keys("ada@example.com", Some([192, 0, 2, 1].into()));
        assert!(
            count.starts_with("deploy-a:limit:sign-in:192.0.2.1:"),
            "{count}"
        );
        assert!(!count.contains("ada"), "{count}");
        assert_eq!(
            count.strip_suffix(":failures"),
            wait.strip_suffix(":wait"),
            "one base"
        );
        Ok(())
    }

    #[tokio::test]
    async fn an_unreachable_redis_leaves_the_decision_to_the_node() -> anyhow::Result<()> {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
        let conn = ConnectionManager::new_lazy_with_config(
            client,
            redis::aio::ConnectionManagerConfig::new(),
        )?;
        let limits = SharedLimits::redis(conn, "unit-test", Duration::from_millis(100));
        let start = Instant::now();
        let cell = limits.spend("x", Duration::from_secs(1), 1).await;
        assert_eq!(cell, None);
        // Skipped at once while Redis is known to be away.
        assert_eq!(limits.sign_in_wait("ada", None).await, None);
        assert!(start.elapsed() < Duration::from_millis(500));
        assert_eq!(limits.fallbacks(), 2);
        assert_eq!(
            SharedLimits::local()
                .spend("x", Duration::from_secs(1), 1)
                .await,
            None
        );
        Ok(())
    }
}
