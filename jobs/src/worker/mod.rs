//! What a worker does with a run: claim it, execute it in the sandbox while its output is
//! streamed, record the result exactly once, retry infrastructure failures, and take up runs
//! whose worker died (see `reaper`).
//!
//! The run's row is the truth. A worker claims a run with a conditional update (QUEUED ->
//! RUNNING), keeps `heartbeat_at` fresh while it runs, and writes the result with another
//! conditional update (RUNNING by this worker, this attempt -> final). A run whose heartbeat
//! went stale (its worker was killed) is put back to QUEUED and enqueued again by any
//! worker's reaper, so it ends exactly once whatever dies on the way.
//!
//! The worker knows the database, the queue and the bus it publishes run events on (and
//! hears cancels from); nothing of GraphQL, tokens or documents.

mod output;
mod reaper;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use entity::prelude::*;
use entity::project::Language;
use entity::run::{self, RunStatus};
use entity::time::now;
use realtime::{Bus, RunSignal};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter};
use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::RunLimits;
use crate::queue::Queue;
use crate::sandbox;
use output::Output;

/// How often a running run's heartbeat is written, and output flushed to its row.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Followers' replay requests a running run keeps before it drops more.
const REPLAYS_WAITING: usize = 16;
/// A worker whose heartbeat has failed this long stops its run's sandbox: a reaper may soon
/// hand the run to another worker (well before `reaper::STALE_AFTER`).
const FENCE_AFTER: Duration = Duration::from_secs(6);

/// Attempts a run gets when its failures are the infrastructure's, unless configured.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 3;

/// How a worker executes runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Infrastructure failures are retried; a run is given up (INTERNAL_ERROR) after this
    /// many attempts.
    pub max_attempts: i32,
    /// The `bwrap` executable the sandbox uses.
    pub bwrap: PathBuf,
    /// Sandboxes kept started ahead of runs (see `sandbox::Warm`): one per run the worker
    /// takes at a time.
    pub sandboxes_ahead: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            bwrap: "bwrap".into(),
            sandboxes_ahead: 1,
        }
    }
}

/// Told what this process's workers do with runs, for `/metrics` (`()` tells nobody).
pub trait RunObserver: Send + Sync + 'static {
    /// A run was claimed after `waited` in the queue.
    fn claimed(&self, _language: Language, _waited: Duration) {}
    /// A run's program ended after `wall` and `cpu` (the whole process tree's).
    fn measured(&self, _language: Language, _wall: Duration, _cpu: Duration) {}
    /// The sandbox itself failed (the attempt is retried or given up).
    fn sandbox_failed(&self) {}
    fn finished(&self, _language: Language, _status: RunStatus) {}
}

impl RunObserver for () {}

/// How long ago `since` was.
fn waited(since: chrono::DateTime<chrono::Utc>) -> Duration {
    (chrono::Utc::now() - since).to_std().unwrap_or_default()
}

/// Tell the run's followers and its project that it ended.
pub fn announce_finished(bus: &Bus, run: &run::Model, status: RunStatus) {
    bus.run_finished(run.project_id, run.id, status);
}

/// Executes runs for one worker process (or the server, in embedded mode).
pub struct Executor {
    db: DatabaseConnection,
    queue: Queue,
    bus: Arc<Bus>,
    config: WorkerConfig,
    worker_id: String,
    observer: Arc<dyn RunObserver>,
    sandboxes: Arc<sandbox::Warm>,
}

impl Executor {
    pub fn new(
        db: DatabaseConnection,
        queue: Queue,
        bus: Arc<Bus>,
        config: WorkerConfig,
        worker_id: String,
        observer: Arc<dyn RunObserver>,
    ) -> Arc<Self> {
        Arc::new(Self {
            sandboxes: sandbox::Warm::new(config.bwrap.clone(), config.sandboxes_ahead),
            db,
            queue,
            bus,
            config,
            worker_id,
            observer,
        })
    }

    /// Stop the sandboxes started ahead of runs (once no more runs are taken).
    pub async fn close(&self) {
        self.sandboxes.close().await;
    }

    async fn enqueue(&self, id: Uuid) -> anyhow::Result<()> {
        self.queue.push(id).await
    }

