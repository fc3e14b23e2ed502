//! Projects and their members.

pub mod access;
pub(crate) mod cursor;
mod graphql;
pub mod invites;
pub mod revocation;
pub mod service;

pub use graphql::{Language, ProjectConnection, ProjectRole, ProjectsMutation, ProjectsQuery};
