//! What crosses between nodes, shared by the bus (which builds and delivers it) and the Redis
//! link (which carries it): the envelope, and the channels it travels on.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::signal::Signal;

/// A signal as it travels between nodes: JSON, with the node that sent it and when.
#[derive(Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub origin: Uuid,
    /// When the sending node published it, in microseconds since the Unix epoch (for the
    /// fan-out lag a receiving node measures; 0 from a node that predates it).
    #[serde(default)]
    pub sent_at: i64,
    pub signal: Signal,
    /// The trace the signal was published in (W3C `traceparent`), continued where it is
    /// delivered; absent while traces are off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Envelope {
    /// `signal`, leaving `origin` now.
    pub fn new(origin: Uuid, signal: Signal) -> Self {
        Self {
            origin,
            sent_at: chrono::Utc::now().timestamp_micros(),
            signal,
            traceparent: None,
        }
    }

    /// How long it took from the sender's publish to now (clocks of different hosts may
    /// disagree a little: a negative figure counts as no lag; `None` without a send time).
    pub fn lag(&self) -> Option<std::time::Duration> {
        let micros = chrono::Utc::now().timestamp_micros() - self.sent_at;
        (self.sent_at > 0).then(|| std::time::Duration::from_micros(micros.max(0).unsigned_abs()))
    }

    /// The kind of signal, as the fan-out lag's label.
    pub fn kind(&self) -> &'static str {
        match self.signal {
            Signal::Doc(_) => "document",
            Signal::Project { .. } => "project",
            Signal::Run { .. } => "run",
        }
    }
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
/// workers running them (cancel, replay), so that a worker listens to that one only.
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
            Signal::Run { signal, .. } if signal.is_control() => &self.run_control,
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
    /// Only what is asked of runs (cancel, replay): a `codecrafter worker` process. It publishes run
    /// events and hears no edit, presence or project event.
    RunControl,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::RunSignal;

    fn cancel() -> Signal {
        Signal::Run {
            run: Uuid::new_v4(),
            signal: RunSignal::Cancel,
        }
    }

    #[test]
    fn an_envelope_carries_its_send_time_for_the_lag() {
        let envelope = Envelope::new(Uuid::new_v4(), cancel());
        let lag = envelope.lag();
        assert!(
            lag.is_some_and(|lag| lag < std::time::Duration::from_secs(5)),
            "{lag:?}"
        );
        assert_eq!(envelope.kind(), "run");
        let old = Envelope {
            sent_at: 0,
            ..Envelope::new(Uuid::new_v4(), cancel())
        };
        assert_eq!(
            old.lag(),
            None,
            "a sender without a clock reading measures nothing"
        );
        let ahead = Envelope {
            sent_at: chrono::Utc::now().timestamp_micros() + 60_000_000,
            ..Envelope::new(Uuid::new_v4(), cancel())
        };
        assert_eq!(
            ahead.lag(),
            Some(std::time::Duration::ZERO),
            "a clock ahead is no lag"
        );
    }

    #[test]
    fn what_is_asked_of_a_worker_travels_on_run_control_and_what_it_tells_on_run_events() {
        let channels = Channels::new("cc");
        let run = |signal| Signal::Run {
            run: Uuid::new_v4(),
            signal,
        };
        for asked in [RunSignal::Cancel, RunSignal::Replay { after: 3 }] {
            assert_eq!(channels.of(&run(asked)), "cc:run-control");
        }
        let told = RunSignal::Output {
            stderr: false,
            seq: 4,
            data: b"x".to_vec(),
        };
        assert_eq!(channels.of(&run(told)), "cc:run-events");
        assert_eq!(
            channels.heard_by(Interest::RunControl),
            vec!["cc:run-control"]
        );
    }
}
