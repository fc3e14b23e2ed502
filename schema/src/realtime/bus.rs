//! The bus: local delivery plus, when Redis is configured, delivery to every other node.

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use super::redis_link::RedisLink;
use super::signal::{DocSignal, ProjectSignal, RunSignal, Signal};
use super::topics::Topics;

/// How many signals a slow subscriber of one project may fall behind before it is told it
/// lagged (it then resynchronises instead of holding unbounded memory).
const PROJECT_CHANNEL_CAPACITY: usize = 1024;
/// Document updates from other nodes waiting for the document hub.
const REMOTE_DOC_QUEUE: usize = 4096;

/// What the document hub learns from other nodes.
#[derive(Debug)]
pub enum RemoteDoc {
    Update(DocSignal),
    /// The link to the other nodes was down for a while: whatever is loaded may have
    /// missed updates and must catch up from the database.
    Resync,
}

/// A signal as it travels between nodes.
#[derive(Serialize, Deserialize)]
pub(super) struct Envelope {
    pub origin: Uuid,
    pub signal: Signal,
}

pub struct Bus {
    node: Uuid,
    projects: Topics<ProjectSignal>,
    runs: Topics<RunSignal>,
    remote_docs: mpsc::Sender<RemoteDoc>,
    remote_docs_rx: Mutex<Option<mpsc::Receiver<RemoteDoc>>>,
    redis: Option<RedisLink>,
}

impl Bus {
    /// A bus for one process (embedded mode).
    pub fn local() -> Arc<Self> {
        Arc::new(Self::new(Uuid::new_v4(), None))
    }

    /// A bus that shares signals with every node subscribed to `channel` on the Redis server
    /// at `url`. Fails only for a malformed URL: without Redis the node starts alone and
    /// connects when Redis is back (then [`RemoteDoc::Resync`]), and so it does after any
    /// outage.
    pub async fn redis(url: &str, channel: &str) -> anyhow::Result<Arc<Self>> {
        let node = Uuid::new_v4();
        let (link, inbound) = RedisLink::connect(url, channel, node).await?;
        let bus = Arc::new(Self::new(node, Some(link)));
        tokio::spawn(deliver_inbound(Arc::downgrade(&bus), inbound));
        Ok(bus)
    }

    fn new(node: Uuid, redis: Option<RedisLink>) -> Self {
        let (remote_docs, rx) = mpsc::channel(REMOTE_DOC_QUEUE);
        Self {
            node,
            projects: Topics::new(PROJECT_CHANNEL_CAPACITY),
            runs: Topics::new(PROJECT_CHANNEL_CAPACITY),
            remote_docs,
            remote_docs_rx: Mutex::new(Some(rx)),
            redis,
        }
    }

    /// Whether signals reach other nodes: `None` in embedded mode.
    pub fn redis_connected(&self) -> Option<bool> {
        self.redis.as_ref().map(RedisLink::is_connected)
    }

    /// Project events and presence for `project`, from every node.
    pub fn subscribe_project(&self, project: Uuid) -> broadcast::Receiver<Arc<ProjectSignal>> {
        self.projects.subscribe(project)
    }

    /// Tell everybody in `project`, on this node and the others.
    pub fn publish_project(&self, project: Uuid, signal: ProjectSignal) {
        self.to_other_nodes(|| Signal::Project {
            project,
            signal: signal.clone(),
        });
        self.projects.send(project, Arc::new(signal));
    }

    /// What happens to run `run`, from every node and worker.
    pub fn subscribe_run(&self, run: Uuid) -> broadcast::Receiver<Arc<RunSignal>> {
        self.runs.subscribe(run)
    }

    /// Tell everybody following run `run`, on this node and the others.
    pub fn publish_run(&self, run: Uuid, signal: RunSignal) {
        self.to_other_nodes(|| Signal::Run {
            run,
            signal: signal.clone(),
        });
        self.runs.send(run, Arc::new(signal));
    }

    /// Tell the other nodes about an update this node appended (its own subscribers are
    /// served by the document hub directly).
    pub fn announce_doc(&self, update: DocSignal) {
        self.to_other_nodes(|| Signal::Doc(update));
    }

    /// Send to the other nodes (through Redis); `signal` is only built when there are any.
    fn to_other_nodes(&self, signal: impl FnOnce() -> Signal) {
        if let Some(redis) = &self.redis {
            redis.publish(Envelope {
                origin: self.node,
                signal: signal(),
            });
        }
    }

    /// The queue of document updates from other nodes; the document hub takes it once.
    pub fn take_remote_docs(&self) -> Option<mpsc::Receiver<RemoteDoc>> {
        self.remote_docs_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Hand what other nodes published to this node's subscribers, in the order it arrives.
async fn deliver_inbound(bus: std::sync::Weak<Bus>, mut inbound: mpsc::Receiver<Inbound>) {
    while let Some(item) = inbound.recv().await {
        let Some(bus) = bus.upgrade() else { return };
        match item {
            Inbound::Reconnected => {
                let _ = bus.remote_docs.send(RemoteDoc::Resync).await;
            }
            Inbound::Envelope(envelope) if envelope.origin == bus.node => {}
            Inbound::Envelope(envelope) => match envelope.signal {
                Signal::Doc(update) => {
                    let _ = bus.remote_docs.send(RemoteDoc::Update(update)).await;
                }
                Signal::Project { project, signal } => {
                    bus.projects.send(project, Arc::new(signal));
                }
                Signal::Run { run, signal } => bus.runs.send(run, Arc::new(signal)),
            },
        }
    }
}

/// What the Redis link hands the bus.
pub(super) enum Inbound {
    Envelope(Envelope),
    Reconnected,
}
