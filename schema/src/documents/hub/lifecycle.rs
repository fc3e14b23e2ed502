//! Loading and unloading: a document is built from the log store when first used (and
//! rebuilt from it when a write is undone), and the
//! sweep compacts, checkpoints and unloads what has gone idle. On shutdown the sweep stops
//! and every pending checkpoint is written ([`Hub::flush`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use loro::{ExportMode, LoroDoc, VersionVector};
use sea_orm::DatabaseConnection;
use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{DocUpdate, Entry, Hub, Loaded, encode_update};
use crate::documents::store;
use crate::error::{ApiError, ApiResult};
use crate::versions;

/// Build a document from what is stored.
pub(super) async fn load(db: &DatabaseConnection, project: Uuid) -> ApiResult<Loaded> {
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
        waiting: Vec::new(),
    })
}

impl Hub {
    /// Lock a document, loading it first if needed.
    pub(super) async fn lock_loaded(
        &self,
        entry: &Arc<Entry>,
    ) -> ApiResult<OwnedMutexGuard<Option<Loaded>>> {
        let mut guard = entry.state.clone().lock_owned().await;
        if guard.is_none() {
            *guard = Some(load(&self.db, entry.project).await?);
        }
        Ok(guard)
    }

    /// Throw the copy away and build it again from the database; whatever the database
    /// holds beyond `known` (the version subscribers have seen) is broadcast as a resync.
    pub(super) async fn rebuild(
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
                        update: encode_update(&update),
                        author: None,
                        client_id: None,
                        version_vector: fresh.version(),
                        frames: Default::default(),
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

    pub(super) async fn compact(&self, entry: &Entry, loaded: &mut Loaded) -> ApiResult<()> {
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
        versions::store::auto_save(&self.db, entry.project, frontiers).await?;
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

    /// Write the checkpoints the sweep would have taken later: an automatic one of every
    /// document changed since its last. For shutdown, once the background tasks have
    /// stopped; a document in use is waited for. (The log needs no flush: every update is
    /// stored before it is acknowledged.)
    pub(super) async fn flush(&self) {
        let entries: Vec<Arc<Entry>> = self.lock_entries().values().cloned().collect();
        for entry in entries {
            let mut guard = entry.state.clone().lock_owned().await;
            if let Some(loaded) = guard.as_mut()
                && loaded.changed_since_checkpoint
                && let Err(error) = self.autosave(&entry, loaded).await
            {
                tracing::warn!(project = %entry.project, ?error, "auto-save on shutdown failed");
            }
        }
    }
}

/// Sweep every so often (a fraction of the shortest idle delay) until `stop`.
pub(super) async fn sweep_loop(hub: std::sync::Weak<Hub>, stop: CancellationToken) {
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
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Some(hub) = hub.upgrade() else { return };
        hub.sweep().await;
    }
}
