//! SeaORM entities, one module per table.

pub mod project;
pub mod project_member;
pub mod refresh_token;
pub mod user;

pub mod prelude {
    pub use super::project::Entity as Project;
    pub use super::project_member::Entity as ProjectMember;
    pub use super::refresh_token::Entity as RefreshToken;
    pub use super::user::Entity as User;
}
