//! Code runs: requests to execute a project's code in the sandbox, their live output and
//! their results. The queue and the sandbox live in the `jobs` crate; this module holds the
//! rules (who may run what, within which limits) and the worker's bookkeeping.

mod config;
mod graphql;
pub mod service;
pub mod worker;

pub use config::{RunLimits, RunsConfig};
pub use graphql::{Run, RunConnection, RunsMutation, RunsQuery, RunsSubscription};
