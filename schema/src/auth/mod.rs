//! Sign-up, sign-in, token refresh and rotation, sign-out, password changes.

mod graphql;
pub mod limiter;
pub mod password;
pub mod revocations;
pub mod service;
pub mod tokens;

pub use graphql::AuthMutation;
