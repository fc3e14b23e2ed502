//! What crosses between nodes, shared by the bus (which builds and delivers it) and the Redis
//! link (which carries it): the envelope, and the channels it travels on.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::signal::{RunSignal, Signal};

/// A signal as it travels between nodes: JSON, with the node that sent it.
#[derive(Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub origin: Uuid,
    pub signal: Signal,
    /// The trace the signal was published in (W3C `traceparent`), continued where it is
    /// delivered; absent while traces are off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// What the Redis link hands the bus.
pub(crate) enum Inbound {
    Envelope(Envelope),
    /// The listener was away and is subscribed again: whatever was published meanwhile was
    /// missed.
    Reconnected,
}

/// The Redis pub/sub channels of one deployment, named after its `REDIS_CHANNEL`: one for
/// what the people in a project share (document updates, project events, presence), one for
/// what runs tell their followers (status, output, end), and one for what is asked of the
/// workers running them (cancel), so that a worker listens to that one only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channels {
    pub projects: String,
    pub run_events: String,
    pub run_control: String,
}

impl Channels {
    pub fn new(base: &str) -> Self {
        Self {
            projects: base.to_owned(),
            run_events: format!("{base}:run-events"),
            run_control: format!("{base}:run-control"),
        }
    }

    /// The channel `signal` travels on.
    pub(crate) fn of(&self, signal: &Signal) -> &str {
        match signal {
            Signal::Doc(_) | Signal::Project { .. } => &self.projects,
            Signal::Run {
                signal: RunSignal::Cancel,
                ..
            } => &self.run_control,
            Signal::Run { .. } => &self.run_events,
        }
    }

    /// The channels a node with `interest` subscribes to.
    pub(crate) fn heard_by(&self, interest: Interest) -> Vec<String> {
        match interest {
            Interest::Everything => vec![
                self.projects.clone(),
                self.run_events.clone(),
                self.run_control.clone(),
            ],
            Interest::RunControl => vec![self.run_control.clone()],
        }
    }
}

/// What a node hears from the other nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    /// Everything: an API node, serving documents, presence, project and run events (and
    /// running runs itself when its workers are in-process).
    Everything,
    /// Only what is asked of runs (cancel): a `codecrafter worker` process. It publishes run
    /// events and hears no edit, presence or project event.
    RunControl,
}
