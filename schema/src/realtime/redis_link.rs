//! One node's two Redis connections: a publisher fed from a queue (so signals leave in the
//! order they were published; what queued up meanwhile goes in one pipeline) and a pub/sub
//! listener. Neither needs Redis at start-up: both connect, and reconnect, on their own, and
//! the node works alone while Redis is away.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::bus::{Envelope, Inbound};

const OUTBOUND_QUEUE: usize = 16 * 1024;
/// Most signals sent in one pipeline.
const BATCH: usize = 256;
/// How long one attempt to reach Redis may take (a black-holed host would hang otherwise).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) struct RedisLink {
    outbound: mpsc::Sender<Vec<u8>>,
    /// The listener is subscribed.
    connected: Arc<AtomicBool>,
}

impl RedisLink {
    /// Fails only for a malformed URL. The first connection is tried here, so a node that
    /// can reach Redis starts connected; one that cannot starts alone and keeps trying.
    pub async fn connect(
        url: &str,
        channel: &str,
        node: Uuid,
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
        let first = subscribe(&client, channel).await;
        if let Err(error) = &first {
            tracing::warn!(%error, "Redis is unreachable: this node starts alone and keeps trying");
        }
        let connected = Arc::new(AtomicBool::new(first.is_ok()));
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (inbound, inbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        tokio::spawn(publish_loop(publisher, channel.to_owned(), outbound_rx));
        tokio::spawn(listen_loop(
            client,
            first.ok(),
            channel.to_owned(),
            node,
            inbound,
            connected.clone(),
        ));
        Ok((
            Self {
                outbound,
                connected,
            },
            inbound_rx,
        ))
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn publish(&self, envelope: Envelope) {
        match serde_json::to_vec(&envelope) {
            Ok(bytes) => {
                if self.outbound.try_send(bytes).is_err() {
                    // The other nodes notice the gap in document sequence numbers and catch
                    // up from the database; events are ephemeral.
                    tracing::warn!("Redis publish queue is full; dropping a signal");
                }
            }
            Err(error) => tracing::error!(%error, "cannot encode a bus signal"),
        }
    }
}

/// A pub/sub connection subscribed to `channel`.
async fn subscribe(client: &redis::Client, channel: &str) -> anyhow::Result<redis::aio::PubSub> {
    let attempt = async {
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .context("cannot connect to Redis")?;
        pubsub
            .subscribe(channel)
            .await
            .context("cannot subscribe to the Redis channel")?;
        Ok(pubsub)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .context("Redis did not answer in time")?
}

async fn publish_loop(
    mut conn: ConnectionManager,
    channel: String,
    mut outbound: mpsc::Receiver<Vec<u8>>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut failing = false;
    while outbound.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for bytes in batch.drain(..) {
            pipe.cmd("PUBLISH").arg(&channel).arg(bytes).ignore();
        }
        let mut sent: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        if sent.is_err() {
            // The manager answers the first command after an outage with the failure it
            // remembered, and reconnects meanwhile: try once more.
            sent = pipe.query_async(&mut conn).await;
        }
        match sent {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("Redis publishing works again");
            }
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "Redis publish failed; other nodes will resynchronise");
            }
            _ => {}
        }
    }
}

async fn listen_loop(
    client: redis::Client,
    mut pubsub: Option<redis::aio::PubSub>,
    channel: String,
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
                    if let Ok(fresh) = subscribe(&client, &channel).await {
                        break fresh;
                    }
                };
                connected.store(true, Ordering::Relaxed);
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
                    Ok(envelope) if envelope.origin == node => {}
                    Ok(envelope) => {
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
