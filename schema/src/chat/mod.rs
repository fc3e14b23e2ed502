//! A project's chat: messages stored in `messages`, paginated, and announced live through
//! `projectEvents`.

mod graphql;
pub mod service;

pub use graphql::{ChatMutation, ChatQuery, Message, MessageConnection};
