//! Project events for subscribers: chat messages and membership changes as they happen
//! (runs will join them), from the bus of [`crate::realtime`].

mod graphql;
pub mod service;

pub use graphql::{EventsSubscription, ProjectEvent};
