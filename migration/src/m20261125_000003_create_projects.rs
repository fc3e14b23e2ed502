use sea_orm_migration::{prelude::*, schema::*};

use super::m20261125_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Projects::Table)
                    .col(pk_uuid(Projects::Id))
                    .col(string_len(Projects::Title, 120))
                    .col(text(Projects::Description))
                    .col(string_len(Projects::DefaultLanguage, 16))
                    .col(boolean(Projects::IsPublic))
                    .col(uuid(Projects::OwnerId))
                    .col(timestamp_with_time_zone(Projects::CreatedAt))
                    .col(timestamp_with_time_zone(Projects::UpdatedAt))
                    .col(timestamp_with_time_zone(Projects::LastActivityAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_projects_owner")
                            .from(Projects::Table, Projects::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        // Lists are sorted newest activity first, with the id as tie-breaker for cursors.
        manager
            .create_index(
                Index::create()
                    .name("idx_projects_activity")
                    .table(Projects::Table)
                    .col(Projects::LastActivityAt)
                    .col(Projects::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Projects::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum Projects {
    Table,
    Id,
    Title,
    Description,
    DefaultLanguage,
    IsPublic,
    OwnerId,
    CreatedAt,
    UpdatedAt,
    LastActivityAt,
    ForkedFrom,
}
