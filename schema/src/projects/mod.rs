//! Projects and their members.

pub mod access;
mod graphql;
pub mod invites;
pub mod revocation;
pub mod service;

pub use graphql::{Language, ProjectConnection, ProjectRole, ProjectsMutation, ProjectsQuery};
