//! Database migrations, one file per table (or per change to one). Run at start-up and by `codecrafter migrate`.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_users;
mod m20261125_000002_create_refresh_tokens;
mod m20261125_000003_create_projects;
mod m20261125_000004_create_project_members;
mod m20261125_000005_add_project_forks;
mod m20261125_000006_create_documents;
mod m20261125_000007_create_document_updates;
mod m20261125_000008_create_versions;
mod m20261125_000009_create_messages;
mod m20261125_000010_create_runs;
mod m20261125_000011_create_invites;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_users::Migration),
            Box::new(m20261125_000002_create_refresh_tokens::Migration),
            Box::new(m20261125_000003_create_projects::Migration),
            Box::new(m20261125_000004_create_project_members::Migration),
            Box::new(m20261125_000005_add_project_forks::Migration),
            Box::new(m20261125_000006_create_documents::Migration),
            Box::new(m20261125_000007_create_document_updates::Migration),
            Box::new(m20261125_000008_create_versions::Migration),
            Box::new(m20261125_000009_create_messages::Migration),
            Box::new(m20261125_000010_create_runs::Migration),
            Box::new(m20261125_000011_create_invites::Migration),
        ]
    }
}
