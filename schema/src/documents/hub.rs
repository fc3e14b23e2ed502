//! The document hub: each node's in-memory copies of the documents in use.
//!
//! A loaded document always equals the stored log up to `seq`: an update is imported,
//! checked, appended to the database and only then broadcast; anything refused on the way is
//! undone by rebuilding the copy from the database. Every change to a copy and every
//! broadcast of it happen under the document's lock, and so does a new subscriber's
//! catch-up, so a subscriber sees each update exactly once (or, after lagging, a resync).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use loro::{
    Container, ContainerID, ContainerType, EncodedBlobMode, ExportMode, LoroDoc, ValueOrContainer,
    VersionVector,
};
use sea_orm::DatabaseConnection;
use tokio::sync::{OwnedMutexGuard, broadcast};
use uuid::Uuid;

use super::limits::{CollabConfig, check_path};
use super::store;
use crate::error::{ApiError, ApiResult};
use crate::realtime::{Announced, Bus, DocSignal, RemoteDoc};

/// The root map of every document: path -> LoroText.
pub const FILES: &str = "files";
/// Edits move a project up the lists at most this often (one write, not one per keystroke).
const ACTIVITY_RESOLUTION: Duration = Duration::from_secs(60);
/// How many updates a slow subscriber may fall behind before it is resynchronised.
const SUBSCRIBER_QUEUE: usize = 512;

/// One update as subscribers receive it, encoded once for all of them.
#[derive(Debug)]
pub struct DocUpdate {
    /// Position in the document's log; `None` for a catch-up or resync.
    pub seq: Option<i64>,
    /// The Loro update, base64.
    pub update: String,
    pub author: Option<Uuid>,
    pub client_id: Option<String>,
    /// The document's version vector once this update is applied, base64.
    pub version_vector: String,
}

/// The outcome of a write.
#[derive(Clone, Debug)]
pub struct Applied {
    /// Sequence number of the appended update (the current head when nothing was new).
    pub seq: i64,
    /// The document's version vector after the write, base64.
    pub version_vector: String,
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
}

/// One document on this node.
pub struct Entry {
    project: Uuid,
    state: Arc<tokio::sync::Mutex<Option<Loaded>>>,
    updates: broadcast::Sender<Arc<DocUpdate>>,
    last_used: Mutex<Instant>,
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
            }),
        };
        if let Some(remote) = remote {
            tokio::spawn(remote_loop(Arc::downgrade(&documents.hub), remote));
        }
        tokio::spawn(sweep_loop(Arc::downgrade(&documents.hub)));
        if let Some(period) = documents.hub.bus.head_check() {
            tokio::spawn(head_check_loop(Arc::downgrade(&documents.hub), period));
        }
        documents
    }

    pub fn config(&self) -> &CollabConfig {
        &self.hub.config
    }

    /// How many documents this node holds in memory.
    pub fn loaded_count(&self) -> usize {
        self.hub.lock_entries().len()
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
        let mut guard = self.hub.lock_loaded(&entry).await?;
        let loaded = loaded_mut(&mut guard)?;
        let before = loaded.doc.oplog_vv();
        let missing = meta
            .partial_start_vv
            .iter()
            .any(|(peer, counter)| before.get(peer).copied().unwrap_or(0) < *counter);
        if missing {
            return Err(missing_dependencies(&before));
        }
        if before.includes_vv(&meta.partial_end_vv) {
            return Ok(loaded.head());
        }
        let outcome = match loaded.doc.import(update) {
            Err(_) => Err(ApiError::bad_input("update", "not a valid Loro update")),
            Ok(status) if status.pending.is_some() => Err(missing_dependencies(&before)),
            Ok(_) => check_shape(&loaded.doc, &before, config),
        };
        if let Err(error) = outcome {
            self.hub.rebuild(&entry, &mut guard, &before).await;
            return Err(error);
        }
        let (applied, announced) = self
            .hub
            .commit(
                &entry,
                &mut guard,
                &before,
                update.to_vec(),
                Some(author),
                client_id,
            )
            .await?;
        // The next edit of this document need not wait for Redis; this answer does.
        drop(guard);
        announced.sent().await;
        Ok(applied)
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
        let (applied, announced) = self
            .hub
            .commit(&entry, &mut guard, &before, update, Some(author), None)
            .await?;
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
        update: STANDARD.encode(update),
        author: None,
        client_id: None,
        version_vector: encode_vv(&loaded.doc.oplog_vv()),
    })
}

