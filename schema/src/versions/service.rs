//! Creating, listing, reading and restoring checkpoints.

use std::collections::HashMap;

use entity::prelude::*;
use entity::version;
use loro::{Container, Frontiers, LoroDoc, LoroText, UpdateOptions, ValueOrContainer};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::context::AuthUser;
use crate::documents::{Applied, FILES, store};
use crate::documents::{File, list_files, read_file};
use crate::error::{ApiError, ApiResult};
use crate::projects::access::{self, ProjectAction};
use crate::state::Services;
use crate::validation;

/// Longest version title and message, in characters.
pub const TITLE_MAX: usize = 120;
pub const MESSAGE_MAX: usize = 2000;

/// Save the document's current state as a named checkpoint. EDITOR or OWNER.
pub async fn create(
    services: &Services,
    viewer: &AuthUser,
    project: Uuid,
    title: &str,
    message: Option<&str>,
) -> ApiResult<version::Model> {
    let title = validation::single_line("title", title, TITLE_MAX)?;
    let message = validation::text("message", message.unwrap_or(""), MESSAGE_MAX)?;
    access::check(&services.db, Some(viewer), project, ProjectAction::Edit).await?;
    let frontiers = services
        .documents
        .read(project, |doc| doc.oplog_frontiers().encode())
        .await?;
    store::insert_version(
        &services.db,
        project,
        title,
        message,
        frontiers,
        Some(viewer.id),
    )
    .await
}

/// A project's checkpoints, newest first.
pub async fn list(
    services: &Services,
    viewer: Option<&AuthUser>,
    project: Uuid,
) -> ApiResult<Vec<version::Model>> {
    access::check(&services.db, viewer, project, ProjectAction::Read).await?;
    Ok(Version::find()
        .filter(version::Column::ProjectId.eq(project))
        .order_by_desc(version::Column::CreatedAt)
        .order_by_desc(version::Column::Id)
        .all(&services.db)
        .await?)
}

/// One checkpoint of `project` (access already checked by the caller).
async fn find(services: &Services, project: Uuid, id: Uuid) -> ApiResult<version::Model> {
    Version::find_by_id(id)
        .filter(version::Column::ProjectId.eq(project))
        .one(&services.db)
        .await?
        .ok_or(ApiError::NotFound("version"))
}

/// The document as it was at `version`.
async fn document_at(
    services: &Services,
    project: Uuid,
    version: &version::Model,
) -> ApiResult<LoroDoc> {
    let frontiers = Frontiers::decode(&version.frontiers)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("stored frontiers: {e}")))?;
    services
        .documents
        .read(project, |doc| doc.fork_at(&frontiers))
        .await?
        .map_err(|e| ApiError::internal(anyhow::anyhow!("fork at a version: {e}")))
}

/// A file as it was at version `id` (access already checked by the caller).
pub async fn file_at(services: &Services, project: Uuid, id: Uuid, path: &str) -> ApiResult<File> {
    let version = find(services, project, id).await?;
    read_file(&document_at(services, project, &version).await?, path)
}

/// Every file as it was at version `id` (access already checked by the caller).
pub async fn files_at(services: &Services, project: Uuid, id: Uuid) -> ApiResult<Vec<File>> {
    let version = find(services, project, id).await?;
    Ok(list_files(&document_at(services, project, &version).await?))
}

/// Bring the files back to how they were at version `id`, as a new edit on top of the
/// current state that every client receives. EDITOR or OWNER.
pub async fn restore(
    services: &Services,
    viewer: &AuthUser,
    project: Uuid,
    id: Uuid,
) -> ApiResult<Applied> {
    access::check(&services.db, Some(viewer), project, ProjectAction::Edit).await?;
    let version = find(services, project, id).await?;
    let target: HashMap<String, String> =
        list_files(&document_at(services, project, &version).await?)
            .into_iter()
            .map(|file| (file.path, file.content))
            .collect();
    let (_, applied) = services
        .documents
        .edit(project, viewer.id, |doc| {
            let files = doc.get_map(FILES);
            let mut current = Vec::new();
            files.for_each(|path, value| current.push((path.to_owned(), value)));
            for (path, value) in current {
                let keep = matches!(value, ValueOrContainer::Container(Container::Text(_)))
                    && target.contains_key(&path);
                if !keep {
                    files.delete(&path).map_err(failed)?;
                }
            }
            for (path, content) in &target {
                let text = match files.get(path) {
                    Some(ValueOrContainer::Container(Container::Text(text))) => text,
                    _ => files
                        .insert_container(path, LoroText::new())
                        .map_err(failed)?,
                };
                if text.to_string() != *content {
                    text.update(content, UpdateOptions::default())
                        .map_err(|e| failed(format!("{e:?}")))?;
                }
            }
            Ok(())
        })
        .await?;
    Ok(applied)
}

fn failed(error: impl std::fmt::Display) -> ApiError {
    ApiError::internal(anyhow::anyhow!("restoring a version: {error}"))
}
