use sea_orm_migration::{prelude::*, schema::*};

use super::m20261125_000003_create_projects::Projects;

/// `documents`: one per project; the sequence counter of its update log and its snapshot.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Documents::Table)
                    .col(pk_uuid(Documents::ProjectId))
                    .col(big_integer(Documents::HeadSeq).default(0))
                    .col(blob_null(Documents::Snapshot))
                    .col(big_integer(Documents::SnapshotSeq).default(0))
                    .col(timestamp_with_time_zone(Documents::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_documents_project")
                            .from(Documents::Table, Documents::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Documents::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum Documents {
    Table,
    ProjectId,
    HeadSeq,
    Snapshot,
    SnapshotSeq,
    UpdatedAt,
}
