//! `documents`: one per project; the counter of its update log and its compacted snapshot.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "documents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: Uuid,
    /// The sequence number of the last update appended to the log.
    pub head_seq: i64,
    /// A Loro snapshot (with history) holding every update up to `snapshot_seq`.
    #[sea_orm(column_type = "Blob", nullable)]
    pub snapshot: Option<Vec<u8>>,
    pub snapshot_seq: i64,
    pub updated_at: DateTimeUtc,
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
