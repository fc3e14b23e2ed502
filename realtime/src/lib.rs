//! What moves between people in a project in real time, on one node and across nodes.
//!
//! [`Bus`] carries [`Signal`]s: document updates, project events and presence. In embedded mode
//! it is an in-process broadcast; with `REDIS_URL` every signal a node publishes also goes to
//! one Redis pub/sub channel, and every node delivers what the others published to its own
//! subscribers. Document updates from other nodes go to the document hub (through
//! [`Bus::take_remote_docs`]) so each node's in-memory copy stays identical.

mod bus;
mod redis_link;
mod runs;
mod signal;
mod topics;
pub mod trace;
mod wire;

pub use bus::{Announced, Bus, RemoteDoc};
pub use redis_link::{FANOUT_LAG, REDIS_RECONNECTS};
pub use signal::{
    DocSignal, PresenceSignal, PresenceState, ProjectEvent, ProjectSignal, RunSignal, Signal,
};
pub use topics::Topics;
pub use wire::{Channels, Interest};