/// A document holds the root map `files` only, whose values are texts at valid paths, within
/// the configured limits.
/// Whether what changed in `doc` since `before` keeps it a project document: only the root
/// map `files` (see [`check_roots`]), valid paths, texts only, within the size limits.
pub fn check_shape(doc: &LoroDoc, before: &VersionVector, config: &CollabConfig) -> ApiResult<()> {
    let refuse = |message: String| Err(ApiError::bad_input("update", message));
    check_roots(doc, before)?;
    let files = doc.get_map(FILES);
    if files.len() > config.max_files {
        return refuse(format!(
            "a project holds at most {} files",
            config.max_files
        ));
    }
    let mut problem = None;
    files.for_each(|path, value| {
        if problem.is_some() {
            return;
        }
        if let Err(error) = check_path("update", path) {
            problem = Some(error);
            return;
        }
        match value {
            ValueOrContainer::Container(Container::Text(text)) => {
                if text.len_utf8() > config.max_file_bytes {
                    problem = Some(ApiError::bad_input(
                        "update",
                        format!(
                            "{path} would be larger than {} bytes",
                            config.max_file_bytes
                        ),
                    ));
                }
            }
            _ => {
                problem = Some(ApiError::bad_input(
                    "update",
                    format!("files/{path} must be a text"),
                ));
            }
        }
    });
    problem.map_or(Ok(()), Err)
}

/// Every operation since `before` must be on the root map `files` or inside it. A document's
/// value alone cannot tell: a root text named `files` shares the map's key there.
fn check_roots(doc: &LoroDoc, before: &VersionVector) -> ApiResult<()> {
    let files = ContainerID::new_root(FILES, ContainerType::Map);
    // Without peer compression: compressed ids name peers by index, not by their real ids.
    let changes = doc
        .export_json_updates_without_peer_compression(before, &doc.oplog_vv())
        .map_err(ApiError::internal)?;
    for op in changes.changes.iter().flat_map(|change| &change.ops) {
        // Mergeable children (`ensure_mergeable_text`) have root ids of their own; the path
        // from the document's root tells where any container really is.
        let inside_files = op.container == files
            || doc
                .get_path_to_container(&op.container)
                .and_then(|path| path.first().map(|(root, _)| *root == files))
                .unwrap_or(false);
        if !inside_files {
            return Err(ApiError::bad_input(
                "update",
                format!(
                    "only the root map `files` may be used, not {}",
                    describe_container(&op.container)
                ),
            ));
        }
    }
    Ok(())
}

fn describe_container(id: &ContainerID) -> String {
    match id {
        ContainerID::Root {
            name,
            container_type,
        } if !id.is_mergeable() => {
            format!(
                "the root {} `{name}`",
                format!("{container_type:?}").to_lowercase()
            )
        }
        _ => "a container outside it".to_owned(),
    }
}

/// Build a document from what is stored.
async fn load(db: &DatabaseConnection, project: Uuid) -> ApiResult<Loaded> {
    let stored = store::load(db, project).await?;
    crate::metrics::document_loaded();
    let doc = LoroDoc::new();
    doc.set_peer_id(rand::random::<u64>() >> 1)
        .map_err(ApiError::internal)?;
    if let Some(snapshot) = &stored.snapshot {
        doc.import(snapshot).map_err(ApiError::internal)?;
    }
    let mut seq = stored.snapshot_seq;
    for update in &stored.updates {
        doc.import(&update.data).map_err(ApiError::internal)?;
        seq = update.seq;
    }
    Ok(Loaded {
        doc,
        seq,
        appended_since_compaction: u32::try_from(stored.updates.len()).unwrap_or(u32::MAX),
        changed_since_checkpoint: false,
        last_change: Instant::now(),
        activity_marked: None,
    })
}

