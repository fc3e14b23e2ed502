//! The bus: local delivery plus, when Redis is configured, delivery to every other node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::redis_link::RedisLink;
use crate::signal::{DocSignal, ProjectEvent, ProjectSignal, RunSignal, Signal};
use crate::topics::Topics;
use crate::wire::{Channels, Envelope, Inbound, Interest};

/// How many signals a slow subscriber of one project may fall behind before it is told it
/// lagged (it then resynchronises instead of holding unbounded memory).
const PROJECT_CHANNEL_CAPACITY: usize = 1024;
/// The same for a project's events alone (no presence), which subscriptions watch for a loss
/// of access: a watcher that lags checks its access again, so a short queue does. (A tokio
/// broadcast channel allocates all its slots at once, 32 bytes each, and a node holds one per
/// project somebody follows: one of these per subscribed document, not one of the above.)
const ACCESS_CHANNEL_CAPACITY: usize = 64;
/// Document updates from other nodes waiting for the document hub.
const REMOTE_DOC_QUEUE: usize = 4096;
/// The longest an edit's answer waits for Redis to take its update (a Redis that stopped
/// answering is the head check's to make up for, not the writer's to wait on).
const PUBLISH_WAIT: Duration = Duration::from_secs(1);

/// What the document hub learns from other nodes.
#[derive(Debug)]
pub enum RemoteDoc {
    Update(DocSignal),
    /// The link to the other nodes was down for a while: whatever is loaded may have
    /// missed updates and must catch up from the database.
    Resync,
}

pub struct Bus {
    node: Uuid,
    projects: Topics<ProjectSignal>,
    /// The `ProjectSignal::Event`s of `projects`, for [`Bus::subscribe_project_events`].
    events: Topics<ProjectSignal>,
    runs: Topics<RunSignal>,
    remote_docs: mpsc::Sender<RemoteDoc>,
    remote_docs_rx: Mutex<Option<mpsc::Receiver<RemoteDoc>>>,
    redis: Option<RedisLink>,
    interest: Interest,
    head_check: Option<Duration>,
    /// Moves whenever a project's memberships or visibility may have changed, on this node
    /// or another, and when the link to the other nodes comes back (what it missed is
    /// unknown): see [`Bus::access_epoch`].
    access_epoch: AtomicU64,
    /// The Redis link's loops and the delivery of what they hear, stopped and awaited by
    /// [`Bus::shutdown`].
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// An update on its way to the other nodes; [`Announced::sent`] waits until Redis has it.
#[must_use = "an edit is answered once its update has left for the other nodes"]
pub struct Announced(Option<oneshot::Receiver<bool>>);

impl Announced {
    /// Wait until Redis has taken the update (and so has handed it to every node listening),
    /// at most [`PUBLISH_WAIT`]; at once when there are no other nodes or Redis is away.
    pub async fn sent(self) {
        if let Some(confirmed) = self.0 {
            let _ = tokio::time::timeout(PUBLISH_WAIT, confirmed).await;
        }
    }
}

impl Bus {
    /// A bus for one process (embedded mode).
    pub fn local() -> Arc<Self> {
        Arc::new(Self::new(Uuid::new_v4(), None, Interest::Everything))
    }

    /// An API node's bus: it shares every signal with the nodes of the deployment named
    /// `channel` (see [`Channels`]) on the Redis server at `url`. Fails only for a malformed
    /// URL: without Redis the node starts alone and connects when Redis is back (then
    /// [`RemoteDoc::Resync`]), and so it does after any outage. `head_check` is how often the
    /// document hub compares its documents with the database, for what Redis never delivered
    /// (`None`: never).
    pub async fn redis(
        url: &str,
        channel: &str,
        head_check: Option<Duration>,
    ) -> anyhow::Result<Arc<Self>> {
        Self::connect(url, channel, Interest::Everything, head_check).await
    }

