//! What a worker does with a run: claim it, execute it in the sandbox while its output is
//! streamed, record the result exactly once, retry infrastructure failures, and take up runs
//! whose worker died.
//!
//! The run's row is the truth. A worker claims a run with a conditional update (QUEUED ->
//! RUNNING), keeps `heartbeat_at` fresh while it runs, and writes the result with another
//! conditional update (RUNNING by this worker -> final). A run whose heartbeat went stale (its
//! worker was killed) is put back to QUEUED and enqueued again by any worker's reaper, so it
//! ends exactly once whatever dies on the way.

use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as ChronoDuration;
use entity::prelude::*;
use entity::project::Language;
use entity::run::{self, RunStatus};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::config::RunLimits;
use crate::error::{ApiError, ApiResult};
use crate::realtime::{ProjectEvent, RunSignal};
use crate::state::Services;
use crate::time::now;

/// How often a running run's heartbeat is written, and output flushed to its row.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A run whose heartbeat is older than this lost its worker.
const STALE_AFTER: ChronoDuration = ChronoDuration::seconds(10);
/// A worker whose heartbeat has failed this long stops its run's sandbox: a reaper may soon
/// hand the run to another worker (well before `STALE_AFTER`).
const FENCE_AFTER: Duration = Duration::from_secs(6);
/// A queued run this old without a worker taking it is enqueued again (a lost job).
const FORGOTTEN_AFTER: ChronoDuration = ChronoDuration::seconds(30);

/// The sandbox's name for a project language.
pub fn sandbox_language(language: Language) -> jobs::sandbox::Language {
    use jobs::sandbox::Language as L;
    match language {
        Language::Python => L::Python,
        Language::JavaScript => L::JavaScript,
        Language::C => L::C,
        Language::Cpp => L::Cpp,
        Language::Bash => L::Bash,
        Language::Rust => L::Rust,
        Language::Java => L::Java,
        Language::Go => L::Go,
        Language::TypeScript => L::TypeScript,
        Language::Ruby => L::Ruby,
    }
}

/// The language as stored (PYTHON, RUST…), a metrics label.
fn language_name(language: Language) -> String {
    use sea_orm::ActiveEnum;
    language.to_value()
}

/// How long ago `since` was.
fn waited(since: chrono::DateTime<chrono::Utc>) -> Duration {
    (chrono::Utc::now() - since).to_std().unwrap_or_default()
}

/// The status as stored and sent: QUEUED, RUNNING, SUCCEEDED…
fn status_name(status: RunStatus) -> String {
    use sea_orm::ActiveEnum;
    status.to_value()
}

/// Tell the run's followers and the project that a run ended.
pub fn announce_finished(services: &Services, run: &run::Model, status: RunStatus) {
    crate::metrics::run_finished(language_name(run.language), status_name(status));
    services.bus.publish_run(
        run.id,
        RunSignal::Finished {
            status: status_name(status),
        },
    );
    services.announce(
        run.project_id,
        ProjectEvent::RunFinished {
            run: run.id,
            status: status_name(status),
        },
    );
}

/// Executes runs for one worker process (or the server, in embedded mode).
pub struct Executor {
    services: Services,
    worker_id: String,
}

impl Executor {
    pub fn new(services: Services, worker_id: String) -> Arc<Self> {
        Arc::new(Self {
            services,
            worker_id,
        })
    }

    async fn enqueue(&self, id: Uuid) -> ApiResult<()> {
        self.services
            .runs
            .queue
            .push(id)
            .await
            .map_err(ApiError::internal)
    }

    /// Take the run if it is waiting. `None` when somebody else has it or it has ended.
    async fn claim(&self, id: Uuid) -> ApiResult<Option<run::Model>> {
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
            .exec(&self.services.db)
            .await?;
        if claimed.rows_affected == 0 {
            return Ok(None);
        }
        Ok(Run::find_by_id(id).one(&self.services.db).await?)
    }

