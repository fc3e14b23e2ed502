//! Project documents: one Loro document per project, its files, and its live updates.
//!
//! `service.rs` holds the file operations and the access checks, over a domain [`File`];
//! `graphql.rs` is the GraphQL surface over it. `hub/` holds the live documents (the write
//! path in `hub/mod.rs`, loading and unloading in `hub/lifecycle.rs`, other nodes' updates in
//! `hub/remote.rs`), `shape.rs` what a document may hold, `store.rs` its log in the
//! database, `limits.rs` the sizes and timings.

mod graphql;
mod hub;
mod limits;
pub mod live;
pub mod service;
mod shape;
pub mod store;

pub use graphql::{
    DocumentVersion, DocumentsMutation, DocumentsQuery, DocumentsSubscription, FileObject,
};
pub use hub::{Applied, Documents};
pub use limits::{CollabConfig, check_path};
pub use service::{File, list_files, read_file};
pub use shape::{FILES, check_shape};
