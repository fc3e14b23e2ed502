//! Taking up runs whose worker died, and runs whose job was lost.

use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as ChronoDuration;
use entity::prelude::*;
use entity::run::{self, RunStatus};
use entity::time::now;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tokio::sync::watch;

use super::Executor;

/// A run whose heartbeat is older than this lost its worker.
const STALE_AFTER: ChronoDuration = ChronoDuration::seconds(10);
/// A queued run this old without a worker taking it is enqueued again (a lost job).
const FORGOTTEN_AFTER: ChronoDuration = ChronoDuration::seconds(30);
/// How often a worker process reaps.
const REAP_EVERY: Duration = Duration::from_secs(3);

impl Executor {
    /// Put back runs whose worker died, and enqueue again runs nobody took.
    pub async fn reap(&self) -> anyhow::Result<()> {
        let db = &self.db;
        let stale = Run::find()
            .filter(run::Column::Status.eq(RunStatus::Running))
            .filter(run::Column::HeartbeatAt.lt(now() - STALE_AFTER))
            .all(db)
            .await?;
        for run in stale {
            if run.attempts >= self.config.max_attempts {
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
        let mut ticker = tokio::time::interval(REAP_EVERY);
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
