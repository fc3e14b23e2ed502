use sea_orm_migration::{prelude::*, schema::*};

use super::m20261125_000001_create_users::Users;
use super::m20261125_000003_create_projects::Projects;

/// `versions`: named checkpoints of a project's document (Loro frontiers).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Versions::Table)
                    .col(pk_uuid(Versions::Id))
                    .col(uuid(Versions::ProjectId))
                    .col(string_len(Versions::Title, 120))
                    .col(text(Versions::Message))
                    .col(blob(Versions::Frontiers))
                    .col(uuid_null(Versions::AuthorId))
                    .col(boolean(Versions::IsAuto))
                    .col(timestamp_with_time_zone(Versions::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_versions_project")
                            .from(Versions::Table, Versions::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_versions_author")
                            .from(Versions::Table, Versions::AuthorId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_versions_project")
                    .table(Versions::Table)
                    .col(Versions::ProjectId)
                    .col(Versions::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Versions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Versions {
    Table,
    Id,
    ProjectId,
    Title,
    Message,
    Frontiers,
    AuthorId,
    IsAuto,
    CreatedAt,
}