    fn announce_finished(&self, run: &run::Model, status: RunStatus) {
        self.observer.finished(run.language, status);
        announce_finished(&self.bus, run, status);
    }

    /// Take the run if it is waiting. `None` when somebody else has it or it has ended.
    #[tracing::instrument(name = "claim run", skip_all, fields(run = %id, claimed))]
    async fn claim(&self, id: Uuid) -> anyhow::Result<Option<run::Model>> {
        let at = now();
        let claimed = Run::update_many()
            .col_expr(run::Column::Status, Expr::value(RunStatus::Running))
            .col_expr(
                run::Column::Attempts,
                Expr::col(run::Column::Attempts).add(1),
            )
            .col_expr(run::Column::WorkerId, Expr::value(self.worker_id.clone()))
            .col_expr(run::Column::StartedAt, Expr::value(at))
            .col_expr(run::Column::HeartbeatAt, Expr::value(at))
            .filter(run::Column::Id.eq(id))
            .filter(run::Column::Status.eq(RunStatus::Queued))
            .exec(&self.db)
            .await?;
        tracing::Span::current().record("claimed", claimed.rows_affected == 1);
        if claimed.rows_affected == 0 {
            return Ok(None);
        }
        Ok(Run::find_by_id(id).one(&self.db).await?)
    }

    async fn process(&self, id: Uuid) -> anyhow::Result<()> {
        let Some(run) = self.claim(id).await? else {
            return Ok(());
        };
        self.observer.claimed(run.language, waited(run.created_at));
        self.bus.publish_run(
            id,
            RunSignal::Status {
                status: RunStatus::Running,
            },
        );
        self.bus.run_started(run.project_id, id, run.requested_by);
        // A cancel may come over the bus (any node) or be found in the row (heartbeat); a
        // follower's request to replay output comes over the bus.
        let (cancel_tx, cancel_rx) = watch::channel(run.cancel_requested);
        let (replay_tx, replays) = mpsc::channel(REPLAYS_WAITING);
        let mut asked = self.bus.subscribe_run(id);
        let cancel_on_signal = cancel_tx.clone();
        let listener = tokio::spawn(async move {
            while let Ok(signal) = asked.recv().await {
                match *signal {
                    RunSignal::Cancel => {
                        let _ = cancel_on_signal.send(true);
                    }
                    // More at once than the worker keeps up with: the follower stops waiting
                    // for them and goes on without (it has everything at the end).
                    RunSignal::Replay { after } => {
                        let _ = replay_tx.try_send(after);
                    }
                    _ => {}
                }
            }
        });
        let outcome = self.execute(&run, cancel_tx, cancel_rx, replays).await;
        listener.abort();
        match outcome {
            Ok(result) => self.finish(&run, result).await,
            Err(reason) => self.failed_attempt(&run, reason).await,
        }
    }

