//! Sessions ended before their access tokens expire: signed out, signed out by a password
//! change, or revoked because a refresh token was reused.
//!
//! Access tokens are self-contained JWTs, so ending a session also puts its id (the refresh
//! family, the token's `sid`) in this set, which every request and every WebSocket operation
//! consults (see [`crate::context::ViewerExt`]). The set lives in memory on each node, so the
//! check is one hash lookup. An entry is kept as long as an access token of the session can
//! still be valid: the access-token lifetime plus the verifier's leeway.
//!
//! With Redis (production) a revocation is also written as a key
//! `<REDIS_CHANNEL>:revoked-session:<id>` that expires with it, and announced on the pub/sub
//! channel `<REDIS_CHANNEL>:revoked-sessions`. Every node listens on that channel (another node
//! refuses the token as soon as the message arrives, in milliseconds) and reads the keys each
//! time it (re)subscribes, to learn what it missed while it was starting or disconnected (then
//! within its reconnection delay, at most 5 s). A revocation that cannot reach Redis is kept
//! here and written when the connection is back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// Longest a revocation waits for Redis before it is left to the listener to send.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(2);

/// The revoked sessions this node knows of.
pub struct RevokedSessions {
    local: Arc<LocalSet>,
    /// How long a revocation matters: as long as the session's last access token can live.
    ttl: Duration,
    redis: Option<Shared>,
}

impl RevokedSessions {
    /// One node (embedded mode): the set in memory only.
    pub fn local(ttl: Duration) -> Self {
        Self {
            local: Arc::default(),
            ttl,
            redis: None,
        }
    }

    /// Shared with the other nodes of the deployment through Redis. Connects in the
    /// background (and reconnects on its own), so a node starts while Redis is down.
    pub fn shared(url: &str, channel: &str, ttl: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("REDIS_URL is not a valid Redis URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .context("cannot prepare the Redis connection")?;
        let local: Arc<LocalSet> = Arc::default();
        let link = Arc::new(Link {
            conn,
            names: Names::new(channel),
            unsent: Mutex::default(),
            connected: AtomicBool::new(false),
        });
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let listening = listen(client, link.clone(), local.clone());
        let stopped = stop.clone();
        tasks.spawn(async move {
            tokio::select! {
                () = stopped.cancelled() => {}
                () = listening => {}
            }
        });
        Ok(Self {
            local,
            ttl,
            redis: Some(Shared { link, stop, tasks }),
        })
    }

    /// The Redis connection the set writes through (with Redis), for the node's other small
    /// commands to share: it reconnects by itself and never needs Redis at start-up.
    pub fn connection(&self) -> Option<ConnectionManager> {
        self.redis.as_ref().map(|shared| shared.link.conn.clone())
    }

    /// Stop listening to the other nodes and wait until the listener has ended.
    pub async fn shutdown(&self) {
        if let Some(shared) = &self.redis {
            shared.stop.cancel();
            shared.tasks.close();
            shared.tasks.wait().await;
        }
    }

    /// Whether `session` was ended (on this node, or on another one this node heard from).
    pub fn is_revoked(&self, session: Uuid) -> bool {
        self.local.contains(session)
    }

    /// End `sessions`' access tokens: at once on this node, and on the others once they hear
    /// of it. Redis being unreachable is logged, not an error: the database revocation (the
    /// refresh tokens) already stands, and the revocation is sent when Redis is back.
    pub async fn revoke(&self, sessions: &[Uuid]) {
        if sessions.is_empty() {
            return;
        }
        let until = Instant::now() + self.ttl;
        for session in sessions {
            self.local.insert(*session, until);
        }
        let Some(shared) = &self.redis else { return };
        let link = &shared.link;
        let entries: Vec<(Uuid, Instant)> = sessions.iter().map(|s| (*s, until)).collect();
        if !link.connected.load(Ordering::Acquire) {
            // The listener sends it once connected; waiting here would only delay the answer.
            link.keep_unsent(&entries);
            return;
        }
        // Bounded: a sign-out must not hang on a Redis that stopped answering.
        let sent = tokio::time::timeout(ANNOUNCE_TIMEOUT, link.announce(&entries)).await;
        let failed = match sent {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some("timed out".to_owned()),
        };
        if let Some(error) = failed {
            tracing::warn!(%error, "cannot share session revocations through Redis; sending them when it is back");
            link.keep_unsent(&entries);
        }
    }
}

impl Drop for RevokedSessions {
    fn drop(&mut self) {
        if let Some(shared) = &self.redis {
            shared.stop.cancel();
        }
    }
}

struct Shared {
    link: Arc<Link>,
    /// Stops the listener; [`RevokedSessions::shutdown`] waits for it.
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// This node's Redis side of the set.
struct Link {
    conn: ConnectionManager,
    names: Names,
    /// Revocations Redis did not take yet, with when they stop mattering.
    unsent: Mutex<Vec<(Uuid, Instant)>>,
    /// Whether the listener is subscribed (revocations are then sent at once).
    connected: AtomicBool,
}

impl Link {
    fn keep_unsent(&self, entries: &[(Uuid, Instant)]) {
        self.unsent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(entries);
    }

