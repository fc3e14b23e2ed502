use sea_orm_migration::{prelude::*, schema::*};

use super::m20261125_000001_create_users::Users;
use super::m20261125_000006_create_documents::Documents;

/// `document_updates`: the append-only log of Loro update blobs not yet folded into the
/// document's snapshot, numbered per document.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DocumentUpdates::Table)
                    .col(uuid(DocumentUpdates::ProjectId))
                    .col(big_integer(DocumentUpdates::Seq))
                    .col(blob(DocumentUpdates::Data))
                    .col(uuid_null(DocumentUpdates::AuthorId))
                    .col(string_len_null(DocumentUpdates::ClientId, 64))
                    .col(timestamp_with_time_zone(DocumentUpdates::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(DocumentUpdates::ProjectId)
                            .col(DocumentUpdates::Seq),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_document_updates_document")
                            .from(DocumentUpdates::Table, DocumentUpdates::ProjectId)
                            .to(Documents::Table, Documents::ProjectId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_document_updates_author")
                            .from(DocumentUpdates::Table, DocumentUpdates::AuthorId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DocumentUpdates::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum DocumentUpdates {
    Table,
    ProjectId,
    Seq,
    Data,
    AuthorId,
    ClientId,
    CreatedAt,
}
