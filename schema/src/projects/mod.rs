//! Projects and their members.

pub mod access;
mod cursor;
mod graphql;
pub mod service;

pub use graphql::{ProjectsMutation, ProjectsQuery};
