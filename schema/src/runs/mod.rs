//! Code runs: requests to execute a project's code in the sandbox, their live output and
//! their results. The queue, the sandbox and the worker live in the `jobs` crate; this module
//! holds the rules (who may run what, within which limits) and the GraphQL surface.

mod config;
mod graphql;
pub mod service;

use entity::run::RunStatus;

pub use config::RunsConfig;
pub use graphql::{Run, RunConnection, RunsMutation, RunsQuery, RunsSubscription};
pub use jobs::RunLimits;

/// The server's workers count the runs they start and end for `/metrics`.
impl jobs::worker::RunObserver for crate::metrics::Metrics {
    fn started(&self) {
        self.runs_started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn finished(&self, status: RunStatus) {
        use sea_orm::ActiveEnum;
        self.run_finished(&status.to_value());
    }
}
