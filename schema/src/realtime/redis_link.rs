//! One node's two Redis connections: a publisher fed from a queue (so signals leave in the
//! order they were published) and a pub/sub listener that reconnects on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt;
use redis::AsyncCommands;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::bus::{Envelope, Inbound};

const OUTBOUND_QUEUE: usize = 16 * 1024;

pub(super) struct RedisLink {
    outbound: mpsc::Sender<Vec<u8>>,
    connected: Arc<AtomicBool>,
}

impl RedisLink {
    pub async fn connect(
        url: &str,
        channel: &str,
        node: Uuid,
    ) -> anyhow::Result<(Self, mpsc::Receiver<Inbound>)> {
        let client = redis::Client::open(url).context("REDIS_URL is not a valid Redis URL")?;
        let publisher = client
            .get_connection_manager()
            .await
            .context("cannot connect to Redis")?;
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .context("cannot connect to Redis")?;
        pubsub
            .subscribe(channel)
            .await
            .context("cannot subscribe to the Redis channel")?;
        let connected = Arc::new(AtomicBool::new(true));
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (inbound, inbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        tokio::spawn(publish_loop(publisher, channel.to_owned(), outbound_rx));
        tokio::spawn(listen_loop(
            client,
            pubsub,
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

async fn publish_loop(
    mut conn: redis::aio::ConnectionManager,
    channel: String,
    mut outbound: mpsc::Receiver<Vec<u8>>,
) {
    while let Some(bytes) = outbound.recv().await {
        let sent: redis::RedisResult<i64> = conn.publish(&channel, bytes).await;
        if let Err(error) = sent {
            tracing::warn!(%error, "Redis publish failed; other nodes will resynchronise");
        }
    }
}

async fn listen_loop(
    client: redis::Client,
    mut pubsub: redis::aio::PubSub,
    channel: String,
    node: Uuid,
    inbound: mpsc::Sender<Inbound>,
    connected: Arc<AtomicBool>,
) {
    loop {
        {
            let mut messages = pubsub.on_message();
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
        let mut delay = Duration::from_millis(100);
        pubsub = loop {
            if inbound.is_closed() {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            let Ok(mut fresh) = client.get_async_pubsub().await else {
                continue;
            };
            if fresh.subscribe(&channel).await.is_ok() {
                break fresh;
            }
        };
        connected.store(true, Ordering::Relaxed);
        tracing::info!("Redis pub/sub connection restored");
        if inbound.send(Inbound::Reconnected).await.is_err() {
            return;
        }
    }
}
