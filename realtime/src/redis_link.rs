//! One node's two Redis connections: a publisher fed from a queue (so signals leave in the
//! order they were published; what queued up meanwhile goes in one pipeline) and a pub/sub
//! listener, subscribed to the channels the node's [`Interest`] names. Neither needs Redis at start-up: both connect, and reconnect, on their own, and
//! the node works alone while Redis is away.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::wire::{Channels, Envelope, Inbound, Interest};

const OUTBOUND_QUEUE: usize = 16 * 1024;
/// Most signals sent in one pipeline.
const BATCH: usize = 256;
/// How long one attempt to reach Redis may take (a black-holed host would hang otherwise).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The counter of this link's reconnections (a family of the server's `/metrics`).
pub const REDIS_RECONNECTS: &str = "codecrafter_redis_reconnects_total";
/// The histogram of the time from another node's publish to its arrival here, by kind of
/// signal (a family of the server's `/metrics`).
pub const FANOUT_LAG: &str = "codecrafter_fanout_lag_seconds";
/// What is still queued when the link stops gets this long to reach Redis.
const LAST_PUBLISH_WAIT: Duration = Duration::from_secs(2);

/// A signal on its way out, and who waits to hear that Redis took it.
struct Outbound {
    channel: String,
    bytes: Vec<u8>,
    sent: Option<oneshot::Sender<bool>>,
    /// From `publish` until its pipeline reached Redis (or failed): the publish as its
    /// publisher sees it.
    span: tracing::Span,
}

pub(crate) struct RedisLink {
    channels: Channels,
    outbound: mpsc::Sender<Outbound>,
    /// The listener is subscribed.
    connected: Arc<AtomicBool>,
    /// The last pipeline reached Redis.
    publishing: Arc<AtomicBool>,
}

impl RedisLink {
    /// Fails only for a malformed URL. The first connection is tried here, so a node that
    /// can reach Redis starts connected; one that cannot starts alone and keeps trying.
    pub async fn connect(
        url: &str,
        channels: Channels,
        interest: Interest,
        node: Uuid,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> anyhow::Result<(Self, mpsc::Receiver<Inbound>)> {
        use redis::IntoConnectionInfo as _;
        let info = url
            .into_connection_info()
            .context("REDIS_URL is not a valid Redis URL")?;
        // Publishes are small and waited for: Nagle's algorithm would hold them back.
        let nodelay = info.tcp_settings().clone().set_nodelay(true);
        let client = redis::Client::open(info.set_tcp_settings(nodelay))
            .context("REDIS_URL is not a valid Redis URL")?;
        // Few retries per command: a publish that cannot get through fails fast, the
        // next one tries again, and the other nodes catch up from the database.
        let publisher = client
            .get_connection_manager_lazy(
                ConnectionManagerConfig::new()
                    .set_number_of_retries(1)
                    .set_connection_timeout(Some(CONNECT_TIMEOUT)),
            )
            .context("cannot set up the Redis publisher")?;
        let heard = channels.heard_by(interest);
        let first = subscribe(&client, &heard).await;
        if let Err(error) = &first {
            tracing::warn!(%error, "Redis is unreachable: this node starts alone and keeps trying");
        }
        let connected = Arc::new(AtomicBool::new(first.is_ok()));
        let publishing = Arc::new(AtomicBool::new(first.is_ok()));
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (inbound, inbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        tasks.spawn(publish_loop(
            publisher,
            outbound_rx,
            publishing.clone(),
            stop.clone(),
        ));
        let listening = listen_loop(client, first.ok(), heard, node, inbound, connected.clone());
        tasks.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = listening => {}
            }
        });
        Ok((
            Self {
                channels,
                outbound,
                connected,
                publishing,
            },
            inbound_rx,
        ))
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Queue `envelope` for the other nodes. With `confirm`, and while Redis answers, the
    /// receiver hears once Redis has taken it (`true`) or refused it (`false`); while Redis is
    /// away nobody should wait, so there is no receiver.
    pub fn publish(
        &self,
        mut envelope: Envelope,
        confirm: bool,
    ) -> Option<oneshot::Receiver<bool>> {
        let channel = self.channels.of(&envelope.signal).to_owned();
        let span = tracing::info_span!(
            "redis publish",
            otel.kind = "producer",
            messaging.system = "redis",
            messaging.destination.name = %channel,
            otel.status_code = tracing::field::Empty,
        );
        envelope.traceparent = crate::trace::traceparent(&span);
        let bytes = match serde_json::to_vec(&envelope) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(%error, "cannot encode a bus signal");
                return None;
            }
        };
        let healthy = self.is_connected() && self.publishing.load(Ordering::Relaxed);
        let (sent, confirmed) = if confirm && healthy {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        if self
            .outbound
            .try_send(Outbound {
                channel,
                bytes,
                sent,
                span,
            })
            .is_err()
        {
            // The other nodes notice the gap in document sequence numbers (or their periodic
            // head check does) and catch up from the database; events are ephemeral.
            tracing::warn!("Redis publish queue is full; dropping a signal");
            return None;
        }
        confirmed
    }
}

