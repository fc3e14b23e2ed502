//! `projects`: a shared workspace of files (the seed called it a session).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "projects")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub default_language: Language,
    pub is_public: bool,
    /// The primary owner; `transferOwnership` moves it. Other members may hold OWNER too.
    pub owner_id: Uuid,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Bumped by anything members do in the project; lists sort on it.
    pub last_activity_at: DateTimeUtc,
    /// The project this one was forked from, while that one exists.
    pub forked_from: Option<Uuid>,
}

/// Languages a project can be written in.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Language {
    #[sea_orm(string_value = "python")]
    Python,
    #[sea_orm(string_value = "javascript")]
    JavaScript,
    #[sea_orm(string_value = "c")]
    C,
    #[sea_orm(string_value = "cpp")]
    Cpp,
    #[sea_orm(string_value = "bash")]
    Bash,
    #[sea_orm(string_value = "rust")]
    Rust,
    #[sea_orm(string_value = "java")]
    Java,
    #[sea_orm(string_value = "go")]
    Go,
    #[sea_orm(string_value = "typescript")]
    TypeScript,
    #[sea_orm(string_value = "ruby")]
    Ruby,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::OwnerId",
        to = "super::user::Column::Id",
        on_delete = "Restrict"
    )]
    Owner,
    #[sea_orm(has_many = "super::project_member::Entity")]
    ProjectMember,
}

impl Related<super::project_member::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ProjectMember.def()
    }
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Owner.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
