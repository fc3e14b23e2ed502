use sea_orm_migration::{prelude::*, schema::*};

use super::m20261125_000001_create_users::Users;
use super::m20261125_000003_create_projects::Projects;

/// `invites`: links an owner hands out to let people join a project with a role.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Invites::Table)
                    .col(pk_uuid(Invites::Id))
                    .col(uuid(Invites::ProjectId))
                    .col(string_len_uniq(Invites::TokenHash, 64))
                    .col(string_len(Invites::Role, 16))
                    .col(uuid(Invites::CreatedBy))
                    .col(integer(Invites::Uses).default(0))
                    .col(timestamp_with_time_zone(Invites::CreatedAt))
                    .col(timestamp_with_time_zone_null(Invites::ExpiresAt))
                    .col(timestamp_with_time_zone_null(Invites::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_invites_project")
                            .from(Invites::Table, Invites::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_invites_created_by")
                            .from(Invites::Table, Invites::CreatedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_invites_project")
                    .table(Invites::Table)
                    .col(Invites::ProjectId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Invites::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Invites {
    Table,
    Id,
    ProjectId,
    TokenHash,
    Role,
    CreatedBy,
    Uses,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
}
