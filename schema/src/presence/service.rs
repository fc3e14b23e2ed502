//! Who is online in a project, and where.
//!
//! Presence is ephemeral and never stored. `updatePresence` publishes the client's place on
//! the bus (so it reaches every node); each node keeps, for every project somebody on the node
//! follows, a replica of who is present, fed from the bus by one task per project. An entry
//! with no update for the TTL is dropped, and so are a member's entries when they leave or are
//! removed. Subscribers watch the replica and get the whole list each time it changes.
//!
//! A new replica asks the other nodes who is present (`PresenceSignal::Sync`); each node that
//! holds a replica of the project answers with its entries, as updates.
//!
//! Limits of this design, on purpose:
//! - Entries learnt from a sync start their TTL afresh on the new node, so a client that went
//!   silent just before may linger there up to one TTL longer.
//! - A replica whose task falls more than the bus's channel capacity behind misses signals;
//!   a missed update is repaired by the next heartbeat, a missed leave by the TTL.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use sea_orm::DatabaseConnection;

use crate::context::AuthUser;
use crate::documents::check_path;
use crate::error::{ApiError, ApiResult};
use crate::projects::access::{self, Live};
use crate::realtime::{Bus, PresenceSignal, PresenceState, ProjectEvent, ProjectSignal};
use crate::validation;

/// A replica keeps at most this many clients of one user…
const MAX_CLIENTS_PER_USER: usize = 32;
/// …and this many clients in all; further clients are ignored until some leave.
const MAX_CLIENTS_PER_PROJECT: usize = 1024;

/// Everyone present in a project, sorted by user then client id.
pub type Snapshot = Arc<Vec<PresenceState>>;

/// This node's presence replicas. Cheap to clone.
#[derive(Clone)]
pub struct Presence {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Arc<Bus>,
    ttl: Duration,
    /// The replicas' tasks, stopped and awaited by [`Presence::shutdown`].
    tasks: TaskTracker,
    stop: CancellationToken,
    /// The replicas, by project; each is owned by its task, which removes it from here.
    rooms: Mutex<HashMap<Uuid, Arc<watch::Sender<Snapshot>>>>,
}

