//! Versions: named checkpoints of a project's document, read and restored.

mod graphql;
mod service;
pub mod store;

pub use graphql::{VersionsMutation, VersionsQuery};
pub use service::file_at;
