use sea_orm_migration::{prelude::*, schema::*};

use super::m20261125_000003_create_projects::Projects;

/// `projects.forked_from`: the project a fork was copied from (NULL once that one is deleted).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut column = uuid_null(Projects::ForkedFrom);
        // SQLite cannot add a foreign key to an existing table, but it accepts the reference
        // inline in ADD COLUMN; PostgreSQL gets a named constraint.
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
            column.extra("REFERENCES projects(id) ON DELETE SET NULL");
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Projects::Table)
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            manager
                .create_foreign_key(
                    ForeignKey::create()
                        .name("fk_projects_forked_from")
                        .from(Projects::Table, Projects::ForkedFrom)
                        .to(Projects::Table, Projects::Id)
                        .on_delete(ForeignKeyAction::SetNull)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_projects_forked_from")
                    .table(Projects::Table)
                    .col(Projects::ForkedFrom)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_projects_forked_from")
                    .table(Projects::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Projects::Table)
                    .drop_column(Projects::ForkedFrom)
                    .to_owned(),
            )
            .await
    }
}
