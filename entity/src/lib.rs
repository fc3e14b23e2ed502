//! SeaORM entities, one module per table.

pub mod document;
pub mod document_update;
pub mod invite;
pub mod message;
pub mod project;
pub mod project_member;
pub mod refresh_token;
pub mod run;
pub mod time;
pub mod user;
pub mod version;

pub mod prelude {
    pub use super::document::Entity as Document;
    pub use super::document_update::Entity as DocumentUpdate;
    pub use super::invite::Entity as Invite;
    pub use super::message::Entity as Message;
    pub use super::project::Entity as Project;
    pub use super::project_member::Entity as ProjectMember;
    pub use super::refresh_token::Entity as RefreshToken;
    pub use super::run::Entity as Run;
    pub use super::user::Entity as User;
    pub use super::version::Entity as Version;
}
