//! Project documents: one Loro document per project, its files, and its live updates.

mod graphql;
mod hub;
mod limits;
pub mod store;

pub use graphql::{
    DocumentVersion, DocumentsMutation, DocumentsQuery, DocumentsSubscription, File, list_files,
    read_file,
};
pub use hub::{Applied, DocUpdate, Documents, Entry, FILES, Subscription, check_shape, decode_vv};
pub use limits::{CollabConfig, MAX_PATH_BYTES, check_path};
