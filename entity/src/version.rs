//! `versions`: named checkpoints of a project's document.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "versions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub title: String,
    pub message: String,
    /// Encoded Loro frontiers of the document at the checkpoint.
    #[sea_orm(column_type = "Blob")]
    pub frontiers: Vec<u8>,
    /// Who saved it; NULL for automatic checkpoints.
    pub author_id: Option<Uuid>,
    pub is_auto: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::project::Entity",
        from = "Column::ProjectId",
        to = "super::project::Column::Id",
        on_delete = "Cascade"
    )]
    Project,
}

impl ActiveModelBehavior for ActiveModel {}
