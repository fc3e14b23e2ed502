//! `refresh_tokens`: rotating refresh tokens, stored as SHA-256 hashes.
//!
//! Every sign-in starts a family (a session; its id is the access tokens' `sid`); each refresh
//! revokes the presented token and issues a successor in the same family, derived from the
//! presented token with the server key, so only hashes are ever stored. Presenting a token that
//! was rotated away within the grace window answers that successor again (two tabs); later, it
//! revokes the whole family (it was stolen or replayed).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub family_id: Uuid,
    #[sea_orm(unique)]
    pub token_hash: String,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
    /// Set when this token was rotated: the id of its successor.
    pub replaced_by: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::UserId",
        to = "super::user::Column::Id",
        on_delete = "Cascade"
    )]
    User,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
