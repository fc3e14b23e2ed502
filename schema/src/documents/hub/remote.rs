//! Remote catch-up: updates other nodes appended, from their signals on the bus, from the
//! log store when a signal is missing, and from the head check when the fan-out missed one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{Entry, Hub, Loaded, encode_update};
use crate::documents::store;
use crate::realtime::{DocSignal, RemoteDoc};

impl Hub {
    /// An update another node appended.
    pub(super) async fn receive(&self, signal: DocSignal) {
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
        // Decoded once to import; subscribers here get the sender's base64 text as it came.
        if signal.seq == loaded.seq + 1
            && let Ok(bytes) = STANDARD.decode(signal.update.as_bytes())
            && let Ok(status) = loaded.doc.import(&bytes)
            && status.pending.is_none()
        {
            let version = loaded.version();
            self.broadcast(
                &entry,
                loaded,
                signal.seq,
                signal.update,
                version,
                signal.author,
                signal.client_id,
            );
            return;
        }
        self.catch_up(&entry, &mut guard, None).await;
    }

    /// Bring a loaded copy up to the stored log (the part before `until`, when given).
    pub(super) async fn catch_up(
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
                        Ok(status) if status.pending.is_none() => {
                            let version = loaded.version();
                            self.broadcast(
                                entry,
                                loaded,
                                row.seq,
                                encode_update(&row.data),
                                version,
                                row.author_id,
                                row.client_id,
                            );
                        }
                        _ => return self.rebuild(entry, guard, &known).await,
                    }
                }
            }
            _ => self.rebuild(entry, guard, &known).await,
        }
    }
}

/// Apply what other nodes appended, as their signals arrive, until `stop`.
pub(super) async fn remote_loop(
    hub: std::sync::Weak<Hub>,
    stop: CancellationToken,
    mut remote: tokio::sync::mpsc::Receiver<RemoteDoc>,
) {
    loop {
        let item = tokio::select! {
            () = stop.cancelled() => return,
            item = remote.recv() => match item {
                Some(item) => item,
                None => return,
            },
        };
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

/// The safety net under the fan-out between nodes: every `period`, compare the documents
/// loaded here with the heads in the database, and catch up those still behind a head read
/// one period earlier (anything newer may still be on its way through Redis). It makes up for
/// whatever Redis never delivered: a writer's node that died between storing an update and
/// publishing it, a dropped publish, a Redis outage. One indexed query per period.
pub(super) async fn head_check_loop(
    hub: std::sync::Weak<Hub>,
    stop: CancellationToken,
    period: Duration,
) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: HashMap<Uuid, i64> = HashMap::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
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
