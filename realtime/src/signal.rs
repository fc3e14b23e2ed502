//! The messages of the bus, in the form they cross between nodes (JSON).

use chrono::{DateTime, Utc};
use entity::project_member::ProjectRole;
use entity::run::RunStatus;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Anything one node tells the others.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signal {
    Doc(DocSignal),
    Project {
        project: Uuid,
        signal: ProjectSignal,
    },
    Run {
        run: Uuid,
        signal: RunSignal,
    },
}

/// What happens to one code run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunSignal {
    /// The run changed status (RUNNING, or back to QUEUED for a retry).
    Status { status: RunStatus },
    /// Output, in order of `seq` (shared by both streams).
    Output {
        stderr: bool,
        seq: i64,
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    /// The run ended with `status`; its row holds the result.
    Finished { status: RunStatus },
    /// Somebody asked to stop it: the worker running it kills it.
    Cancel,
    /// A follower missed output after `after` (published before it subscribed and not yet
    /// flushed to the row, or lost when it fell behind): the worker running the run
    /// publishes its chunks after `after` again.
    Replay { after: i64 },
}

impl RunSignal {
    /// Asked of the worker running the run (it travels on the run-control channel).
    pub fn is_control(&self) -> bool {
        matches!(self, Self::Cancel | Self::Replay { .. })
    }
}

/// An update appended to a document's log, with its sequence number there.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DocSignal {
    pub project: Uuid,
    pub seq: i64,
    /// The Loro update as base64: encoded once, by the node that appended it, for its own
    /// subscribers; the same text travels to the other nodes and to their subscribers.
    #[serde(with = "shared_text")]
    pub update: Arc<str>,
    pub author: Option<Uuid>,
    pub client_id: Option<String>,
}

/// What the people in one project see happen, besides edits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProjectSignal {
    Event(ProjectEvent),
    Presence(PresenceSignal),
}

/// Something that happened in a project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProjectEvent {
    MessagePosted {
        id: Uuid,
        author: Uuid,
        body: String,
        at: DateTime<Utc>,
    },
    MemberJoined {
        user: Uuid,
        #[serde(with = "role")]
        role: ProjectRole,
    },
    MemberRoleChanged {
        user: Uuid,
        #[serde(with = "role")]
        role: ProjectRole,
    },
    /// The member left on their own.
    MemberLeft {
        user: Uuid,
    },
    /// An owner removed the member: their subscriptions to the project end.
    MemberRemoved {
        user: Uuid,
    },
    /// The project is gone: every subscription to it ends.
    ProjectDeleted,
    /// The project became public or private (a private turn ends non-members' subscriptions).
    VisibilityChanged {
        public: bool,
    },
    RunStarted {
        run: Uuid,
        by: Uuid,
    },
    RunFinished {
        run: Uuid,
        status: RunStatus,
    },
}

impl ProjectEvent {
    /// Whether `user` loses access to the project with this event.
    pub fn revokes(&self, user: Option<Uuid>) -> bool {
        match self {
            Self::ProjectDeleted => true,
            Self::MemberRemoved { user: removed } => Some(*removed) == user,
            _ => false,
        }
    }

    /// Whether anybody's role in the project, or the project itself, changed with this
    /// event: what a cached permission check may no longer be right about.
    pub fn changes_access(&self) -> bool {
        matches!(
            self,
            Self::MemberRoleChanged { .. }
                | Self::MemberLeft { .. }
                | Self::MemberRemoved { .. }
                | Self::ProjectDeleted
                | Self::VisibilityChanged { .. }
        )
    }

    /// Whether `user` may have lost access with this event (it depends on the project's
    /// visibility and their role, so access is checked again).
    pub fn may_revoke(&self, user: Option<Uuid>) -> bool {
        match self {
            Self::VisibilityChanged { public } => !public,
            Self::MemberLeft { user: left } => Some(*left) == user,
            _ => false,
        }
    }
}

/// One client's place in a project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PresenceState {
    pub user: Uuid,
    pub client_id: String,
    pub file: Option<String>,
    pub cursor: Option<u32>,
    pub selection: Option<(u32, u32)>,
    pub typing: bool,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PresenceSignal {
    Update(PresenceState),
    Leave {
        user: Uuid,
        client_id: String,
    },
    /// A node started a replica of this project: whoever holds one says who is present.
    Sync,
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// Text shared by reference (`serde`'s `rc` feature would do it for every crate of the build).
mod shared_text {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(text: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(d).map(Arc::from)
    }
}

mod role {
    use entity::project_member::ProjectRole;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(role: &ProjectRole, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match role {
            ProjectRole::Owner => "OWNER",
            ProjectRole::Editor => "EDITOR",
            ProjectRole::Viewer => "VIEWER",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ProjectRole, D::Error> {
        match <std::borrow::Cow<'de, str>>::deserialize(d)?.as_ref() {
            "OWNER" => Ok(ProjectRole::Owner),
            "EDITOR" => Ok(ProjectRole::Editor),
            "VIEWER" => Ok(ProjectRole::Viewer),
            other => Err(serde::de::Error::custom(format!("unknown role {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn signals_round_trip_as_json() {
        let signals = [
            Signal::Doc(DocSignal {
                project: Uuid::new_v4(),
                seq: 7,
                update: "AAEC/w==".into(),
                author: Some(Uuid::new_v4()),
                client_id: Some("tab-1".into()),
            }),
            Signal::Project {
                project: Uuid::new_v4(),
                signal: ProjectSignal::Event(ProjectEvent::MemberRoleChanged {
                    user: Uuid::new_v4(),
                    role: ProjectRole::Editor,
                }),
            },
            Signal::Run {
                run: Uuid::new_v4(),
                signal: RunSignal::Finished {
                    status: RunStatus::MemoryLimit,
                },
            },
        ];
        for signal in signals {
            let json = serde_json::to_string(&signal).unwrap();
            let back: Signal = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), json);
        }
    }

    /// A run's status travels as its stored name, and a name no status has is refused.
    #[test]
    fn run_statuses_travel_by_name() {
        let json = serde_json::to_string(&RunSignal::Status {
            status: RunStatus::TimedOut,
        })
        .unwrap();
        assert_eq!(json, r#"{"type":"status","status":"TIMED_OUT"}"#);
        assert!(
            serde_json::from_str::<RunSignal>(r#"{"type":"status","status":"NAPPING"}"#).is_err()
        );
    }
}