impl Loaded {
    /// Where the copy stands: its last logged update and its version vector.
    fn head(&self) -> Applied {
        Applied {
            seq: self.seq,
            version_vector: encode_vv(&self.doc.oplog_vv()),
        }
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
                    updates: broadcast::channel(SUBSCRIBER_QUEUE).0,
                    last_used: Mutex::new(Instant::now()),
                })
            })
            .clone();
        entry.touch();
        entry
    }

    /// Lock a document, loading it first if needed.
    async fn lock_loaded(&self, entry: &Arc<Entry>) -> ApiResult<OwnedMutexGuard<Option<Loaded>>> {
        let mut guard = entry.state.clone().lock_owned().await;
        if guard.is_none() {
            *guard = Some(load(&self.db, entry.project).await?);
        }
        Ok(guard)
    }

    /// Store what was just imported into the copy and broadcast it; on failure, undo. The
    /// caller answers once the update has left for the other nodes ([`Announced::sent`]).
    async fn commit(
        &self,
        entry: &Arc<Entry>,
        guard: &mut OwnedMutexGuard<Option<Loaded>>,
        before: &VersionVector,
        update: Vec<u8>,
        author: Option<Uuid>,
        client_id: Option<String>,
    ) -> ApiResult<(Applied, Announced)> {
        let appended = store::append(
            &self.db,
            entry.project,
            update.clone(),
            author,
            client_id.clone(),
        )
        .await;
        let seq = match appended {
            Ok(seq) => seq,
            Err(error) => {
                self.rebuild(entry, guard, before).await;
                return Err(error);
            }
        };
        if seq != loaded_mut(guard)?.seq + 1 {
            // Another node appended in between and its signal has not arrived yet: take
            // those updates from the log first, so subscribers here see every one.
            self.catch_up(entry, guard, Some(seq)).await;
        }
        // (After a rebuild in the catch-up this may repeat what the resync carried; clients
        // import idempotently, and missing it would be worse.)
        let loaded = loaded_mut(guard)?;
        self.broadcast(entry, loaded, seq, &update, author, client_id.clone());
        let announced = self.bus.announce_doc(DocSignal {
            project: entry.project,
            seq,
            update,
            author,
            client_id,
        });
        loaded.changed_since_checkpoint = true;
        loaded.last_change = Instant::now();
        loaded.appended_since_compaction += 1;
        if loaded
            .activity_marked
            .is_none_or(|at| at.elapsed() >= ACTIVITY_RESOLUTION)
        {
            loaded.activity_marked = Some(Instant::now());
            if let Err(error) = store::mark_activity(&self.db, entry.project).await {
                tracing::warn!(project = %entry.project, ?error, "cannot mark activity");
            }
        }
        let applied = Applied {
            seq,
            ..loaded.head()
        };
        if loaded.appended_since_compaction >= self.config.compact_after_updates
            && let Err(error) = self.compact(entry, loaded).await
        {
            tracing::warn!(project = %entry.project, ?error, "compaction failed");
        }
        Ok((applied, announced))
    }

    /// Record `seq` as applied and hand it to this node's subscribers.
    fn broadcast(
        &self,
        entry: &Entry,
        loaded: &mut Loaded,
        seq: i64,
        update: &[u8],
        author: Option<Uuid>,
        client_id: Option<String>,
    ) {
        loaded.seq = loaded.seq.max(seq);
        let _ = entry.updates.send(Arc::new(DocUpdate {
            seq: Some(seq),
            update: STANDARD.encode(update),
            author,
            client_id,
            version_vector: encode_vv(&loaded.doc.oplog_vv()),
        }));
    }

    /// Throw the copy away and build it again from the database; whatever the database
    /// holds beyond `known` (the version subscribers have seen) is broadcast as a resync.
    async fn rebuild(
        &self,
        entry: &Arc<Entry>,
        guard: &mut OwnedMutexGuard<Option<Loaded>>,
        known: &VersionVector,
    ) {
        match load(&self.db, entry.project).await {
            Ok(fresh) => {
                if let Ok(update) = fresh.doc.export(ExportMode::updates(known))
                    && fresh.doc.oplog_vv() != *known
                {
                    let _ = entry.updates.send(Arc::new(DocUpdate {
                        seq: Some(fresh.seq),
                        update: STANDARD.encode(update),
                        author: None,
                        client_id: None,
                        version_vector: encode_vv(&fresh.doc.oplog_vv()),
                    }));
                }
                **guard = Some(fresh);
            }
            Err(error) => {
                tracing::error!(project = %entry.project, ?error, "cannot reload a document");
                **guard = None;
            }
        }
    }

    /// An update another node appended.
    async fn receive(&self, signal: DocSignal) {
        let Some(entry) = self.lock_entries().get(&signal.project).cloned() else {
            return;
        };
        let mut guard = entry.state.clone().lock_owned().await;
        let Some(loaded) = guard.as_mut() else {
            return;
        };
        if signal.seq <= loaded.seq {
            return;
        }
        if signal.seq == loaded.seq + 1
            && let Ok(status) = loaded.doc.import(&signal.update)
            && status.pending.is_none()
        {
            self.broadcast(
                &entry,
                loaded,
                signal.seq,
                &signal.update,
                signal.author,
                signal.client_id,
            );
            return;
        }
        self.catch_up(&entry, &mut guard, None).await;
    }

    /// Bring a loaded copy up to the stored log (the part before `until`, when given).
    async fn catch_up(
        &self,
        entry: &Arc<Entry>,
        guard: &mut OwnedMutexGuard<Option<Loaded>>,
        until: Option<i64>,
    ) {
        let Some(loaded) = guard.as_mut() else {
            return;
        };
        let known = loaded.doc.oplog_vv();
        match store::since(&self.db, entry.project, loaded.seq).await {
            Ok(rows) if rows.first().is_none_or(|r| r.seq == loaded.seq + 1) => {
                for row in rows.into_iter().filter(|r| until.is_none_or(|u| r.seq < u)) {
                    match loaded.doc.import(&row.data) {
                        Ok(status) if status.pending.is_none() => self.broadcast(
                            entry,
                            loaded,
                            row.seq,
                            &row.data,
                            row.author_id,
                            row.client_id,
                        ),
                        _ => return self.rebuild(entry, guard, &known).await,
                    }
                }
            }
            _ => self.rebuild(entry, guard, &known).await,
        }
    }

    async fn compact(&self, entry: &Entry, loaded: &mut Loaded) -> ApiResult<()> {
        let snapshot = loaded
            .doc
            .export(ExportMode::Snapshot)
            .map_err(ApiError::internal)?;
        store::compact(&self.db, entry.project, snapshot, loaded.seq).await?;
        loaded.appended_since_compaction = 0;
        crate::metrics::document_compacted();
        Ok(())
    }

    /// Take an automatic checkpoint unless the newest checkpoint is this very version.
    async fn autosave(&self, entry: &Entry, loaded: &mut Loaded) -> ApiResult<()> {
        let frontiers = loaded.doc.oplog_frontiers().encode();
        let latest = store::latest_version_frontiers(&self.db, entry.project).await?;
        if latest.as_deref() != Some(frontiers.as_slice()) {
            store::insert_version(
                &self.db,
                entry.project,
                "Auto-save".into(),
                String::new(),
                frontiers,
                None,
            )
            .await?;
        }
        loaded.changed_since_checkpoint = false;
        Ok(())
    }

    /// Compact, checkpoint and unload what has gone idle.
    async fn sweep(&self) {
        let entries: Vec<Arc<Entry>> = self.lock_entries().values().cloned().collect();
        let config = &self.config;
        for entry in entries {
            let Ok(mut guard) = entry.state.clone().try_lock_owned() else {
                continue;
            };
            let idle = entry.idle_for();
            if let Some(loaded) = guard.as_mut() {
                let quiet = loaded.last_change.elapsed();
                if loaded.changed_since_checkpoint
                    && quiet >= config.autosave_idle
                    && let Err(error) = self.autosave(&entry, loaded).await
                {
                    tracing::warn!(project = %entry.project, ?error, "auto-save failed");
                }
                if loaded.appended_since_compaction > 0
                    && quiet >= config.idle_unload
                    && let Err(error) = self.compact(&entry, loaded).await
                {
                    tracing::warn!(project = %entry.project, ?error, "compaction failed");
                    continue;
                }
                if idle < config.idle_unload || entry.updates.receiver_count() > 0 {
                    continue;
                }
                if loaded.changed_since_checkpoint
                    && let Err(error) = self.autosave(&entry, loaded).await
                {
                    tracing::warn!(project = %entry.project, ?error, "auto-save failed");
                    continue;
                }
            } else if idle < config.idle_unload {
                continue;
            }
            drop(guard);
            let mut entries = self.lock_entries();
            // Two references: the map's and ours. Anybody else is about to use it.
            if Arc::strong_count(&entry) == 2 && entry.updates.receiver_count() == 0 {
                entries.remove(&entry.project);
                crate::metrics::document_unloaded();
            }
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

async fn remote_loop(
    hub: std::sync::Weak<Hub>,
    mut remote: tokio::sync::mpsc::Receiver<RemoteDoc>,
) {
    while let Some(item) = remote.recv().await {
        let Some(hub) = hub.upgrade() else { return };
        match item {
            RemoteDoc::Update(signal) => hub.receive(signal).await,
            RemoteDoc::Resync => {
                let entries: Vec<Arc<Entry>> = hub.lock_entries().values().cloned().collect();
                for entry in entries {
                    let mut guard = entry.state.clone().lock_owned().await;
                    hub.catch_up(&entry, &mut guard, None).await;
                }
            }
        }
    }
}

async fn sweep_loop(hub: std::sync::Weak<Hub>) {
    let period = {
        let Some(hub) = hub.upgrade() else { return };
        let shortest = hub
            .config
            .idle_unload
            .min(hub.config.autosave_idle)
            .min(Duration::from_secs(20));
        (shortest / 4).max(Duration::from_millis(50))
    };
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        hub.sweep().await;
    }
}

/// The safety net under the fan-out between nodes: every `period`, compare the documents
/// loaded here with the heads in the database, and catch up those still behind a head read
/// one period earlier (anything newer may still be on its way through Redis). It makes up for
/// whatever Redis never delivered: a writer's node that died between storing an update and
/// publishing it, a dropped publish, a Redis outage. One indexed query per period.
async fn head_check_loop(hub: std::sync::Weak<Hub>, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: HashMap<Uuid, i64> = HashMap::new();
    loop {
        ticker.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        let entries: Vec<Arc<Entry>> = hub.lock_entries().values().cloned().collect();
        if entries.is_empty() {
            previous.clear();
            continue;
        }
        let projects: Vec<Uuid> = entries.iter().map(|entry| entry.project).collect();
        let heads = match store::heads(&hub.db, &projects).await {
            Ok(heads) => heads,
            Err(error) => {
                tracing::warn!(?error, "head check: cannot read document heads");
                continue;
            }
        };
        for entry in &entries {
            let Some(&head) = previous.get(&entry.project) else {
                continue;
            };
            // A document in use right now is being brought up to date by that use anyway.
            let Ok(mut guard) = entry.state.clone().try_lock_owned() else {
                continue;
            };
            if guard.as_ref().is_some_and(|loaded| loaded.seq < head) {
                tracing::info!(project = %entry.project, head, "head check: catching up a document the fan-out missed");
                hub.catch_up(entry, &mut guard, None).await;
            }
        }
        previous = heads.into_iter().collect();
    }
}