    /// Run it in the sandbox, streaming output, keeping the heartbeat.
    async fn execute(
        &self,
        run: &run::Model,
        cancel_tx: watch::Sender<bool>,
        cancel: watch::Receiver<bool>,
        mut replays: mpsc::Receiver<i64>,
    ) -> Result<Finished, String> {
        let limits: RunLimits = serde_json::from_value(run.limits.clone())
            .map_err(|e| format!("unreadable limits: {e}"))?;
        let files: std::collections::BTreeMap<String, String> =
            serde_json::from_value(run.files.clone())
                .map_err(|e| format!("unreadable files: {e}"))?;
        let spec = sandbox::RunSpec {
            language: run.language.into(),
            files: files
                .into_iter()
                .map(|(path, text)| (path, text.into_bytes()))
                .collect(),
            entry: run.entry.clone(),
            stdin: run.stdin.clone(),
            limits,
        };
        let (chunks_tx, mut chunks) = mpsc::unbounded_channel::<sandbox::OutputChunk>();
        let sandbox_span = tracing::info_span!("sandbox", run = %run.id, language = ?run.language, attempt = run.attempts);
        let sandbox = self
            .sandboxes
            .run(spec, chunks_tx, cancel)
            .instrument(sandbox_span);
        tokio::pin!(sandbox);
        // A later attempt goes on numbering where the earlier one stopped, so followers keep
        // receiving (its output replaces the earlier attempt's in the row).
        let mut output = Output::from_seq(run.output_seq);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        // Fencing: once the run may have been handed to another worker (its claim is gone, or
        // the heartbeat failed for long enough that a reaper may think this worker dead), the
        // sandbox is killed and nothing of this attempt is recorded.
        let mut fenced: Option<String> = None;
        let mut last_beat = std::time::Instant::now();
        loop {
            tokio::select! {
                result = &mut sandbox => {
                    while let Ok(chunk) = chunks.try_recv() {
                        output.take(&self.bus, run.id, chunk);
                    }
                    if let Some(reason) = fenced {
                        return Err(reason);
                    }
                    return match result {
                        Ok(outcome) => Ok(Finished { outcome, output }),
                        Err(error) => Err(error.to_string()),
                    };
                }
                Some(chunk) = chunks.recv() => {
                    output.take(&self.bus, run.id, chunk);
                }
                Some(after) = replays.recv() => {
                    output.replay(&self.bus, run.id, after);
                }
                _ = heartbeat.tick(), if fenced.is_none() => {
                    match self.beat(run.id, run.attempts, &output).await {
                        Ok(Beat::Ours { cancel }) => {
                            last_beat = std::time::Instant::now();
                            if cancel {
                                let _ = cancel_tx.send(true);
                            }
                        }
                        Ok(Beat::Lost) => {
                            tracing::warn!(run = %run.id, "the run was taken from this worker; stopping its sandbox");
                            fenced = Some("the run was taken over by another worker".into());
                            let _ = cancel_tx.send(true);
                        }
                        Err(error) => {
                            tracing::warn!(run = %run.id, ?error, "heartbeat failed");
                            if last_beat.elapsed() > FENCE_AFTER {
                                fenced = Some(format!(
                                    "no heartbeat for {}s",
                                    last_beat.elapsed().as_secs()
                                ));
                                let _ = cancel_tx.send(true);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The run's row while this worker holds attempt `attempt` of it (RUNNING, claimed by this
    /// worker): the fence of every write of a claimed run.
    fn held(&self, id: Uuid, attempt: i32) -> Condition {
        Condition::all()
            .add(run::Column::Id.eq(id))
            .add(run::Column::WorkerId.eq(self.worker_id.clone()))
            // The attempt too: the same worker may hold a later claim of the same run.
            .add(run::Column::Attempts.eq(attempt))
            .add(run::Column::Status.eq(RunStatus::Running))
    }

    /// Keep the run ours and its output so far in the row; answers whether it still is, and
    /// whether a cancel was asked.
    async fn beat(&self, id: Uuid, attempt: i32, output: &Output) -> anyhow::Result<Beat> {
        let kept = Run::update_many()
            .col_expr(run::Column::HeartbeatAt, Expr::value(now()))
            .col_expr(run::Column::Stdout, Expr::value(output.text(false)))
            .col_expr(run::Column::Stderr, Expr::value(output.text(true)))
            .col_expr(run::Column::OutputSeq, Expr::value(output.seq()))
            .filter(self.held(id, attempt))
            .exec(&self.db)
            .await?;
        if kept.rows_affected == 0 {
            return Ok(Beat::Lost);
        }
        let cancel = Run::find_by_id(id)
            .one(&self.db)
            .await?
            .is_some_and(|r| r.cancel_requested);
        Ok(Beat::Ours { cancel })
    }

    /// Record the result, once: only while the run is still ours and running.
    #[tracing::instrument(name = "finish run", skip_all, fields(run = %run.id, status, recorded))]
    async fn finish(&self, run: &run::Model, finished: Finished) -> anyhow::Result<()> {
        use sandbox::Status as S;
        let outcome = &finished.outcome;
        let status = match outcome.status {
            S::Succeeded => RunStatus::Succeeded,
            S::Failed => RunStatus::Failed,
            S::TimedOut => RunStatus::TimedOut,
            S::MemoryLimit => RunStatus::MemoryLimit,
            S::OutputLimit => RunStatus::OutputLimit,
            S::Cancelled => RunStatus::Cancelled,
        };
        tracing::Span::current().record("status", tracing::field::debug(status));
        let output = &finished.output;
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let written = Run::update_many()
            .col_expr(run::Column::Status, Expr::value(status))
            .col_expr(run::Column::ExitCode, Expr::value(outcome.exit_code))
            .col_expr(run::Column::Signal, Expr::value(outcome.signal))
            .col_expr(run::Column::Stdout, Expr::value(output.text(false)))
            .col_expr(run::Column::Stderr, Expr::value(output.text(true)))
            .col_expr(
                run::Column::StdoutTruncated,
                Expr::value(outcome.stdout_truncated),
            )
            .col_expr(
                run::Column::StderrTruncated,
                Expr::value(outcome.stderr_truncated),
            )
            .col_expr(run::Column::OutputSeq, Expr::value(output.seq()))
            .col_expr(run::Column::WallMs, Expr::value(millis(outcome.wall_time)))
            .col_expr(run::Column::CpuMs, Expr::value(millis(outcome.cpu_time)))
            .col_expr(
                run::Column::PeakMemoryBytes,
                Expr::value(
                    outcome
                        .peak_memory_bytes
                        .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
                ),
            )
            .col_expr(run::Column::Error, Expr::value(outcome.error.clone()))
            .col_expr(run::Column::FinishedAt, Expr::value(now()))
            .filter(self.held(run.id, run.attempts))
            .exec(&self.db)
            .await?;
        tracing::Span::current().record("recorded", written.rows_affected == 1);
        if written.rows_affected == 1 {
            self.observer
                .measured(run.language, outcome.wall_time, outcome.cpu_time);
            self.announce_finished(run, status);
        }
        Ok(())
    }

    /// The sandbox could not do its job: try again later, or give up after the last attempt.
    #[tracing::instrument(name = "failed attempt", skip_all, fields(run = %run.id, attempt = run.attempts))]
    async fn failed_attempt(&self, run: &run::Model, reason: String) -> anyhow::Result<()> {
        tracing::warn!(run = %run.id, attempt = run.attempts, %reason, "run attempt failed");
        self.observer.sandbox_failed();
        if run.attempts >= self.config.max_attempts {
            return self.give_up(run, &reason).await;
        }
        let requeued = Run::update_many()
            .col_expr(run::Column::Status, Expr::value(RunStatus::Queued))
            .col_expr(run::Column::WorkerId, Expr::value(Option::<String>::None))
            .col_expr(run::Column::Error, Expr::value(reason))
            .filter(self.held(run.id, run.attempts))
            .exec(&self.db)
            .await?;
        if requeued.rows_affected == 1 {
            self.bus.publish_run(
                run.id,
                RunSignal::Status {
                    status: RunStatus::Queued,
                },
            );
            let backoff = Duration::from_millis(250 * 2u64.pow(run.attempts.clamp(0, 6) as u32));
            tokio::time::sleep(backoff).await;
            self.enqueue(run.id)
                .await
                .context("cannot enqueue a retry")?;
        }
        Ok(())
    }

    async fn give_up(&self, run: &run::Model, reason: &str) -> anyhow::Result<()> {
        let written = Run::update_many()
            .col_expr(run::Column::Status, Expr::value(RunStatus::InternalError))
            .col_expr(
                run::Column::Error,
                Expr::value(format!("gave up after {} attempts: {reason}", run.attempts)),
            )
            .col_expr(run::Column::FinishedAt, Expr::value(now()))
            .filter(run::Column::Id.eq(run.id))
            .filter(run::Column::Status.is_in([RunStatus::Running, RunStatus::Queued]))
            .exec(&self.db)
            .await?;
        if written.rows_affected == 1 {
            self.announce_finished(run, RunStatus::InternalError);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::queue::RunHandler for Executor {
    async fn handle(&self, run_id: Uuid) {
        if let Err(error) = self.process(run_id).await {
            tracing::error!(run = %run_id, ?error, "run bookkeeping failed");
        }
    }
}

/// What a heartbeat found.
enum Beat {
    Ours {
        cancel: bool,
    },
    /// The run is no longer this worker's (requeued by a reaper, or ended).
    Lost,
}

/// A finished sandbox run and the output the worker kept.
struct Finished {
    outcome: sandbox::Outcome,
    output: Output,
}
