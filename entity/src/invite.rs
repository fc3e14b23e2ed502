//! `invites`: links an owner hands out to let people join a project with a role.

use sea_orm::entity::prelude::*;

use crate::project_member::ProjectRole;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invites")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    /// SHA-256 of the token (the token itself is shown once, to its creator).
    #[sea_orm(unique)]
    pub token_hash: String,
    pub role: ProjectRole,
    pub created_by: Uuid,
    /// How many people joined with it.
    pub uses: i32,
    pub created_at: DateTimeUtc,
    pub expires_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
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
