//! The `codecrafter` server: configuration, HTTP routes, start-up.

pub mod config;
pub mod database;
pub mod observe;
pub mod ratelimit;
mod routes;
pub mod secrets;
pub mod server;
pub mod startup;
pub mod telemetry;

pub use config::{Cli, Command, Config, Mode};
pub use startup::Application;
