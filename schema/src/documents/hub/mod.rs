//! The document hub: each node's in-memory copies of the documents in use.
//!
//! A loaded document always equals the stored log up to `seq`: an update is imported,
//! checked, appended to the database and only then broadcast; anything refused on the way is
//! undone by rebuilding the copy from the database. Every change to a copy and every
//! broadcast of it happen under the document's lock, and so does a new subscriber's
//! catch-up, so a subscriber sees each update exactly once (or, after lagging, a resync).
//!
//! This file holds the copies and what reads or changes them; `writer.rs` is the write path
//! of clients' edits (a group commit: import, check, append, broadcast), `lifecycle.rs` loads and unloads them (idle sweep, auto-save, compaction, the auto-saves
//! written on shutdown), `remote.rs` brings them up to date with what other nodes appended. The shape
//! check is `documents/shape.rs`, the log store `documents/store.rs`.

mod lifecycle;
mod remote;
mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use loro::{EncodedBlobMode, ExportMode, LoroDoc, VersionVector};
use sea_orm::DatabaseConnection;
use tokio::sync::{OwnedMutexGuard, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::limits::CollabConfig;
use super::shape::check_shape;
use super::store;
use crate::error::{ApiError, ApiResult};
use crate::realtime::Bus;

/// Edits move a project up the lists at most this often (one write, not one per keystroke).
const ACTIVITY_RESOLUTION: Duration = Duration::from_secs(60);
/// How long an update whose dependencies have not arrived waits for the document to move
/// (pipelined edits arriving out of order) before it is refused with CONFLICT.
pub const DEPENDENCY_WAIT: Duration = Duration::from_secs(5);
/// The longest an update waits for its dependencies while the document moves.
pub const DEPENDENCY_WAIT_MAX: Duration = Duration::from_secs(30);
/// How long a check that somebody may edit a document stands in for the checks of their
/// next edits (see [`Documents::edit_granted`]). Bounds how long a change of role heard late,
/// or never (a link to the other nodes down unnoticed), goes unseen.
const EDIT_GRANT_TTL: Duration = Duration::from_secs(1);
/// The most editors of one document remembered at once.
const EDIT_GRANTS_MAX: usize = 16;

/// One update as subscribers receive it, encoded once for all of them.
#[derive(Debug)]
pub struct DocUpdate {
    /// Position in the document's log; `None` for a catch-up or resync.
    pub seq: Option<i64>,
    /// The Loro update, base64 (the text other nodes received too, see [`crate::realtime::DocSignal`]).
    pub update: Arc<str>,
    pub author: Option<Uuid>,
    pub client_id: Option<String>,
    /// The document's version vector once this update is applied, base64.
    pub version_vector: Arc<str>,
    /// Its renderings for shared subscriptions (see `documents/live.rs`).
    pub(in crate::documents) frames: super::live::Frames,
}

/// The outcome of a write.
#[derive(Clone, Debug)]
pub struct Applied {
    /// Sequence number of the appended update (the current head when nothing was new).
    pub seq: i64,
    /// The document's version vector after the write, base64.
    pub version_vector: Arc<str>,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Documents {
    hub: Arc<Hub>,
}

struct Hub {
    db: DatabaseConnection,
    bus: Arc<Bus>,
    config: CollabConfig,
    entries: Mutex<HashMap<Uuid, Arc<Entry>>>,
    /// The background tasks (remote updates, idle sweep, head check), stopped and awaited by
    /// [`Documents::shutdown`].
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// One document on this node.
pub struct Entry {
    project: Uuid,
    state: Arc<tokio::sync::Mutex<Option<Loaded>>>,
    updates: broadcast::Sender<Arc<DocUpdate>>,
    last_used: Mutex<Instant>,
    /// Clients' edits waiting for the next holder of the lock (see `writer.rs`).
    queued: Mutex<Vec<writer::Queued>>,
    /// Who was found allowed to edit it a moment ago.
    editors: Mutex<Vec<Grant>>,
}

/// A permission check that `user` may edit, made at `at` while the bus's access epoch was
/// `epoch`.
struct Grant {
    user: Uuid,
    epoch: u64,
    at: Instant,
}

impl Grant {
    fn holds(&self, epoch: u64) -> bool {
        self.epoch == epoch && self.at.elapsed() < EDIT_GRANT_TTL
    }
}

struct Loaded {
    doc: LoroDoc,
    /// Every logged update up to this one is in `doc`, and nothing else.
    seq: i64,
    appended_since_compaction: u32,
    /// Changed on this node since the last checkpoint (drives "Auto-save").
    changed_since_checkpoint: bool,
    last_change: Instant,
    /// When this node last moved the project's `last_activity_at` for an edit.
    activity_marked: Option<Instant>,
    /// Updates waiting for their dependencies, woken once the copy includes them (or when
    /// the copy is rebuilt: dropping it drops their senders).
    waiting: Vec<Waiting>,
}

/// An update that arrived before what it depends on.
struct Waiting {
    needs: VersionVector,
    wake: tokio::sync::oneshot::Sender<()>,
}

/// A subscription's start: what the subscriber lacks, then the live feed.
pub struct Subscription {
    pub catch_up: DocUpdate,
    pub live: broadcast::Receiver<Arc<DocUpdate>>,
    /// Keeps the document loaded while somebody listens.
    pub entry: Arc<Entry>,
}

fn encode_vv(vv: &VersionVector) -> String {
    STANDARD.encode(vv.encode())
}

/// An update's bytes as subscribers and other nodes receive them: the one base64 encoding
/// on an edit's way.
fn encode_update(update: &[u8]) -> Arc<str> {
    STANDARD.encode(update).into()
}

/// Decode a version vector a client sent (base64 already removed).
pub fn decode_vv(field: &'static str, bytes: &[u8]) -> ApiResult<VersionVector> {
    VersionVector::decode(bytes)
        .map_err(|_| ApiError::bad_input(field, "not an encoded Loro version vector"))
}

impl Documents {
    /// The hub, with its background tasks (remote updates, idle sweeping) running.
    pub fn start(db: DatabaseConnection, bus: Arc<Bus>, config: CollabConfig) -> Self {
        let remote = bus.take_remote_docs();
        let documents = Self {
            hub: Arc::new(Hub {
                db,
                bus,
                config,
                entries: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
                stop: CancellationToken::new(),
            }),
        };
        let hub = &documents.hub;
        if let Some(remote) = remote {
            hub.tasks.spawn(remote::remote_loop(
                Arc::downgrade(hub),
                hub.stop.clone(),
                remote,
            ));
        }
        hub.tasks
            .spawn(lifecycle::sweep_loop(Arc::downgrade(hub), hub.stop.clone()));
        if let Some(period) = hub.bus.head_check() {
            hub.tasks.spawn(remote::head_check_loop(
                Arc::downgrade(hub),
                hub.stop.clone(),
                period,
            ));
        }
        documents
    }

    /// Stop the background tasks and wait for them, then write the auto-saves they would have
    /// taken later. For a graceful stop, once no more requests arrive.
    pub async fn shutdown(&self) {
        self.hub.stop.cancel();
        self.hub.tasks.close();
        self.hub.tasks.wait().await;
        self.hub.flush().await;
    }

    pub fn config(&self) -> &CollabConfig {
        &self.hub.config
    }

    /// How many documents this node holds in memory.
    pub fn loaded_count(&self) -> usize {
        self.hub.lock_entries().len()
    }

    /// Whether `user` was found allowed to edit `project` ([`Documents::grant_edit`]) less
    /// than [`EDIT_GRANT_TTL`] ago, with no change of anybody's access heard since (see
    /// `Bus::access_epoch`). A typist's edits then cost one permission check a second, not
    /// one each (a query, a quarter of an edit's work on the server).
    pub fn edit_granted(&self, project: Uuid, user: Uuid) -> bool {
        let Some(entry) = self.hub.lock_entries().get(&project).cloned() else {
            return false;
        };
        let epoch = self.hub.bus.access_epoch();
        entry
            .editors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|grant| grant.user == user && grant.holds(epoch))
    }

    /// What to hand [`Documents::grant_edit`]: read before the permission check, so that a
    /// change of access committed while the check ran makes it void.
    pub fn access_epoch(&self) -> u64 {
        self.hub.bus.access_epoch()
    }

    /// Remember that `user` passed the check for editing `project`, made after
    /// [`Documents::access_epoch`] read `epoch`.
    pub fn grant_edit(&self, project: Uuid, user: Uuid, epoch: u64) {
        let entry = self.hub.entry(project);
        let now = self.hub.bus.access_epoch();
        let mut editors = entry.editors.lock().unwrap_or_else(PoisonError::into_inner);
        editors.retain(|grant| grant.user != user && grant.holds(now));
        if editors.len() >= EDIT_GRANTS_MAX {
            editors.remove(0);
        }
        editors.push(Grant {
            user,
            epoch,
            at: Instant::now(),
        });
    }

    /// Import a client's update. See the module docs for the guarantees.
    pub async fn apply(
        &self,
        project: Uuid,
        author: Uuid,
        client_id: Option<String>,
        update: &[u8],
    ) -> ApiResult<Applied> {
        let config = &self.hub.config;
        if update.len() > config.max_update_bytes {
            return Err(ApiError::bad_input(
                "update",
                format!(
                    "the update is larger than {} bytes",
                    config.max_update_bytes
                ),
            ));
        }
        let meta = LoroDoc::decode_import_blob_meta(update, true)
            .map_err(|_| ApiError::bad_input("update", "not a Loro update"))?;
        if !matches!(meta.mode, EncodedBlobMode::Updates) {
            return Err(ApiError::bad_input(
                "update",
                "send Loro updates (ExportMode::Updates), not a snapshot",
            ));
        }
        let entry = self.hub.entry(project);
        self.hub
            .apply(
                &entry,
                (meta.partial_start_vv, meta.partial_end_vv),
                update,
                author,
                client_id,
            )
            .await
    }

    /// Change the document on the server's behalf (file operations, restores): `edit` works
    /// on the live document; its changes become one update, stored and broadcast like any.
    pub async fn edit<T>(
        &self,
        project: Uuid,
        author: Uuid,
        edit: impl FnOnce(&LoroDoc) -> ApiResult<T>,
    ) -> ApiResult<(T, Applied)> {
        let entry = self.hub.entry(project);
        let mut guard = self.hub.lock_loaded(&entry).await?;
        let loaded = loaded_mut(&mut guard)?;
        let before = loaded.doc.oplog_vv();
        let outcome = edit(&loaded.doc).and_then(|value| {
            loaded.doc.commit();
            if loaded.doc.oplog_vv() == before {
                return Ok((value, None));
            }
            check_shape(&loaded.doc, &before, &self.hub.config)?;
            let update = loaded
                .doc
                .export(ExportMode::updates(&before))
                .map_err(ApiError::internal)?;
            Ok((value, Some(update)))
        });
        let (value, update) = match outcome {
            Ok((value, None)) => return Ok((value, loaded.head())),
            Ok((value, Some(update))) => (value, update),
            Err(error) => {
                self.hub.rebuild(&entry, &mut guard, &before).await;
                return Err(error);
            }
        };
        let version = loaded_mut(&mut guard)?.doc.oplog_vv();
        let accepted = writer::Accepted {
            update,
            author: Some(author),
            client_id: None,
            version,
        };
        let (applied, announced) = self
            .hub
            .append(&entry, &mut guard, &before, vec![accepted])
            .await?
            .pop()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("the edit was not written")))?;
        drop(guard);
        announced.sent().await;
        Ok((value, applied))
    }

    /// The document's head on this node.
    pub async fn head(&self, project: Uuid) -> ApiResult<Applied> {
        let entry = self.hub.entry(project);
        let mut guard = self.hub.lock_loaded(&entry).await?;
        Ok(loaded_mut(&mut guard)?.head())
    }

    /// Read the document as it is now.
    pub async fn read<T>(&self, project: Uuid, read: impl FnOnce(&LoroDoc) -> T) -> ApiResult<T> {
        let entry = self.hub.entry(project);
        let mut guard = self.hub.lock_loaded(&entry).await?;
        Ok(read(&loaded_mut(&mut guard)?.doc))
    }

    /// Start following a document: everything after `since` (everything when `None`), then
    /// each update as it is appended.
    pub async fn subscribe(
        &self,
        project: Uuid,
        since: Option<VersionVector>,
    ) -> ApiResult<Subscription> {
        let entry = self.hub.entry(project);
        let mut guard = self.hub.lock_loaded(&entry).await?;
        let loaded = loaded_mut(&mut guard)?;
        let live = entry.updates.subscribe();
        let catch_up = export_since(loaded, &since.unwrap_or_default())?;
        drop(guard);
        Ok(Subscription {
            catch_up,
            live,
            entry,
        })
    }

    /// What a subscriber that fell behind lacks, relative to `since`.
    pub async fn resync(&self, entry: &Arc<Entry>, since: &VersionVector) -> ApiResult<DocUpdate> {
        let mut guard = self.hub.lock_loaded(entry).await?;
        export_since(loaded_mut(&mut guard)?, since)
    }

    /// Whether `project`'s document is loaded on this node (for tests and metrics).
    pub fn is_loaded(&self, project: Uuid) -> bool {
        self.hub.lock_entries().contains_key(&project)
    }

    /// Forget a deleted project's document.
    pub fn forget(&self, project: Uuid) {
        self.hub.lock_entries().remove(&project);
    }
}