/// A pub/sub connection subscribed to `channels`.
async fn subscribe(
    client: &redis::Client,
    channels: &[String],
) -> anyhow::Result<redis::aio::PubSub> {
    let attempt = async {
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .context("cannot connect to Redis")?;
        pubsub
            .subscribe(channels)
            .await
            .context("cannot subscribe to the Redis channels")?;
        Ok(pubsub)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .context("Redis did not answer in time")?
}

async fn publish_loop(
    mut conn: ConnectionManager,
    mut outbound: mpsc::Receiver<Outbound>,
    publishing: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut last = false;
    loop {
        tokio::select! {
            received = outbound.recv_many(&mut batch, BATCH) => {
                if received == 0 {
                    return;
                }
            }
            () = stop.cancelled(), if !last => {
                // What is queued still goes out, once, within a bounded time.
                last = true;
                while let Ok(item) = outbound.try_recv() {
                    batch.push(item);
                }
                if batch.is_empty() {
                    return;
                }
            }
        }
        let mut pipe = redis::pipe();
        for item in &batch {
            pipe.cmd("PUBLISH")
                .arg(&item.channel)
                .arg(&item.bytes)
                .ignore();
        }
        let sending = async {
            let mut sent: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
            if sent.is_err() {
                // The manager answers the first command after an outage with the failure it
                // remembered, and reconnects meanwhile: try once more.
                sent = pipe.query_async(&mut conn).await;
            }
            sent.map_err(|error| error.to_string())
        };
        let sent = if last {
            tokio::time::timeout(LAST_PUBLISH_WAIT, sending)
                .await
                .unwrap_or_else(|_| Err("timed out while stopping".to_owned()))
        } else {
            sending.await
        };
        match &sent {
            Ok(()) => {
                if !publishing.swap(true, Ordering::Relaxed) {
                    tracing::info!("Redis publishing works again");
                }
            }
            Err(error) => {
                if publishing.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%error, "Redis publish failed; other nodes catch up from the database");
                }
            }
        }
        for item in batch.drain(..) {
            if sent.is_err() {
                item.span.record("otel.status_code", "ERROR");
            }
            if let Some(sent_tx) = item.sent {
                let _ = sent_tx.send(sent.is_ok());
            }
        }
        if last {
            return;
        }
    }
}

async fn listen_loop(
    client: redis::Client,
    mut pubsub: Option<redis::aio::PubSub>,
    channels: Vec<String>,
    node: Uuid,
    inbound: mpsc::Sender<Inbound>,
    connected: Arc<AtomicBool>,
) {
    loop {
        let mut current = match pubsub.take() {
            Some(current) => current,
            None => {
                let mut delay = Duration::from_millis(100);
                let fresh = loop {
                    if inbound.is_closed() {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                    if let Ok(fresh) = subscribe(&client, &channels).await {
                        break fresh;
                    }
                };
                connected.store(true, Ordering::Relaxed);
                metrics::counter!(REDIS_RECONNECTS).increment(1);
                tracing::info!("Redis pub/sub connection established");
                // Whatever was published while this node was not listening is in the
                // database: have every loaded document catch up.
                if inbound.send(Inbound::Reconnected).await.is_err() {
                    return;
                }
                fresh
            }
        };
        {
            let mut messages = current.on_message();
            while let Some(message) = messages.next().await {
                match serde_json::from_slice::<Envelope>(message.get_payload_bytes()) {
                    // The one place a node's own signals are left out: it served them itself.
                    Ok(envelope) if envelope.origin == node => {}
                    Ok(envelope) => {
                        if let Some(lag) = envelope.lag() {
                            metrics::histogram!(FANOUT_LAG, "kind" => envelope.kind())
                                .record(lag.as_secs_f64());
                        }
                        if inbound.send(Inbound::Envelope(envelope)).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => tracing::warn!(%error, "ignoring a malformed bus message"),
                }
            }
        }
        connected.store(false, Ordering::Relaxed);
        tracing::warn!("lost the Redis pub/sub connection; reconnecting");
    }
}