    /// A `codecrafter worker`'s bus: it publishes what its runs do and hears only what is
    /// asked of runs (cancels), never an edit, presence or project event.
    pub async fn redis_for_runs(url: &str, channel: &str) -> anyhow::Result<Arc<Self>> {
        Self::connect(url, channel, Interest::RunControl, None).await
    }

    async fn connect(
        url: &str,
        channel: &str,
        interest: Interest,
        head_check: Option<Duration>,
    ) -> anyhow::Result<Arc<Self>> {
        let node = Uuid::new_v4();
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let (link, inbound) = RedisLink::connect(
            url,
            Channels::new(channel),
            interest,
            node,
            &tasks,
            stop.clone(),
        )
        .await?;
        let mut bus = Self::new(node, Some(link), interest);
        bus.head_check = head_check;
        bus.tasks = tasks;
        bus.stop = stop;
        let bus = Arc::new(bus);
        let delivering = deliver_inbound(Arc::downgrade(&bus), inbound);
        let stopped = bus.stop.clone();
        bus.tasks.spawn(async move {
            tokio::select! {
                () = stopped.cancelled() => {}
                () = delivering => {}
            }
        });
        Ok(bus)
    }

    fn new(node: Uuid, redis: Option<RedisLink>, interest: Interest) -> Self {
        let (remote_docs, rx) = mpsc::channel(REMOTE_DOC_QUEUE);
        Self {
            node,
            projects: Topics::new(PROJECT_CHANNEL_CAPACITY),
            events: Topics::new(ACCESS_CHANNEL_CAPACITY),
            runs: Topics::new(PROJECT_CHANNEL_CAPACITY),
            remote_docs,
            remote_docs_rx: Mutex::new(Some(rx)),
            redis,
            interest,
            head_check: None,
            access_epoch: AtomicU64::new(0),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        }
    }

    /// Stop the Redis link (sending what is queued for the other nodes first) and wait for
    /// its tasks. Nothing reaches other nodes afterwards.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// How often documents followed here are compared with the database (multi-node only).
    pub fn head_check(&self) -> Option<Duration> {
        self.head_check
    }

    /// Whether signals reach other nodes: `None` in embedded mode.
    pub fn redis_connected(&self) -> Option<bool> {
        self.redis.as_ref().map(RedisLink::is_connected)
    }

    /// Project events and presence for `project`, from every node.
    pub fn subscribe_project(&self, project: Uuid) -> broadcast::Receiver<Arc<ProjectSignal>> {
        self.projects.subscribe(project)
    }

    /// `project`'s events alone (no presence), from every node, on a short queue: for
    /// watching whether a viewer loses access (a lagging watcher checks again).
    pub fn subscribe_project_events(
        &self,
        project: Uuid,
    ) -> broadcast::Receiver<Arc<ProjectSignal>> {
        self.events.subscribe(project)
    }

    /// Tell everybody in `project`, on this node and the others.
    pub fn publish_project(&self, project: Uuid, signal: ProjectSignal) {
        self.to_other_nodes(|| Signal::Project {
            project,
            signal: signal.clone(),
        });
        self.deliver_project(project, Arc::new(signal));
    }

    /// A project's signal to this node's subscribers.
    fn deliver_project(&self, project: Uuid, signal: Arc<ProjectSignal>) {
        if let ProjectSignal::Event(event) = &*signal {
            if event.changes_access() {
                self.access_changed();
            }
            self.events.send(project, signal.clone());
        }
        self.projects.send(project, signal);
    }

    /// A number that moves whenever somebody's access to some project may have changed.
    /// A permission check remembered for a while is still right only while it has not
    /// moved since just before the check was made. It counts for every project at once:
    /// memberships change rarely, edits all the time.
    pub fn access_epoch(&self) -> u64 {
        self.access_epoch.load(Ordering::Acquire)
    }

