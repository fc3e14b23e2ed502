//! The write path of clients' edits, as a group commit.
//!
//! An edit is imported into the copy and checked under the document's lock, like any change,
//! but it is not committed alone. [`Hub::apply`] queues it on the document's entry and then
//! takes the lock; whoever gets the lock takes every edit queued by then (its own among them,
//! unless the holder before it already answered it), imports and checks each in turn, and
//! appends all it accepted to the log in one transaction. Edits arriving while that
//! transaction is in flight queue up for the next holder of the lock: a busy document costs
//! one transaction per commit in flight, not one per edit. Nothing is broadcast or answered
//! before its transaction has committed.
//!
//! An edit whose dependencies have not arrived (a client pipelining its edits, which reach
//! the server in another order) is not refused at once: it waits until the copy includes what
//! it needs, as long as the document keeps moving (see [`DEPENDENCY_WAIT`]).

use std::sync::{Arc, PoisonError};

use loro::VersionVector;
use tokio::sync::{OwnedMutexGuard, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use super::{
    Applied, DEPENDENCY_WAIT, DEPENDENCY_WAIT_MAX, Entry, Hub, Loaded, Waiting, encode_update,
    encode_vv, loaded_mut, missing_dependencies,
};
use crate::documents::shape::check_shape;
use crate::documents::store::{self, NewUpdate};
use crate::error::{ApiError, ApiResult};
use crate::realtime::{Announced, DocSignal};

/// Most edits one transaction appends (what queued beyond goes into the next).
const GROUP_MAX: usize = 256;

/// A client's edit waiting for the document's lock.
pub(super) struct Queued {
    update: Vec<u8>,
    /// The versions the update starts from and ends at (from its header).
    needs: VersionVector,
    ends: VersionVector,
    author: Uuid,
    client_id: Option<String>,
    answer: oneshot::Sender<Answer>,
}

/// What became of a queued edit.
enum Answer {
    /// Written (with its way to the other nodes; none when the document already had it), or
    /// refused.
    Written(ApiResult<(Applied, Option<Announced>)>),
    /// What it depends on is not in the document yet; `woken` fires once it is (or once the
    /// copy is rebuilt), and the edit is queued again.
    Wait {
        seq: i64,
        server: VersionVector,
        woken: oneshot::Receiver<()>,
    },
}

/// An update imported into the copy and checked, on its way into the log.
pub(super) struct Accepted {
    pub update: Vec<u8>,
    pub author: Option<Uuid>,
    pub client_id: Option<String>,
    /// The copy's version vector once it was imported.
    pub version: VersionVector,
}

impl Entry {
    fn queue(&self, edit: Queued) {
        self.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(edit);
    }

    fn take_queued(&self) -> Vec<Queued> {
        std::mem::take(&mut *self.queued.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Hub {
    /// Write a client's update (already checked to be an update blob of a sane size, starting
    /// at `needs` and ending at `ends`), waiting for its dependencies for a while.
    pub(super) async fn apply(
        &self,
        entry: &Arc<Entry>,
        (needs, ends): (VersionVector, VersionVector),
        update: &[u8],
        author: Uuid,
        client_id: Option<String>,
    ) -> ApiResult<Applied> {
        let mut waiting_until = Instant::now() + DEPENDENCY_WAIT;
        let give_up_at = Instant::now() + DEPENDENCY_WAIT_MAX;
        let mut seen_seq = None;
        loop {
            let (answer, answered) = oneshot::channel();
            entry.queue(Queued {
                update: update.to_vec(),
                needs: needs.clone(),
                ends: ends.clone(),
                author,
                client_id: client_id.clone(),
                answer,
            });
            match self.write_queued(entry, answered).await? {
                Answer::Written(written) => {
                    let (applied, announced) = written?;
                    // The next edit of this document need not wait for Redis; this answer does.
                    if let Some(announced) = announced {
                        announced.sent().await;
                    }
                    return Ok(applied);
                }
                Answer::Wait { seq, server, woken } => {
                    let now = Instant::now();
                    if seen_seq.is_some_and(|seen| seen != seq) {
                        // The document moves: what this update needs may be on its way.
                        waiting_until = now + DEPENDENCY_WAIT;
                    }
                    if now >= waiting_until || now >= give_up_at {
                        return Err(missing_dependencies(&server));
                    }
                    seen_seq = Some(seq);
                    let _ = tokio::time::timeout_at(waiting_until.min(give_up_at), woken).await;
                }
            }
        }
    }

    /// Take the lock and, unless the holder before did it, write what is queued.
    async fn write_queued(
        &self,
        entry: &Arc<Entry>,
        mut answered: oneshot::Receiver<Answer>,
    ) -> ApiResult<Answer> {
        // Failing here leaves the edit queued with nobody waiting: the next writer skips it.
        let mut guard = self.lock_loaded(entry).await?;
        if let Ok(answer) = answered.try_recv() {
            return Ok(answer);
        }
        let queued = entry.take_queued();
        self.write_group(entry, &mut guard, queued).await;
        drop(guard);
        answered
            .await
            .map_err(|_| ApiError::internal(anyhow::anyhow!("an edit was left unanswered")))
    }

    /// Import and check each of `queued` in turn, and append the accepted ones together.
    async fn write_group(
        &self,
        entry: &Arc<Entry>,
        guard: &mut OwnedMutexGuard<Option<Loaded>>,
        queued: Vec<Queued>,
    ) {
        let mut accepted: Vec<(Queued, VersionVector)> = Vec::new();
        let mut repeats = Vec::new();
        let mut group_start = guard.as_ref().map(|loaded| loaded.doc.oplog_vv());
        // Its client is gone (a closed socket): it was never answered, so never applied.
        let mut left: Vec<Queued> = queued
            .into_iter()
            .filter(|edit| !edit.answer.is_closed())
            .collect();
        // Pipelined edits run concurrently and queue in any order: each pass takes those whose
        // dependencies the copy holds by then, until one takes none; the rest wait.
        loop {
            let mut deferred = Vec::new();
            let mut took = false;
            for edit in left {
                if accepted.len() >= GROUP_MAX
                    && let Some(start) = &group_start
                {
                    self.append_group(entry, guard, start, &mut accepted).await;
                    group_start = guard.as_ref().map(|loaded| loaded.doc.oplog_vv());
                }
                let Some(loaded) = guard.as_mut() else {
                    let _ = edit.answer.send(Answer::Written(Err(not_loaded())));
                    continue;
                };
                let before = loaded.doc.oplog_vv();
                if !before.includes_vv(&edit.needs) {
                    deferred.push(edit);
                    continue;
                }
                took = true;
                if before.includes_vv(&edit.ends) {
                    repeats.push(edit);
                    continue;
                }
                let outcome = match loaded.doc.import(&edit.update) {
                    Err(_) => Err(ApiError::bad_input("update", "not a valid Loro update")),
                    Ok(status) if status.pending.is_some() => Err(missing_dependencies(&before)),
                    Ok(_) => check_shape(&loaded.doc, &before, &self.config),
                };
                match outcome {
                    Ok(()) => {
                        let version = loaded.doc.oplog_vv();
                        accepted.push((edit, version));
                    }
                    Err(error) => {
                        // Undone: what was accepted before it is written first, then the copy
                        // is rebuilt from the log.
                        if let Some(start) = &group_start {
                            self.append_group(entry, guard, start, &mut accepted).await;
                        }
                        self.rebuild(entry, guard, &before).await;
                        match (error, guard.as_mut()) {
                            (ApiError::OutOfDate { .. }, Some(loaded)) => {
                                let server = loaded.doc.oplog_vv();
                                wait(loaded, edit, server);
                            }
                            (error, _) => {
                                let _ = edit.answer.send(Answer::Written(Err(error)));
                            }
                        }
                        group_start = guard.as_ref().map(|loaded| loaded.doc.oplog_vv());
                    }
                }
            }
            if deferred.is_empty() {
                break;
            }
            if !took {
                for edit in deferred {
                    match guard.as_mut() {
                        Some(loaded) => {
                            let server = loaded.doc.oplog_vv();
                            wait(loaded, edit, server);
                        }
                        None => {
                            let _ = edit.answer.send(Answer::Written(Err(not_loaded())));
                        }
                    }
                }
                break;
            }
            left = deferred;
        }
        if let Some(start) = &group_start {
            self.append_group(entry, guard, start, &mut accepted).await;
        }
        // Updates the document already held: where it stands, now that the others are written.
        for edit in repeats {
            let head = loaded_mut(guard).map(|loaded| (loaded.head(), None));
            let _ = edit.answer.send(Answer::Written(head));
        }
    }

    /// Append `accepted` (imported since `start`) and answer each.
    async fn append_group(
        &self,
        entry: &Arc<Entry>,
        guard: &mut OwnedMutexGuard<Option<Loaded>>,
        start: &VersionVector,
        accepted: &mut Vec<(Queued, VersionVector)>,
    ) {
        if accepted.is_empty() {
            return;
        }
        let mut answers = Vec::with_capacity(accepted.len());
        let mut group = Vec::with_capacity(accepted.len());
        for (edit, version) in accepted.drain(..) {
            answers.push(edit.answer);
            group.push(Accepted {
                update: edit.update,
                author: Some(edit.author),
                client_id: edit.client_id,
                version,
            });
        }
        match self.append(entry, guard, start, group).await {
            Ok(written) => {
                for (answer, (applied, announced)) in answers.into_iter().zip(written) {
                    let _ = answer.send(Answer::Written(Ok((applied, Some(announced)))));
                }
            }
            Err(error) => {
                for answer in answers {
                    let _ = answer.send(Answer::Written(Err(error.again())));
                }
            }
        }
    }

    /// Store `group` (imported into the copy in order since `before`) in the log in one
    /// transaction and broadcast each update; on failure, undo them all. Each update's answer
    /// waits until it has left for the other nodes ([`Announced::sent`]).
    pub(super) async fn append(
        &self,
        entry: &Arc<Entry>,
        guard: &mut OwnedMutexGuard<Option<Loaded>>,
        before: &VersionVector,
        group: Vec<Accepted>,
    ) -> ApiResult<Vec<(Applied, Announced)>> {
        let count = group.len();
        let mut rows = Vec::with_capacity(count);
        let mut sent = Vec::with_capacity(count);
        for accepted in group {
            sent.push((
                encode_update(&accepted.update),
                Arc::<str>::from(encode_vv(&accepted.version)),
                accepted.author,
                accepted.client_id.clone(),
            ));
            rows.push(NewUpdate {
                data: accepted.update,
                author: accepted.author,
                client_id: accepted.client_id,
            });
        }
        let first = match store::append(&self.db, entry.project, rows).await {
            Ok(first) => {
                crate::metrics::log_committed();
                first
            }
            Err(error) => {
                self.rebuild(entry, guard, before).await;
                return Err(error);
            }
        };
        if first != loaded_mut(guard)?.seq + 1 {
            // Another node appended in between and its signal has not arrived yet: take
            // those updates from the log first, so subscribers here see every one.
            self.catch_up(entry, guard, Some(first)).await;
        }
        // (After a rebuild in the catch-up this may repeat what the resync carried; clients
        // import idempotently, and missing it would be worse.)
        let loaded = loaded_mut(guard)?;
        let mut written = Vec::with_capacity(count);
        for (seq, (update, version, author, client_id)) in (first..).zip(sent) {
            self.broadcast(
                entry,
                loaded,
                seq,
                update.clone(),
                version.clone(),
                author,
                client_id.clone(),
            );
            let announced = self.bus.announce_doc(DocSignal {
                project: entry.project,
                seq,
                update,
                author,
                client_id,
            });
            written.push((
                Applied {
                    seq,
                    version_vector: version,
                },
                announced,
            ));
        }
        self.written(entry, loaded, u32::try_from(count).unwrap_or(u32::MAX))
            .await;
        Ok(written)
    }
}

/// Park `edit` until the copy includes what it needs (`server` is where the copy stands).
fn wait(loaded: &mut Loaded, edit: Queued, server: VersionVector) {
    let (wake, woken) = oneshot::channel();
    loaded.waiting.push(Waiting {
        needs: edit.needs,
        wake,
    });
    let _ = edit.answer.send(Answer::Wait {
        seq: loaded.seq,
        server,
        woken,
    });
}

fn not_loaded() -> ApiError {
    ApiError::internal(anyhow::anyhow!("document not loaded"))
}