    async fn process(&self, id: Uuid) -> ApiResult<()> {
        let Some(run) = self.claim(id).await? else {
            return Ok(());
        };
        let services = &self.services;
        crate::metrics::run_claimed(language_name(run.language), waited(run.created_at));
        services.bus.publish_run(
            id,
            RunSignal::Status {
                status: status_name(RunStatus::Running),
            },
        );
        services.announce(
            run.project_id,
            ProjectEvent::RunStarted {
                run: id,
                by: run.requested_by,
            },
        );
        // A cancel may come over the bus (any node) or be found in the row (heartbeat).
        let (cancel_tx, cancel_rx) = watch::channel(run.cancel_requested);
        let mut cancels = services.bus.subscribe_run(id);
        let cancel_on_signal = cancel_tx.clone();
        let listener = tokio::spawn(async move {
            while let Ok(signal) = cancels.recv().await {
                if *signal == RunSignal::Cancel {
                    let _ = cancel_on_signal.send(true);
                }
            }
        });
        let outcome = self.execute(&run, cancel_tx, cancel_rx).await;
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
    ) -> Result<Finished, String> {
        let limits: RunLimits = serde_json::from_value(run.limits.clone())
            .map_err(|e| format!("unreadable limits: {e}"))?;
        let files: std::collections::BTreeMap<String, String> =
            serde_json::from_value(run.files.clone())
                .map_err(|e| format!("unreadable files: {e}"))?;
        let spec = jobs::sandbox::RunSpec {
            language: sandbox_language(run.language),
            files: files
                .into_iter()
                .map(|(path, text)| (path, text.into_bytes()))
                .collect(),
            entry: run.entry.clone(),
            stdin: run.stdin.clone(),
            limits: jobs::sandbox::Limits {
                wall: Duration::from_millis(limits.wall_ms),
                cpu: Duration::from_millis(limits.cpu_ms),
                memory_bytes: limits.memory_bytes,
                processes: limits.processes,
                file_bytes: limits.file_bytes,
                output_bytes: limits.output_bytes,
                ..jobs::sandbox::Limits::default()
            },
        };
        let (chunks_tx, mut chunks) = mpsc::unbounded_channel::<jobs::sandbox::OutputChunk>();
        let sandbox = jobs::sandbox::run(&self.services.runs.config.bwrap, spec, chunks_tx, cancel);
        tokio::pin!(sandbox);
        // A later attempt goes on numbering where the earlier one stopped, so followers keep
        // receiving (its output replaces the earlier attempt's in the row).
        let mut output = Output {
            seq: run.output_seq,
            ..Output::default()
        };
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
                        output.take(&self.services, run.id, chunk);
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
                    output.take(&self.services, run.id, chunk);
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

    /// Keep the run ours and its output so far in the row; answers whether it still is, and
    /// whether a cancel was asked.
    async fn beat(&self, id: Uuid, attempt: i32, output: &Output) -> ApiResult<Beat> {
        let kept = Run::update_many()
            .col_expr(run::Column::HeartbeatAt, Expr::value(now()))
            .col_expr(run::Column::Stdout, Expr::value(output.text(false)))
            .col_expr(run::Column::Stderr, Expr::value(output.text(true)))
            .col_expr(run::Column::OutputSeq, Expr::value(output.seq))
            .filter(run::Column::Id.eq(id))
            .filter(run::Column::WorkerId.eq(self.worker_id.clone()))
            // The attempt too: the same worker may hold a later claim of the same run.
            .filter(run::Column::Attempts.eq(attempt))
            .filter(run::Column::Status.eq(RunStatus::Running))
            .exec(&self.services.db)
            .await?;
        if kept.rows_affected == 0 {
            return Ok(Beat::Lost);
        }
        let cancel = Run::find_by_id(id)
            .one(&self.services.db)
            .await?
            .is_some_and(|r| r.cancel_requested);
        Ok(Beat::Ours { cancel })
    }

    /// Record the result, once: only while the run is still ours and running.
    async fn finish(&self, run: &run::Model, finished: Finished) -> ApiResult<()> {
        use jobs::sandbox::Status as S;
        let outcome = &finished.outcome;
        let status = match outcome.status {
            S::Succeeded => RunStatus::Succeeded,
            S::Failed => RunStatus::Failed,
            S::TimedOut => RunStatus::TimedOut,
            S::MemoryLimit => RunStatus::MemoryLimit,
            S::OutputLimit => RunStatus::OutputLimit,
            S::Cancelled => RunStatus::Cancelled,
        };
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
            .col_expr(run::Column::OutputSeq, Expr::value(output.seq))
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
            .filter(run::Column::Id.eq(run.id))
            .filter(run::Column::WorkerId.eq(self.worker_id.clone()))
            .filter(run::Column::Attempts.eq(run.attempts))
            .filter(run::Column::Status.eq(RunStatus::Running))
            .exec(&self.services.db)
            .await?;
        if written.rows_affected == 1 {
            let language = language_name(run.language);
            crate::metrics::run_measured(language, outcome.wall_time, outcome.cpu_time);
            announce_finished(&self.services, run, status);
        }
        Ok(())
    }

    /// The sandbox could not do its job: try again later, or give up after the last attempt.
    async fn failed_attempt(&self, run: &run::Model, reason: String) -> ApiResult<()> {
        tracing::warn!(run = %run.id, attempt = run.attempts, %reason, "run attempt failed");
        crate::metrics::sandbox_failed();
        let max = self.services.runs.config.max_attempts;
        if run.attempts >= max {
            return self.give_up(run, &reason).await;
        }
        let requeued = Run::update_many()
            .col_expr(run::Column::Status, Expr::value(RunStatus::Queued))
            .col_expr(run::Column::WorkerId, Expr::value(Option::<String>::None))
            .col_expr(run::Column::Error, Expr::value(reason))
            .filter(run::Column::Id.eq(run.id))
            .filter(run::Column::WorkerId.eq(self.worker_id.clone()))
            .filter(run::Column::Attempts.eq(run.attempts))
            .filter(run::Column::Status.eq(RunStatus::Running))
            .exec(&self.services.db)
            .await?;
        if requeued.rows_affected == 1 {
            self.services.bus.publish_run(
                run.id,
                RunSignal::Status {
                    status: status_name(RunStatus::Queued),
                },
            );
            let backoff = Duration::from_millis(250 * 2u64.pow(run.attempts.clamp(0, 6) as u32));
            tokio::time::sleep(backoff).await;
            self.enqueue(run.id).await?;
        }
        Ok(())
    }

    async fn give_up(&self, run: &run::Model, reason: &str) -> ApiResult<()> {
        let written = Run::update_many()
            .col_expr(run::Column::Status, Expr::value(RunStatus::InternalError))
            .col_expr(
                run::Column::Error,
                Expr::value(format!("gave up after {} attempts: {reason}", run.attempts)),
            )
            .col_expr(run::Column::FinishedAt, Expr::value(now()))
            .filter(run::Column::Id.eq(run.id))
            .filter(run::Column::Status.is_in([RunStatus::Running, RunStatus::Queued]))
            .exec(&self.services.db)
            .await?;
        if written.rows_affected == 1 {
            announce_finished(&self.services, run, RunStatus::InternalError);
        }
        Ok(())
    }

    /// Put back runs whose worker died, and enqueue again runs nobody took.
    pub async fn reap(&self) -> ApiResult<()> {
        let db = &self.services.db;
        let stale = Run::find()
            .filter(run::Column::Status.eq(RunStatus::Running))
            .filter(run::Column::HeartbeatAt.lt(now() - STALE_AFTER))
            .all(db)
            .await?;
        for run in stale {
            if run.attempts >= self.services.runs.config.max_attempts {
                self.give_up(&run, "its worker stopped answering").await?;
                continue;
            }
            // Only the reaper that sees the same stale heartbeat wins.
            let requeued = Run::update_many()
                .col_expr(run::Column::Status, Expr::value(RunStatus::Queued))
                .col_expr(run::Column::WorkerId, Expr::value(Option::<String>::None))
                .filter(run::Column::Id.eq(run.id))
                .filter(run::Column::Status.eq(RunStatus::Running))
                .filter(run::Column::HeartbeatAt.eq(run.heartbeat_at))
                .exec(db)
                .await?;
            if requeued.rows_affected == 1 {
                tracing::warn!(run = %run.id, worker = ?run.worker_id, "taking up a run whose worker died");
                self.enqueue(run.id).await?;
            }
        }
        let forgotten = Run::find()
            .filter(run::Column::Status.eq(RunStatus::Queued))
            .filter(run::Column::CreatedAt.lt(now() - FORGOTTEN_AFTER))
            .filter(
                sea_orm::Condition::any()
                    .add(run::Column::HeartbeatAt.is_null())
                    .add(run::Column::HeartbeatAt.lt(now() - FORGOTTEN_AFTER)),
            )
            .all(db)
            .await?;
        for run in forgotten {
            // A duplicate job finds the run taken and does nothing.
            let touched = Run::update_many()
                .col_expr(run::Column::HeartbeatAt, Expr::value(now()))
                .filter(run::Column::Id.eq(run.id))
                .filter(run::Column::Status.eq(RunStatus::Queued))
                .exec(db)
                .await?;
            if touched.rows_affected == 1 {
                self.enqueue(run.id).await?;
            }
        }
        Ok(())
    }

    /// Reap every few seconds until `stop` says so.
    pub async fn reap_until(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(Duration::from_secs(3));
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if let Err(error) = self.reap().await {
                        tracing::warn!(?error, "reaping runs failed");
                    }
                }
                _ = stop.changed() => return,
            }
        }
    }
}

#[async_trait::async_trait]
impl jobs::queue::RunHandler for Executor {
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
    outcome: jobs::sandbox::Outcome,
    output: Output,
}

/// Output kept for the row and numbered as it is published. The sandbox already stops each
/// stream at the run's output limit (and says so in its outcome).
#[derive(Default)]
struct Output {
    streams: [Vec<u8>; 2],
    seq: i64,
}

impl Output {
    fn take(&mut self, services: &Services, run: Uuid, chunk: jobs::sandbox::OutputChunk) {
        if chunk.data.is_empty() {
            return;
        }
        self.streams[usize::from(chunk.stderr)].extend_from_slice(&chunk.data);
        self.seq += 1;
        services.bus.publish_run(
            run,
            RunSignal::Output {
                stderr: chunk.stderr,
                seq: self.seq,
                data: chunk.data,
            },
        );
    }

    /// The stream as stored: any bytes are safe on both databases (invalid UTF-8 becomes
    /// U+FFFD, and so does NUL, which PostgreSQL's `text` refuses).
    fn text(&self, stderr: bool) -> String {
        String::from_utf8_lossy(&self.streams[usize::from(stderr)]).replace('\0', "\u{FFFD}")
    }
}
