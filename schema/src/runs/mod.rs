//! Code runs: requests to execute a project's code in the sandbox, their live output and
//! their results. The queue, the sandbox and the worker live in the `jobs` crate; this module
//! holds the rules (who may run what, within which limits) and the GraphQL surface.

mod config;
mod graphql;
mod order;
pub mod service;

use std::time::Duration;

use entity::project::Language;
use entity::run::RunStatus;
use sea_orm::ActiveEnum;

pub use config::RunsConfig;
pub use graphql::{Run, RunConnection, RunsMutation, RunsQuery, RunsSubscription};
pub use jobs::RunLimits;

/// What workers do with runs, counted for `/metrics`: the server's in-process workers and a
/// `codecrafter worker` process alike.
pub struct RunMetrics;

impl jobs::worker::RunObserver for RunMetrics {
    fn claimed(&self, language: Language, waited: Duration) {
        crate::metrics::run_claimed(language.to_value(), waited);
    }

    fn measured(&self, language: Language, wall: Duration, cpu: Duration) {
        crate::metrics::run_measured(language.to_value(), wall, cpu);
    }

    fn sandbox_failed(&self) {
        crate::metrics::sandbox_failed();
    }

    fn finished(&self, language: Language, status: RunStatus) {
        crate::metrics::run_finished(language.to_value(), status.to_value());
    }
}
