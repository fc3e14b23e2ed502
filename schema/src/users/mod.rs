//! Profiles and preferences.

mod graphql;
pub mod preferences;
pub mod service;

pub use graphql::{Account, User, UsersMutation, UsersQuery};
