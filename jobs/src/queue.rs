//! The queue of code runs: apalis on a SQLite file (embedded mode) or on Redis (production).
//!
//! A job carries only the id of its run; the run's row is the truth about what to do and
//! whether it was done. Delivery is at least once: the handler claims the run in the database
//! before executing it, so a job delivered twice runs once.
//!
//! A job also carries the trace it was enqueued in (a W3C `traceparent`), so that the worker's
//! spans continue the request's trace: one trace runs from `runCode` to the run's result.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use apalis::prelude::*;
use apalis_redis::RedisStorage;
use apalis_sqlite::{SqliteConnectOptions, SqlitePool, SqliteStorage};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::Instrument as _;
use uuid::Uuid;

/// How often an idle worker looks for jobs (the backends' default is their 30 s heartbeat).
/// A worker of this process is also woken at once when this process enqueues a run and when
/// one of its runs ends (a slot is free): in embedded mode, and on an API node with workers
/// in-process, a run starts without waiting for the poll; a `codecrafter worker` process
/// finds what other processes enqueued at its next poll.
const POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The backends' heartbeat, which also wakes an idle worker: measured here, a worker
/// sometimes missed its poll timer and found a waiting job only at the next heartbeat (30 s
/// by default), so it is kept short.
const WAKE: std::time::Duration = std::time::Duration::from_secs(1);

/// One code run to execute.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunJob {
    pub run_id: Uuid,
    /// The trace of whoever enqueued it; absent in jobs enqueued without traces (and in jobs
    /// from before it existed, which still decode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// What a worker does with a job. An error is logged; the handler itself records failures
/// in the run's row and schedules retries, so the queue never retries on its own.
#[async_trait::async_trait]
pub trait RunHandler: Send + Sync + 'static {
    async fn handle(&self, run_id: Uuid);
}

/// Where jobs wait, and how this process's workers are woken.
#[derive(Clone)]
pub struct Queue {
    storage: Storage,
    wake: Arc<watch::Sender<()>>,
}

#[derive(Clone)]
enum Storage {
    Sqlite(SqliteStorage<RunJob>),
    Redis(RedisStorage<RunJob>),
}

impl Queue {
    /// A queue in the SQLite file at `path` (created when missing).
    pub async fn sqlite(path: &Path) -> anyhow::Result<Self> {
        // On every connection of the pool: `SqliteStorage::setup` sets its pragmas on one
        // connection only, and `synchronous` is a connection's own (the others would sync
        // the log at every commit). A job lost with the machine's power leaves its run
        // QUEUED, which the reaper enqueues again.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .pragma("journal_mode", "WAL")
            .pragma("synchronous", "NORMAL");
        let pool = SqlitePool::connect_with(options)
            .await
            .with_context(|| format!("cannot open the job queue at {}", path.display()))?;
        SqliteStorage::<()>::setup(&pool)
            .await
            .context("cannot set up the job queue")?;
        // One job per poll (see `work`), on the queue `SqliteStorage::new` would name.
        let config = apalis_sqlite::Config::default()
            .queue(std::any::type_name::<RunJob>())
            .batch_size(1)
            .heartbeat_interval(WAKE);
        Ok(Self::on(Storage::Sqlite(
            SqliteStorage::new(&pool).with_config(config),
        )))
    }

    /// A queue named `name` on the Redis server at `url`. Redis need not be up yet: the
    /// connection is made on first use and remade after an outage (pushes fail meanwhile).
    pub async fn redis(url: &str, name: &str) -> anyhow::Result<Self> {
        let conn = redis::Client::open(url)
            .and_then(|client| {
                client.get_connection_manager_lazy(
                    redis::aio::ConnectionManagerConfig::new().set_number_of_retries(1),
                )
            })
            .context("REDIS_URL is not a valid Redis URL")?;
        let config = apalis_redis::Config::default()
            .queue(name)
            .batch_size(1)
            .heartbeat_interval(WAKE);
        Ok(Self::on(Storage::Redis(
            RedisStorage::new(conn).with_config(config),
        )))
    }

    fn on(storage: Storage) -> Self {
        Self {
            storage,
            wake: Arc::new(watch::Sender::new(())),
        }
    }

    /// Wake this process's workers: there may be a job to take (and a slot for it).
    fn wake(&self) {
        self.wake.send_modify(|()| {});
    }

