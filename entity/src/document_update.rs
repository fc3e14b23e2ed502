//! `document_updates`: the append-only log of Loro updates not yet folded into a snapshot.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "document_updates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: Uuid,
    /// 1, 2, 3… per document, without gaps.
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    #[sea_orm(column_type = "Blob")]
    pub data: Vec<u8>,
    /// Who sent it; NULL for edits the server made on its own (or a deleted account).
    pub author_id: Option<Uuid>,
    /// The sending client's own id, so it can recognise its echo.
    pub client_id: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::document::Entity",
        from = "Column::ProjectId",
        to = "super::document::Column::ProjectId",
        on_delete = "Cascade"
    )]
    Document,
}

impl ActiveModelBehavior for ActiveModel {}