impl Inner {
    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<watch::Sender<Snapshot>>>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Presence {
    /// Entries expire after `ttl` without an update. Needs a Tokio runtime.
    pub fn new(bus: Arc<Bus>, ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                bus,
                ttl: ttl.max(Duration::from_millis(100)),
                tasks: TaskTracker::new(),
                stop: CancellationToken::new(),
                rooms: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Tell every node where a client is (again: a heartbeat).
    pub fn publish(&self, project: Uuid, state: PresenceState) {
        self.inner.bus.publish_project(
            project,
            ProjectSignal::Presence(PresenceSignal::Update(state)),
        );
    }

    /// Tell every node that a client is gone.
    pub fn leave(&self, project: Uuid, user: Uuid, client_id: String) {
        self.inner.bus.publish_project(
            project,
            ProjectSignal::Presence(PresenceSignal::Leave { user, client_id }),
        );
    }

    /// Watch who is present in `project`, starting the node's replica when there is none.
    /// The receiver's current value is the list as this node knows it now.
    pub fn watch(&self, project: Uuid) -> watch::Receiver<Snapshot> {
        let mut rooms = self.inner.rooms();
        if let Some(room) = rooms.get(&project) {
            return room.subscribe();
        }
        // Subscribed under the lock, before anything can be published for the new replica.
        let signals = self.inner.bus.subscribe_project(project);
        let room = Arc::new(watch::Sender::new(Snapshot::default()));
        let receiver = room.subscribe();
        rooms.insert(project, room.clone());
        self.inner.tasks.spawn(replicate(
            Arc::downgrade(&self.inner),
            self.inner.stop.clone(),
            project,
            self.inner.ttl,
            room,
            signals,
        ));
        self.inner
            .bus
            .publish_project(project, ProjectSignal::Presence(PresenceSignal::Sync));
        receiver
    }

    /// How many projects this node keeps a replica of.
    pub fn replica_count(&self) -> usize {
        self.inner.rooms().len()
    }

    /// Stop every replica's task and wait for them (on shutdown): their watchers' streams
    /// end. Replicas started afterwards stop at once.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

/// Say where a client of `viewer` is in `project` (again: a heartbeat). Members of any role.
pub async fn share(
    db: &DatabaseConnection,
    presence: &Presence,
    viewer: &AuthUser,
    project: Uuid,
    state: PresenceState,
) -> ApiResult<()> {
    validation::client_id(&state.client_id)?;
    if let Some(file) = &state.file {
        check_path("file", file)?;
    }
    if state.file.is_none() && (state.cursor.is_some() || state.selection.is_some()) {
        return Err(ApiError::bad_input(
            "file",
            "a cursor or selection needs the file it is in",
        ));
    }
    access::check_live(db, Some(viewer), project, Live::SharePresence).await?;
    presence.publish(project, state);
    Ok(())
}

/// Follow who is present in `project`: whoever may read it. Given the client's id (a
/// signed-in viewer's), the client leaves the list when the returned guard is dropped.
pub async fn follow(
    db: &DatabaseConnection,
    presence: &Presence,
    viewer: Option<&AuthUser>,
    project: Uuid,
    client_id: Option<String>,
) -> ApiResult<(watch::Receiver<Snapshot>, Option<LeaveGuard>)> {
    if let Some(client_id) = &client_id {
        validation::client_id(client_id)?;
    }
    access::check_live(db, viewer, project, Live::Follow).await?;
    let snapshots = presence.watch(project);
    let guard = client_id
        .zip(viewer.map(|v| v.id))
        .map(|(client_id, user)| LeaveGuard::new(presence.clone(), project, user, client_id));
    Ok((snapshots, guard))
}

/// Removes a client from presence when dropped: the guard of a `presence` subscription that
/// named its client, so a closed WebSocket or a completed subscription takes the client away.
pub struct LeaveGuard {
    presence: Presence,
    project: Uuid,
    user: Uuid,
    client_id: String,
}

impl LeaveGuard {
    pub fn new(presence: Presence, project: Uuid, user: Uuid, client_id: String) -> Self {
        Self {
            presence,
            project,
            user,
            client_id,
        }
    }
}

impl Drop for LeaveGuard {
    fn drop(&mut self) {
        self.presence
            .leave(self.project, self.user, std::mem::take(&mut self.client_id));
    }
}

/// One client in a replica.
struct Slot {
    state: PresenceState,
    /// When this node last heard from the client (its own clock: nodes' clocks may differ).
    seen: Instant,
}

/// The clients present in one project, as one node knows them.
#[derive(Default)]
struct Room {
    clients: BTreeMap<(Uuid, String), Slot>,
}

impl Room {
    /// Apply one signal of the project; whether the list changed.
    fn apply(&mut self, signal: &ProjectSignal, now: Instant) -> bool {
        match signal {
            ProjectSignal::Presence(PresenceSignal::Update(state)) => {
                self.update(state.clone(), now)
            }
            ProjectSignal::Presence(PresenceSignal::Leave { user, client_id }) => {
                self.clients.remove(&(*user, client_id.clone())).is_some()
            }
            // Answered by the replica's task (see `replicate`); changes nothing here.
            ProjectSignal::Presence(PresenceSignal::Sync) => false,
            ProjectSignal::Event(
                ProjectEvent::MemberLeft { user } | ProjectEvent::MemberRemoved { user },
            ) => {
                let before = self.clients.len();
                self.clients.retain(|(member, _), _| member != user);
                self.clients.len() != before
            }
            ProjectSignal::Event(ProjectEvent::ProjectDeleted) => {
                let had_clients = !self.clients.is_empty();
                self.clients.clear();
                had_clients
            }
            ProjectSignal::Event(_) => false,
        }
    }

    fn update(&mut self, state: PresenceState, now: Instant) -> bool {
        let key = (state.user, state.client_id.clone());
        if let Some(slot) = self.clients.get_mut(&key) {
            slot.seen = now;
            let moved = slot.state.file != state.file
                || slot.state.cursor != state.cursor
                || slot.state.selection != state.selection
                || slot.state.typing != state.typing;
            // The same place again is a heartbeat: nothing changed, nobody is told.
            if moved {
                slot.state = state;
            }
            return moved;
        }
        let of_user = self
            .clients
            .range((state.user, String::new())..)
            .take_while(|((user, _), _)| *user == state.user)
            .count();
        if of_user >= MAX_CLIENTS_PER_USER || self.clients.len() >= MAX_CLIENTS_PER_PROJECT {
            tracing::warn!(user = %state.user, "too many presence clients; ignoring one more");
            return false;
        }
        self.clients.insert(key, Slot { state, seen: now });
        true
    }

    /// Drop the clients not heard from for `ttl`; whether any were.
    fn expire(&mut self, now: Instant, ttl: Duration) -> bool {
        let before = self.clients.len();
        self.clients.retain(|_, slot| slot.seen + ttl > now);
        self.clients.len() != before
    }

    /// When the next client expires, if any.
    fn next_expiry(&self, ttl: Duration) -> Option<Instant> {
        self.clients.values().map(|slot| slot.seen + ttl).min()
    }

    fn snapshot(&self) -> Snapshot {
        Arc::new(
            self.clients
                .values()
                .map(|slot| slot.state.clone())
                .collect(),
        )
    }
}

/// Keep one project's replica: apply its signals, expire silent clients, and retire once
/// nobody on this node watches (at once when empty, else after a TTL, so that a client that
/// reconnects quickly finds the list intact).
async fn replicate(
    presence: Weak<Inner>,
    stop: CancellationToken,
    project: Uuid,
    ttl: Duration,
    room_tx: Arc<watch::Sender<Snapshot>>,
    mut signals: broadcast::Receiver<Arc<ProjectSignal>>,
) {
    let mut room = Room::default();
    let mut unwatched_since: Option<Instant> = None;
    loop {
        // Far enough to never fire; the branches below are disabled when there is no deadline.
        let never = Instant::now() + Duration::from_secs(86_400);
        let expiry = room.next_expiry(ttl);
        let retire_at = unwatched_since.map(|since| since + ttl);
        let changed = tokio::select! {
            () = stop.cancelled() => break,
            received = signals.recv() => match received {
                Ok(signal) => {
                    if matches!(*signal, ProjectSignal::Presence(PresenceSignal::Sync))
                        && let Some(presence) = presence.upgrade()
                    {
                        for slot in room.clients.values() {
                            presence.bus.publish_project(
                                project,
                                ProjectSignal::Presence(PresenceSignal::Update(slot.state.clone())),
                            );
                        }
                    }
                    room.apply(&signal, Instant::now())
                }
                Err(RecvError::Lagged(skipped)) => {
                    tracing::warn!(%project, skipped, "a presence replica lagged");
                    false
                }
                Err(RecvError::Closed) => break,
            },
            () = tokio::time::sleep_until(expiry.unwrap_or(never)), if expiry.is_some() => {
                room.expire(Instant::now(), ttl)
            }
            () = room_tx.closed(), if unwatched_since.is_none() => {
                unwatched_since = Some(Instant::now());
                false
            }
            () = tokio::time::sleep_until(retire_at.unwrap_or(never)), if retire_at.is_some() => {
                if retire(&presence, project, &room_tx) {
                    return;
                }
                unwatched_since = None;
                false
            }
        };
        if changed {
            room_tx.send_replace(room.snapshot());
        }
        if unwatched_since.is_some() && room.clients.is_empty() {
            if retire(&presence, project, &room_tx) {
                return;
            }
            unwatched_since = None;
        }
    }
    // The bus is gone, or the node is stopping.
    if let Some(presence) = presence.upgrade() {
        let mut rooms = presence.rooms();
        if rooms
            .get(&project)
            .is_some_and(|r| Arc::ptr_eq(r, &room_tx))
        {
            rooms.remove(&project);
        }
    }
}

/// Remove the replica if nobody watches it (checked under the lock new watchers take);
/// whether it was removed.
fn retire(presence: &Weak<Inner>, project: Uuid, room_tx: &Arc<watch::Sender<Snapshot>>) -> bool {
    let Some(presence) = presence.upgrade() else {
        return true;
    };
    let mut rooms = presence.rooms();
    if room_tx.receiver_count() > 0 {
        return false;
    }
    if rooms.get(&project).is_some_and(|r| Arc::ptr_eq(r, room_tx)) {
        rooms.remove(&project);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::now;

    fn state(user: Uuid, client: &str, cursor: u32) -> PresenceState {
        PresenceState {
            user,
            client_id: client.into(),
            file: Some("main.py".into()),
            cursor: Some(cursor),
            selection: None,
            typing: false,
            at: now(),
        }
    }

    fn update(state: PresenceState) -> ProjectSignal {
        ProjectSignal::Presence(PresenceSignal::Update(state))
    }

    #[test]
    fn heartbeats_refresh_without_changing_the_list() {
        let ttl = Duration::from_secs(30);
        let mut room = Room::default();
        let user = Uuid::new_v4();
        let t0 = Instant::now();
        assert!(room.apply(&update(state(user, "a", 1)), t0));
        let first_at = room.snapshot()[0].at;
        let t1 = t0 + Duration::from_secs(20);
        assert!(!room.apply(&update(state(user, "a", 1)), t1));
        assert_eq!(room.snapshot()[0].at, first_at);
        // Heard from at t1, so alive at t0 + 40 s, gone at t1 + 30 s.
        assert!(!room.expire(t0 + Duration::from_secs(40), ttl));
        assert_eq!(room.next_expiry(ttl), Some(t1 + ttl));
        assert!(room.expire(t1 + ttl, ttl));
        assert!(room.clients.is_empty());
    }

    #[test]
    fn moves_leaves_and_removals() {
        let mut room = Room::default();
        let (ann, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let t = Instant::now();
        room.apply(&update(state(ann, "a1", 1)), t);
        room.apply(&update(state(ann, "a2", 1)), t);
        room.apply(&update(state(bob, "b", 1)), t);
        assert!(room.apply(&update(state(bob, "b", 2)), t));
        assert_eq!(room.snapshot().len(), 3);
        let leave = ProjectSignal::Presence(PresenceSignal::Leave {
            user: ann,
            client_id: "a1".into(),
        });
        assert!(room.apply(&leave, t));
        assert!(!room.apply(&leave, t));
        let removed = ProjectSignal::Event(ProjectEvent::MemberRemoved { user: ann });
        assert!(room.apply(&removed, t));
        let snapshot = room.snapshot();
        assert_eq!(snapshot.len(), 1);
        assert_eq!(snapshot[0].cursor, Some(2));
        assert!(room.apply(&ProjectSignal::Event(ProjectEvent::ProjectDeleted), t));
        assert!(room.clients.is_empty());
    }

    /// Wait (up to 10 s) for `done`.
    async fn eventually(done: impl Fn() -> bool) -> bool {
        for _ in 0..1000 {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// How many clients the next list has; `None` when none comes within 10 s.
    async fn next(watcher: &mut watch::Receiver<Snapshot>) -> Option<usize> {
        tokio::time::timeout(Duration::from_secs(10), watcher.changed())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|()| watcher.borrow_and_update().len())
    }

    #[tokio::test]
    async fn shutdown_stops_and_awaits_every_replica() {
        let presence = Presence::new(Bus::local(), Duration::from_secs(30));
        let mut watchers: Vec<_> = (0..3).map(|_| presence.watch(Uuid::new_v4())).collect();
        assert_eq!(presence.replica_count(), 3);
        tokio::time::timeout(Duration::from_secs(5), presence.shutdown())
            .await
            .expect("the replicas stop");
        assert_eq!(presence.replica_count(), 0);
        for watcher in &mut watchers {
            assert!(watcher.changed().await.is_err(), "the watch ends");
        }
    }

    #[tokio::test]
    async fn replicas_live_while_watched_and_guards_take_clients_away() {
        let presence = Presence::new(Bus::local(), Duration::from_millis(300));
        let (project, user) = (Uuid::new_v4(), Uuid::new_v4());
        let mut watcher = presence.watch(project);
        assert_eq!(presence.replica_count(), 1);
        assert!(watcher.borrow().is_empty());

        presence.publish(project, state(user, "a", 1));
        assert_eq!(next(&mut watcher).await, Some(1));
        // A second watcher shares the replica and starts from its list.
        let second = presence.watch(project);
        assert_eq!(second.borrow().len(), 1);
        assert_eq!(presence.replica_count(), 1);

        drop(LeaveGuard::new(presence.clone(), project, user, "a".into()));
        assert_eq!(next(&mut watcher).await, Some(0));

        // Nobody watches and nobody is present: the replica goes.
        drop(watcher);
        drop(second);
        assert!(eventually(|| presence.replica_count() == 0).await);

        // Nobody watches but somebody is present: it goes after a TTL.
        let mut watcher = presence.watch(project);
        presence.publish(project, state(user, "b", 1));
        assert_eq!(next(&mut watcher).await, Some(1));
        drop(watcher);
        assert!(eventually(|| presence.replica_count() == 0).await);
    }

    #[test]
    fn a_user_cannot_flood_a_replica() {
        let mut room = Room::default();
        let user = Uuid::new_v4();
        let t = Instant::now();
        for i in 0..MAX_CLIENTS_PER_USER + 5 {
            room.apply(&update(state(user, &format!("c{i}"), 0)), t);
        }
        assert_eq!(room.clients.len(), MAX_CLIENTS_PER_USER);
        assert!(room.apply(&update(state(Uuid::new_v4(), "other", 0)), t));
    }
}
