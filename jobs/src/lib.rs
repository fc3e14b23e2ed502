//! Code runs as background jobs: the queue (apalis on SQLite or Redis), the sandbox, and the
//! worker that takes runs from the queue, executes them and records their results. This crate
//! knows the database and the bus, and nothing of GraphQL.

pub mod limits;
pub mod queue;
pub mod sandbox;
pub mod worker;

pub use limits::RunLimits;