fn missing_dependencies(server: &VersionVector) -> ApiError {
    ApiError::OutOfDate {
        message: "the update depends on changes the server does not have; catch up from \
                  the server's version vector (extensions.versionVector) and send it again"
            .into(),
        version_vector: encode_vv(server),
    }
}

fn loaded_mut(guard: &mut OwnedMutexGuard<Option<Loaded>>) -> ApiResult<&mut Loaded> {
    guard
        .as_mut()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("document not loaded")))
}

fn export_since(loaded: &Loaded, since: &VersionVector) -> ApiResult<DocUpdate> {
    let update = loaded
        .doc
        .export(ExportMode::updates(since))
        .map_err(ApiError::internal)?;
    Ok(DocUpdate {
        seq: None,
        update: encode_update(&update),
        author: None,
        client_id: None,
        version_vector: loaded.version(),
        frames: Default::default(),
    })
}

impl Loaded {
    /// Where the copy stands: its last logged update and its version vector.
    fn head(&self) -> Applied {
        Applied {
            seq: self.seq,
            version_vector: self.version(),
        }
    }

    /// The copy's version vector, base64.
    fn version(&self) -> Arc<str> {
        encode_vv(&self.doc.oplog_vv()).into()
    }
}

impl Hub {
    fn lock_entries(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn entry(&self, project: Uuid) -> Arc<Entry> {
        let entry = self
            .lock_entries()
            .entry(project)
            .or_insert_with(|| {
                Arc::new(Entry {
                    project,
                    state: Arc::new(tokio::sync::Mutex::new(None)),
                    updates: broadcast::channel(self.config.subscriber_queue.max(1)).0,
                    last_used: Mutex::new(Instant::now()),
                    queued: Mutex::new(Vec::new()),
                    editors: Mutex::new(Vec::new()),
                })
            })
            .clone();
        entry.touch();
        entry
    }

    /// What follows `count` updates written from this node: the auto-save and the project's
    /// activity notice it, and the log is compacted once long enough.
    async fn written(&self, entry: &Entry, loaded: &mut Loaded, count: u32) {
        loaded.changed_since_checkpoint = true;
        loaded.last_change = Instant::now();
        loaded.appended_since_compaction += count;
        if loaded
            .activity_marked
            .is_none_or(|at| at.elapsed() >= ACTIVITY_RESOLUTION)
        {
            loaded.activity_marked = Some(Instant::now());
            if let Err(error) = store::mark_activity(&self.db, entry.project).await {
                tracing::warn!(project = %entry.project, ?error, "cannot mark activity");
            }
        }
        if loaded.appended_since_compaction >= self.config.compact_after_updates
            && let Err(error) = self.compact(entry, loaded).await
        {
            tracing::warn!(project = %entry.project, ?error, "compaction failed");
        }
    }

    /// Record `seq` as applied and hand it (`update` and the `version` it brings the
    /// document to, both already base64) to this node's subscribers.
    #[allow(clippy::too_many_arguments)] // one per field of what subscribers receive
    fn broadcast(
        &self,
        entry: &Entry,
        loaded: &mut Loaded,
        seq: i64,
        update: Arc<str>,
        version: Arc<str>,
        author: Option<Uuid>,
        client_id: Option<String>,
    ) {
        loaded.seq = loaded.seq.max(seq);
        let _ = entry.updates.send(Arc::new(DocUpdate {
            seq: Some(seq),
            update,
            author,
            client_id,
            version_vector: version,
            frames: Default::default(),
        }));
        let now = loaded.doc.oplog_vv();
        for waiting in loaded
            .waiting
            .extract_if(.., |w| now.includes_vv(&w.needs) || w.wake.is_closed())
        {
            let _ = waiting.wake.send(());
        }
    }
}

impl Entry {
    fn touch(&self) {
        *self
            .last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }
}
