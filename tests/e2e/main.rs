//! End-to-end tests: one binary, a module per domain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod chat;
mod cors;
mod deploy;
mod documents;
mod fanout;
mod hostile;
mod invites;
mod logs;
mod members;
mod metrics;
mod playground;
mod presence;
mod projects;
mod ratelimit;
mod runs;
mod sdl;
mod server;
mod shutdown;
mod traces;
mod users;
