//! Code runs as background jobs: the queue (apalis on SQLite or Redis) and the workers that
//! take jobs from it. This crate knows nothing of GraphQL: what a job does is given to it as a
//! [`queue::RunHandler`].

pub mod queue;
pub mod sandbox;
