//! The queue of code runs: apalis on a SQLite file (embedded mode) or on Redis (production).
//!
//! A job carries only the id of its run; the run's row is the truth about what to do and
//! whether it was done. Delivery is at least once: the handler claims the run in the database
//! before executing it, so a job delivered twice runs once.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use apalis::prelude::*;
use apalis_redis::RedisStorage;
use apalis_sqlite::{SqlitePool, SqliteStorage};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How often an idle worker looks for jobs (the backends' default is their 30 s heartbeat).
const POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// One code run to execute.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunJob {
    pub run_id: Uuid,
}

/// What a worker does with a job. An error is logged; the handler itself records failures
/// in the run's row and schedules retries, so the queue never retries on its own.
#[async_trait::async_trait]
pub trait RunHandler: Send + Sync + 'static {
    async fn handle(&self, run_id: Uuid);
}

/// Where jobs wait.
#[derive(Clone)]
pub enum Queue {
    Sqlite(SqliteStorage<RunJob>),
    Redis(RedisStorage<RunJob>),
}

impl Queue {
    /// A queue in the SQLite file at `path` (created when missing).
    pub async fn sqlite(path: &Path) -> anyhow::Result<Self> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = SqlitePool::connect(&url)
            .await
            .with_context(|| format!("cannot open the job queue at {}", path.display()))?;
        SqliteStorage::<()>::setup(&pool)
            .await
            .context("cannot set up the job queue")?;
        Ok(Self::Sqlite(SqliteStorage::new(&pool)))
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
        let config = apalis_redis::Config::default().queue(name);
        Ok(Self::Redis(RedisStorage::new(conn).with_config(config)))
    }

    /// Enqueue a run.
    pub async fn push(&self, run_id: Uuid) -> anyhow::Result<()> {
        let job = RunJob { run_id };
        match self.clone() {
            Self::Sqlite(mut storage) => storage.push(job).await.map_err(anyhow::Error::from)?,
            Self::Redis(mut storage) => storage.push(job).await.map_err(anyhow::Error::from)?,
        }
        Ok(())
    }

    /// Run `concurrency` workers named `<name>-<n>` until `shutdown` resolves; then they stop
    /// taking jobs and return once the jobs in hand are done.
    pub async fn work(
        &self,
        name: &str,
        concurrency: usize,
        handler: Arc<dyn RunHandler>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop, _) = tokio::sync::watch::channel(false);
        let mut workers = tokio::task::JoinSet::new();
        for n in 0..concurrency.max(1) {
            let worker_name = format!("{name}-{n}");
            let mut stopped = stop.subscribe();
            let until = async move {
                while !*stopped.borrow_and_update() {
                    if stopped.changed().await.is_err() {
                        break;
                    }
                }
                Ok::<(), std::io::Error>(())
            };
            let handler = Handler(handler.clone());
            match self.clone() {
                Self::Sqlite(storage) => {
                    let worker = WorkerBuilder::new(worker_name)
                        .backend(storage.poll_with_interval(POLL))
                        .data(handler)
                        .build(handle);
                    workers.spawn(async move { worker.run_until(until).await });
                }
                Self::Redis(storage) => {
                    let worker = WorkerBuilder::new(worker_name)
                        .backend(storage.poll_with_interval(POLL))
                        .data(handler)
                        .build(handle);
                    workers.spawn(async move { worker.run_until(until).await });
                }
            }
        }
        shutdown.await;
        let _ = stop.send(true);
        while let Some(done) = workers.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "worker stopped with an error"),
                Err(error) => tracing::warn!(%error, "worker task failed"),
            }
        }
        Ok(())
    }
}

/// The handler, as worker data.
#[derive(Clone)]
struct Handler(Arc<dyn RunHandler>);

async fn handle(job: RunJob, handler: Data<Handler>) -> Result<(), BoxDynError> {
    let Handler(inner) = &*handler;
    inner.handle(job.run_id).await;
    Ok(())
}
