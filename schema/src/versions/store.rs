//! Version rows: the checkpoints of a project's document, by their frontiers.

use entity::prelude::*;
use entity::version;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::time::now;

/// The title of the checkpoints the server takes when a changed document goes idle.
pub const AUTO_SAVE_TITLE: &str = "Auto-save";

/// Record a checkpoint at `frontiers`; without an author it is an automatic one.
pub async fn insert(
    db: &impl ConnectionTrait,
    project: Uuid,
    title: String,
    message: String,
    frontiers: Vec<u8>,
    author: Option<Uuid>,
) -> ApiResult<version::Model> {
    Ok(version::ActiveModel {
        id: Set(Uuid::new_v4()),
        project_id: Set(project),
        title: Set(title),
        message: Set(message),
        frontiers: Set(frontiers),
        is_auto: Set(author.is_none()),
        author_id: Set(author),
        created_at: Set(now()),
    }
    .insert(db)
    .await?)
}

/// Take an automatic checkpoint at `frontiers`, unless the newest checkpoint is that very
/// version. Whether one was written.
pub async fn auto_save(
    db: &impl ConnectionTrait,
    project: Uuid,
    frontiers: Vec<u8>,
) -> ApiResult<bool> {
    let latest = latest_frontiers(db, project).await?;
    if latest.as_deref() == Some(frontiers.as_slice()) {
        return Ok(false);
    }
    insert(
        db,
        project,
        AUTO_SAVE_TITLE.into(),
        String::new(),
        frontiers,
        None,
    )
    .await?;
    Ok(true)
}

/// The frontiers of the newest checkpoint of `project`, if any.
pub async fn latest_frontiers(
    db: &impl ConnectionTrait,
    project: Uuid,
) -> ApiResult<Option<Vec<u8>>> {
    Ok(Version::find()
        .filter(version::Column::ProjectId.eq(project))
        .order_by_desc(version::Column::CreatedAt)
        .one(db)
        .await?
        .map(|v| v.frontiers))
}

/// A project's checkpoints, newest first.
pub async fn list(db: &impl ConnectionTrait, project: Uuid) -> ApiResult<Vec<version::Model>> {
    Ok(Version::find()
        .filter(version::Column::ProjectId.eq(project))
        .order_by_desc(version::Column::CreatedAt)
        .order_by_desc(version::Column::Id)
        .all(db)
        .await?)
}

/// One checkpoint of `project`, or NOT_FOUND.
pub async fn find(db: &impl ConnectionTrait, project: Uuid, id: Uuid) -> ApiResult<version::Model> {
    Version::find_by_id(id)
        .filter(version::Column::ProjectId.eq(project))
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("version"))
}
