//! Presence: who is online in a project, which file they show, where their cursor and
//! selection are, whether they are typing. Ephemeral, never stored; see [`service`].

mod graphql;
pub mod service;

pub use graphql::{PresenceEntry, PresenceMutation, PresenceSubscription, Selection, color_of};
pub use service::Presence;