    /// Write a key per session, expiring when the session's tokens do, and publish each.
    async fn announce(&self, entries: &[(Uuid, Instant)]) -> redis::RedisResult<()> {
        let now = Instant::now();
        let mut pipe = redis::pipe();
        for (session, until) in entries {
            let left = until.saturating_duration_since(now);
            let left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
            if left_ms == 0 {
                continue;
            }
            pipe.pset_ex(format!("{}{session}", self.names.key_prefix), 1, left_ms)
                .ignore()
                .publish(&self.names.channel, format!("{session} {left_ms}"))
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await
    }

    /// Send what could not be sent before; kept for later if Redis refuses again.
    async fn send_unsent(&self) -> redis::RedisResult<()> {
        let pending: Vec<(Uuid, Instant)> =
            std::mem::take(&mut *self.unsent.lock().unwrap_or_else(PoisonError::into_inner));
        if pending.is_empty() {
            return Ok(());
        }
        let sent = self.announce(&pending).await;
        if sent.is_err() {
            self.keep_unsent(&pending);
        }
        sent
    }
}

/// The deployment's Redis names, derived from its channel so deployments (and tests) sharing
/// a Redis server do not see each other's revocations.
struct Names {
    key_prefix: String,
    channel: String,
}

impl Names {
    fn new(channel: &str) -> Self {
        Self {
            key_prefix: format!("{channel}:revoked-session:"),
            channel: format!("{channel}:revoked-sessions"),
        }
    }
}

#[derive(Default)]
struct LocalSet(RwLock<Entries>);

#[derive(Default)]
struct Entries {
    until: HashMap<Uuid, Instant>,
    /// Size at which expired entries are next swept out (amortised, no timer task).
    sweep_at: usize,
}

impl LocalSet {
    fn contains(&self, session: Uuid) -> bool {
        let entries = self.0.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .until
            .get(&session)
            .is_some_and(|until| *until > Instant::now())
    }

