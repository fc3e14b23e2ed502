//! Database migrations, one file per table. Run at start-up and by `codecrafter migrate`.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_users;
mod m20261125_000002_create_refresh_tokens;
mod m20261125_000003_create_projects;
mod m20261125_000004_create_project_members;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_users::Migration),
            Box::new(m20261125_000002_create_refresh_tokens::Migration),
            Box::new(m20261125_000003_create_projects::Migration),
            Box::new(m20261125_000004_create_project_members::Migration),
        ]
    }
}