    /// When a worker looks for a job: each `POLL`, and when woken.
    fn polls(&self) -> impl futures_util::Stream<Item = ()> + Unpin + Send + 'static {
        use futures_util::StreamExt;
        let mut interval = tokio::time::interval(POLL);
        // Ticks missed while the worker was full are not made up in a burst.
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ticks = tokio_stream::wrappers::IntervalStream::new(interval);
        let wakes = tokio_stream::wrappers::WatchStream::from_changes(self.wake.subscribe());
        futures_util::stream::select(ticks.map(|_| ()), wakes)
    }

    /// Enqueue a run, in a span of its own whose trace the job carries to the worker.
    pub async fn push(&self, run_id: Uuid) -> anyhow::Result<()> {
        let span = tracing::info_span!(
            "enqueue run",
            otel.kind = "producer",
            messaging.system = self.system(),
            run = %run_id,
        );
        let job = RunJob {
            run_id,
            traceparent: realtime::trace::traceparent(&span),
        };
        let storage = self.storage.clone();
        let pushed = async move {
            match storage {
                Storage::Sqlite(mut storage) => {
                    storage.push(job).await.map_err(anyhow::Error::from)
                }
                Storage::Redis(mut storage) => storage.push(job).await.map_err(anyhow::Error::from),
            }
        }
        .instrument(span)
        .await;
        if pushed.is_ok() {
            self.wake();
        }
        pushed
    }

    /// The backend, as the spans name it.
    fn system(&self) -> &'static str {
        match self.storage {
            Storage::Sqlite(_) => "sqlite",
            Storage::Redis(_) => "redis",
        }
    }

    /// Run one worker named `name` that executes at most `concurrency` runs at once, until
    /// `shutdown` resolves; then it stops taking jobs and returns once the jobs in hand are
    /// done.
    ///
    /// The limit is apalis' concurrency layer: while it is full the worker does not poll, and
    /// each poll takes one job (batch size 1), so jobs it cannot start yet stay in the queue
    /// for other worker processes.
    pub async fn work(
        &self,
        name: &str,
        concurrency: usize,
        handler: Arc<dyn RunHandler>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        use futures_util::FutureExt;
        let concurrency = concurrency.max(1);
        let handler = Handler {
            inner: handler,
            queue: self.clone(),
        };
        let shutdown = shutdown.boxed().shared();
        // A worker whose backend fails (Redis went away: apalis gives up on the first failed
        // poll) is started again once the backend may be back, until the stop is asked for.
        loop {
            let outcome = match self.storage.clone() {
                Storage::Sqlite(storage) => {
                    WorkerBuilder::new(name)
                        .backend(storage.poll_with_stream(self.polls()))
                        .concurrency(concurrency)
                        .data(handler.clone())
                        .build(handle)
                        .run_until(stopped(shutdown.clone()))
                        .await
                }
                Storage::Redis(storage) => {
                    WorkerBuilder::new(name)
                        .backend(storage.poll_with_stream(self.polls()))
                        .concurrency(concurrency)
                        .data(handler.clone())
                        .build(handle)
                        .run_until(stopped(shutdown.clone()))
                        .await
                }
            };
            let Err(error) = outcome else {
                return Ok(());
            };
            if shutdown.peek().is_some() {
                return Ok(());
            }
            tracing::warn!(%error, "worker stopped with an error; starting it again");
            tokio::select! {
                () = shutdown.clone() => return Ok(()),
                () = tokio::time::sleep(RESTART_AFTER) => {}
            }
        }
    }
}

/// How long a failed worker waits before it starts again.
const RESTART_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// `shutdown` as the worker's stop signal.
async fn stopped(shutdown: impl Future<Output = ()>) -> Result<(), std::io::Error> {
    shutdown.await;
    Ok(())
}

/// The handler, as worker data, and the queue whose workers it wakes when a run ends.
#[derive(Clone)]
struct Handler {
    inner: Arc<dyn RunHandler>,
    queue: Queue,
}

/// One job, in a span continuing the trace it was enqueued in (a new trace when it carries
/// none, or a malformed one).
async fn handle(job: RunJob, handler: Data<Handler>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("run job", otel.kind = "consumer", run = %job.run_id);
    realtime::trace::continue_trace(&span, job.traceparent.as_deref());
    handler.inner.handle(job.run_id).instrument(span).await;
    handler.queue.wake();
    Ok(())
}
