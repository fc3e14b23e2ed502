//! What crosses between nodes, shared by the bus (which builds and delivers it) and the Redis
//! link (which carries it).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::signal::Signal;

/// A signal as it travels between nodes: JSON, with the node that sent it.
#[derive(Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub origin: Uuid,
    pub signal: Signal,
}

/// What the Redis link hands the bus.
pub(crate) enum Inbound {
    Envelope(Envelope),
    /// The listener was away and is subscribed again: whatever was published meanwhile was
    /// missed.
    Reconnected,
}