    fn insert(&self, session: Uuid, until: Instant) {
        let mut entries = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if entries.until.len() >= entries.sweep_at {
            let now = Instant::now();
            entries.until.retain(|_, until| *until > now);
            entries.sweep_at = (entries.until.len() * 2).max(1024);
        }
        let entry = entries.until.entry(session).or_insert(until);
        *entry = (*entry).max(until);
    }
}

/// Follow the other nodes' revocations for as long as this node runs.
async fn listen(client: redis::Client, link: Arc<Link>, local: Arc<LocalSet>) {
    let mut delay = Duration::from_millis(100);
    let mut was_connected = true;
    loop {
        match subscribe(&client, &link, &local).await {
            Ok(mut pubsub) => {
                if !was_connected {
                    tracing::info!("session revocations: Redis connection restored");
                }
                was_connected = true;
                delay = Duration::from_millis(100);
                // Also picks up a revocation kept unsent in the instant before `connected`.
                let mut retry = tokio::time::interval(Duration::from_secs(1));
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        message = messages.next() => {
                            let Some(message) = message else { break };
                            let Ok(text) = message.get_payload::<String>() else {
                                continue;
                            };
                            match parse_message(&text) {
                                Some((session, left)) => local.insert(session, Instant::now() + left),
                                None => tracing::warn!("ignoring a malformed session revocation"),
                            }
                        }
                        _ = retry.tick() => {
                            if let Err(error) = link.send_unsent().await {
                                tracing::debug!(%error, "session revocations still unsent");
                            }
                        }
                    }
                }
                link.connected.store(false, Ordering::Release);
            }
            Err(error) => {
                if was_connected {
                    tracing::warn!(%error, "session revocations: no Redis connection; retrying");
                }
                was_connected = false;
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// `<session id> <milliseconds it matters for>`, as [`announce`] publishes it.
fn parse_message(text: &str) -> Option<(Uuid, Duration)> {
    let (session, ttl_ms) = text.split_once(' ')?;
    Some((
        Uuid::parse_str(session).ok()?,
        Duration::from_millis(ttl_ms.parse().ok()?),
    ))
}

/// Subscribe, send what could not be sent before, then read the keys (subscribing first,
/// so nothing published in between is missed).
async fn subscribe(
    client: &redis::Client,
    link: &Link,
    local: &LocalSet,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&link.names.channel).await?;
    link.send_unsent().await?;
    link.connected.store(true, Ordering::Release);

    let mut conn = link.conn.clone();
    let keys: Vec<String> = {
        let mut iter = conn
            .scan_match::<_, String>(format!("{}*", link.names.key_prefix))
            .await?;
        let mut keys = Vec::new();
        while let Some(key) = iter.next_item().await {
            keys.push(key?);
        }
        keys
    };
    for key in keys {
        let Some(Ok(session)) = key
            .strip_prefix(&link.names.key_prefix)
            .map(Uuid::parse_str)
        else {
            continue;
        };
        let left_ms: i64 = conn.pttl(&key).await?;
        if let Ok(left_ms) = u64::try_from(left_ms) {
            local.insert(session, Instant::now() + Duration::from_millis(left_ms));
        }
    }
    Ok(pubsub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_revoked_session_is_refused_until_its_tokens_expire() {
        let revoked = RevokedSessions::local(Duration::from_secs(900));
        let (ended, other) = (Uuid::new_v4(), Uuid::new_v4());
        revoked.revoke(&[ended]).await;
        assert!(revoked.is_revoked(ended));
        assert!(!revoked.is_revoked(other));
        let expired = Uuid::new_v4();
        revoked.local.insert(expired, Instant::now());
        assert!(!revoked.is_revoked(expired));
    }

    #[tokio::test]
    async fn an_unreachable_redis_does_not_hold_up_a_sign_out() -> anyhow::Result<()> {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let revoked = RevokedSessions::shared(
            &format!("redis://127.0.0.1:{port}"),
            "unit-test",
            Duration::from_secs(900),
        )?;
        let session = Uuid::new_v4();
        let start = Instant::now();
        revoked.revoke(&[session]).await;
        assert!(start.elapsed() < ANNOUNCE_TIMEOUT + Duration::from_millis(500));
        assert!(revoked.is_revoked(session));
        let shared = revoked
            .redis
            .as_ref()
            .map(|s| s.link.unsent.lock().map(|u| u.len()).unwrap_or(0));
        assert_eq!(shared, Some(1), "kept to send later");
        Ok(())
    }

    #[test]
    fn messages_round_trip() {
        let session = Uuid::new_v4();
        assert_eq!(
            parse_message(&format!("{session} 905000")),
            Some((session, Duration::from_millis(905_000)))
        );
        assert_eq!(parse_message("garbage"), None);
        assert_eq!(parse_message(&format!("{session} soon")), None);
    }

    #[test]
    fn expired_entries_are_swept_as_the_set_grows() {
        let set = LocalSet::default();
        let past = Instant::now();
        for _ in 0..2000 {
            set.insert(Uuid::new_v4(), past);
        }
        let len = set.0.read().map(|e| e.until.len()).unwrap_or_default();
        assert!(len < 1100, "{len}");
    }
}