    fn access_changed(&self) {
        self.access_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Tell everybody following `project`, on every node, that `event` happened.
    pub fn announce(&self, project: Uuid, event: ProjectEvent) {
        self.publish_project(project, ProjectSignal::Event(event));
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
    /// served by the document hub directly). The edit is answered after [`Announced::sent`],
    /// so a node dying right after answering has already handed the update on.
    ///
    /// Why pub/sub confirmed before the answer, plus the hub's periodic head check, rather
    /// than Redis Streams: a node can die between its database commit and any Redis command,
    /// so a check against the database is needed either way; with it, pub/sub is enough, and
    /// Redis holds no second copy of the log to trim or replay.
    pub fn announce_doc(&self, update: DocSignal) -> Announced {
        Announced(self.send_to_other_nodes(|| Signal::Doc(update), true))
    }

    /// Send to the other nodes (through Redis); `signal` is only built when there are any.
    fn to_other_nodes(&self, signal: impl FnOnce() -> Signal) {
        let _ = self.send_to_other_nodes(signal, false);
    }

    fn send_to_other_nodes(
        &self,
        signal: impl FnOnce() -> Signal,
        confirm: bool,
    ) -> Option<oneshot::Receiver<bool>> {
        let redis = self.redis.as_ref()?;
        redis.publish(Envelope::new(self.node, signal()), confirm)
    }

    /// The queue of document updates from other nodes; the document hub takes it once.
    pub fn take_remote_docs(&self) -> Option<mpsc::Receiver<RemoteDoc>> {
        self.remote_docs_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Hand what other nodes published to this node's subscribers, in the order it arrives (the
/// Redis link has already left out what this node sent itself).
async fn deliver_inbound(bus: std::sync::Weak<Bus>, mut inbound: mpsc::Receiver<Inbound>) {
    while let Some(item) = inbound.recv().await {
        let Some(bus) = bus.upgrade() else { return };
        match item {
            // Only a node that hears documents holds any.
            Inbound::Reconnected if bus.interest == Interest::Everything => {
                // Whatever changed elsewhere meanwhile was not heard.
                bus.access_changed();
                let _ = bus.remote_docs.send(RemoteDoc::Resync).await;
            }
            Inbound::Reconnected => {}
            Inbound::Envelope(envelope) => {
                // Continues the publisher's trace, across nodes.
                let span = tracing::info_span!(
                    "redis deliver",
                    otel.kind = "consumer",
                    messaging.system = "redis"
                );
                crate::trace::continue_trace(&span, envelope.traceparent.as_deref());
                async {
                    match envelope.signal {
                        Signal::Doc(update) => {
                            let _ = bus.remote_docs.send(RemoteDoc::Update(update)).await;
                        }
                        Signal::Project { project, signal } => {
                            bus.deliver_project(project, Arc::new(signal));
                        }
                        Signal::Run { run, signal } => bus.runs.send(run, Arc::new(signal)),
                    }
                }
                .instrument(span)
                .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::PresenceSignal;

    #[tokio::test]
    async fn access_watchers_hear_a_projects_events_and_not_its_presence() {
        let bus = Bus::local();
        let project = Uuid::new_v4();
        let mut everything = bus.subscribe_project(project);
        let mut events = bus.subscribe_project_events(project);
        bus.publish_project(project, ProjectSignal::Presence(PresenceSignal::Sync));
        let joined = ProjectEvent::MemberJoined {
            user: Uuid::new_v4(),
            role: entity::project_member::ProjectRole::Editor,
        };
        bus.announce(project, joined.clone());
        assert!(matches!(
            *everything.recv().await.unwrap(),
            ProjectSignal::Presence(PresenceSignal::Sync)
        ));
        assert!(
            matches!(&*everything.recv().await.unwrap(), ProjectSignal::Event(e) if *e == joined)
        );
        assert!(matches!(&*events.recv().await.unwrap(), ProjectSignal::Event(e) if *e == joined));
        assert!(
            events.try_recv().is_err(),
            "presence reached an access watcher"
        );
    }
}
