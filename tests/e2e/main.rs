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
mod members;
mod playground;
mod presence;
mod projects;
mod runs;
mod sdl;
mod server;
mod users;
