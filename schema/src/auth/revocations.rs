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
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use uuid::Uuid;

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
        let names = Arc::new(Names::new(channel));
        let local: Arc<LocalSet> = Arc::default();
        let unsent: Arc<Mutex<Vec<(Uuid, Instant)>>> = Arc::default();
        let listener = tokio::spawn(listen(
            client,
            conn.clone(),
            names.clone(),
            local.clone(),
            unsent.clone(),
        ));
        Ok(Self {
            local,
            ttl,
            redis: Some(Shared {
                conn,
                names,
                unsent,
                listener: listener.abort_handle(),
            }),
        })
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
        if let Err(error) =
            announce(&mut shared.conn.clone(), &shared.names, sessions, self.ttl).await
        {
            tracing::warn!(%error, "cannot share session revocations through Redis; sending them when it is back");
            shared
                .unsent
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(sessions.iter().map(|s| (*s, until)));
        }
    }
}

impl Drop for RevokedSessions {
    fn drop(&mut self) {
        if let Some(shared) = &self.redis {
            shared.listener.abort();
        }
    }
}

struct Shared {
    conn: ConnectionManager,
    names: Arc<Names>,
    /// Revocations Redis did not take yet, with when they stop mattering.
    unsent: Arc<Mutex<Vec<(Uuid, Instant)>>>,
    listener: tokio::task::AbortHandle,
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

async fn announce(
    conn: &mut ConnectionManager,
    names: &Names,
    sessions: &[Uuid],
    ttl: Duration,
) -> redis::RedisResult<()> {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    let mut pipe = redis::pipe();
    for session in sessions {
        pipe.pset_ex(format!("{}{session}", names.key_prefix), 1, ttl_ms)
            .ignore()
            .publish(&names.channel, format!("{session} {ttl_ms}"))
            .ignore();
    }
    pipe.query_async::<()>(conn).await
}

/// Follow the other nodes' revocations for as long as this node runs.
async fn listen(
    client: redis::Client,
    mut conn: ConnectionManager,
    names: Arc<Names>,
    local: Arc<LocalSet>,
    unsent: Arc<Mutex<Vec<(Uuid, Instant)>>>,
) {
    let mut delay = Duration::from_millis(100);
    let mut was_connected = true;
    loop {
        match subscribe(&client, &mut conn, &names, &local, &unsent).await {
            Ok(mut pubsub) => {
                if !was_connected {
                    tracing::info!("session revocations: Redis connection restored");
                }
                was_connected = true;
                delay = Duration::from_millis(100);
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let Ok(text) = message.get_payload::<String>() else {
                        continue;
                    };
                    match parse_message(&text) {
                        Some((session, left)) => local.insert(session, Instant::now() + left),
                        None => tracing::warn!("ignoring a malformed session revocation"),
                    }
                }
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

/// Subscribe, then read the keys (in that order, so nothing published in between is
/// missed), and send what could not be sent before.
async fn subscribe(
    client: &redis::Client,
    conn: &mut ConnectionManager,
    names: &Names,
    local: &LocalSet,
    unsent: &Mutex<Vec<(Uuid, Instant)>>,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&names.channel).await?;

    let pending: Vec<(Uuid, Instant)> =
        std::mem::take(&mut *unsent.lock().unwrap_or_else(PoisonError::into_inner));
    let now = Instant::now();
    for (session, until) in &pending {
        let left = until.saturating_duration_since(now);
        if left.is_zero() {
            continue;
        }
        if let Err(error) = announce(conn, names, &[*session], left).await {
            unsent
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(pending.iter().copied());
            return Err(error);
        }
    }

    let keys: Vec<String> = {
        let mut iter = conn
            .scan_match::<_, String>(format!("{}*", names.key_prefix))
            .await?;
        let mut keys = Vec::new();
        while let Some(key) = iter.next_item().await {
            keys.push(key?);
        }
        keys
    };
    for key in keys {
        let Some(Ok(session)) = key.strip_prefix(&names.key_prefix).map(Uuid::parse_str) else {
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
