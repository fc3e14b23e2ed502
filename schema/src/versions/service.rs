//! Creating, listing, reading and restoring checkpoints.

use std::collections::HashMap;

use entity::version;
use loro::{Container, Frontiers, LoroDoc, LoroText, UpdateOptions, ValueOrContainer};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::store;

use crate::context::AuthUser;
use crate::documents::{Applied, Documents, FILES, File, list_files, read_file};
use crate::error::{ApiError, ApiResult};
use crate::projects::access::{self, Live, ProjectAction};
use crate::validation;

/// Longest version title and message, in characters.
pub const TITLE_MAX: usize = 120;
pub const MESSAGE_MAX: usize = 2000;

/// Save the document's current state as a named checkpoint. EDITOR or OWNER.
pub async fn create(
    db: &DatabaseConnection,
    documents: &Documents,
    viewer: &AuthUser,
    project: Uuid,
    title: &str,
    message: Option<&str>,
) -> ApiResult<version::Model> {
    let title = validation::single_line("title", title, TITLE_MAX)?;
    let message = validation::text("message", message.unwrap_or(""), MESSAGE_MAX)?;
    access::check_live(db, Some(viewer), project, Live::Edit).await?;
    let frontiers = documents
        .read(project, |doc| doc.oplog_frontiers().encode())
        .await?;
    store::insert(db, project, title, message, frontiers, Some(viewer.id)).await
}

/// A project's checkpoints, newest first.
pub async fn list(
    db: &DatabaseConnection,
    viewer: Option<&AuthUser>,
    project: Uuid,
) -> ApiResult<Vec<version::Model>> {
    access::check(db, viewer, project, ProjectAction::Read).await?;
    store::list(db, project).await
}

/// The document as it was at `version`.
async fn document_at(
    documents: &Documents,
    project: Uuid,
    version: &version::Model,
) -> ApiResult<LoroDoc> {
    let frontiers = Frontiers::decode(&version.frontiers)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("stored frontiers: {e}")))?;
    documents
        .read(project, |doc| doc.fork_at(&frontiers))
        .await?
        .map_err(|e| ApiError::internal(anyhow::anyhow!("fork at a version: {e}")))
}

/// A file as it was at version `id` (access already checked by the caller).
pub async fn file_at(
    db: &DatabaseConnection,
    documents: &Documents,
    project: Uuid,
    id: Uuid,
    path: &str,
) -> ApiResult<File> {
    let version = store::find(db, project, id).await?;
    read_file(&document_at(documents, project, &version).await?, path)
}

/// Every file as it was at version `id` (access already checked by the caller).
pub async fn files_at(
    db: &DatabaseConnection,
    documents: &Documents,
    project: Uuid,
    id: Uuid,
) -> ApiResult<Vec<File>> {
    let version = store::find(db, project, id).await?;
    Ok(list_files(
        &document_at(documents, project, &version).await?,
    ))
}

/// Bring the files back to how they were at version `id`, as a new edit on top of the
/// current state that every client receives. EDITOR or OWNER.
pub async fn restore(
    db: &DatabaseConnection,
    documents: &Documents,
    viewer: &AuthUser,
    project: Uuid,
    id: Uuid,
) -> ApiResult<Applied> {
    access::check_live(db, Some(viewer), project, Live::Edit).await?;
    let version = store::find(db, project, id).await?;
    let target: HashMap<String, String> =
        list_files(&document_at(documents, project, &version).await?)
            .into_iter()
            .map(|file| (file.path, file.content))
            .collect();
    let (_, applied) = documents
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
