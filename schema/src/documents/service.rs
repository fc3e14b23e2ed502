//! A project's files and who may read or change its document: what the resolvers of
//! `documents/graphql.rs` call, and how runs and versions read files. Each operation checks
//! access through [`access::check_live`] and then works on the live document of the hub.

use loro::{Container, LoroDoc, LoroText, ValueOrContainer, VersionVector};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::hub::{Applied, Documents, Subscription};
use super::limits::check_path;
use super::shape::FILES;
use crate::context::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::projects::access::{self, Live};
use crate::validation;

/// A file of a project, at the head of its document or at a version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// Relative path, `/`-separated.
    pub path: String,
    /// The text.
    pub content: String,
    /// Size in UTF-8 bytes.
    pub size: usize,
}

impl File {
    fn new(path: &str, text: &LoroText) -> Self {
        let content = text.to_string();
        Self {
            path: path.to_owned(),
            size: content.len(),
            content,
        }
    }
}

/// Once `viewer` (if any) may read `project`'s document.
pub async fn authorize_read(
    db: &DatabaseConnection,
    viewer: Option<&AuthUser>,
    project: Uuid,
) -> ApiResult<()> {
    access::check_live(db, viewer, project, Live::Follow).await?;
    Ok(())
}

/// The author of an edit of `project`'s document, once `viewer` may make it.
pub async fn authorize_edit(
    db: &DatabaseConnection,
    viewer: Option<&AuthUser>,
    project: Uuid,
) -> ApiResult<Uuid> {
    access::check_live(db, viewer, project, Live::Edit).await?;
    viewer
        .map(|viewer| viewer.id)
        .ok_or_else(|| ApiError::unauthenticated("sign in first"))
}

/// The text at `path` in `doc`'s file map.
fn text_at(doc: &LoroDoc, path: &str) -> Option<LoroText> {
    match doc.get_map(FILES).get(path) {
        Some(ValueOrContainer::Container(Container::Text(text))) => Some(text),
        _ => None,
    }
}

/// Every file of `doc`, sorted by path.
pub fn list_files(doc: &LoroDoc) -> Vec<File> {
    let mut files = Vec::new();
    doc.get_map(FILES).for_each(|path, value| {
        if let ValueOrContainer::Container(Container::Text(text)) = value {
            files.push(File::new(path, &text));
        }
    });
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// One file of `doc`, or NOT_FOUND.
pub fn read_file(doc: &LoroDoc, path: &str) -> ApiResult<File> {
    text_at(doc, path)
        .map(|text| File::new(path, &text))
        .ok_or(ApiError::NotFound("file"))
}

/// The files of `project` at the head of its document, sorted by path.
pub async fn files(
    db: &DatabaseConnection,
    documents: &Documents,
    viewer: Option<&AuthUser>,
    project: Uuid,
) -> ApiResult<Vec<File>> {
    authorize_read(db, viewer, project).await?;
    documents.read(project, list_files).await
}

/// One file of `project`: at the head, or as it was at `version`.
pub async fn file(
    db: &DatabaseConnection,
    documents: &Documents,
    viewer: Option<&AuthUser>,
    project: Uuid,
    path: &str,
    version: Option<Uuid>,
) -> ApiResult<File> {
    authorize_read(db, viewer, project).await?;
    match version {
        None => documents.read(project, |doc| read_file(doc, path)).await?,
        Some(version) => crate::versions::file_at(db, documents, project, version, path).await,
    }
}

/// Where `project`'s document stands now.
pub async fn head(
    db: &DatabaseConnection,
    documents: &Documents,
    viewer: Option<&AuthUser>,
    project: Uuid,
) -> ApiResult<Applied> {
    authorize_read(db, viewer, project).await?;
    documents.head(project).await
}

/// Start following `project`'s document: what the viewer lacks relative to `since`, then
/// every update.
pub async fn follow(
    db: &DatabaseConnection,
    documents: &Documents,
    viewer: Option<&AuthUser>,
    project: Uuid,
    since: Option<VersionVector>,
) -> ApiResult<Subscription> {
    authorize_read(db, viewer, project).await?;
    documents.subscribe(project, since).await
}

/// Apply a client's Loro update to `project`'s document. EDITOR or OWNER.
pub async fn apply_update(
    db: &DatabaseConnection,
    documents: &Documents,
    viewer: Option<&AuthUser>,
    project: Uuid,
    client_id: Option<String>,
    update: &[u8],
) -> ApiResult<Applied> {
    if let Some(client_id) = &client_id {
        validation::client_id(client_id)?;
    }
    let author = match viewer {
        Some(viewer) if documents.edit_granted(project, viewer.id) => viewer.id,
        _ => {
            let epoch = documents.access_epoch();
            let author = authorize_edit(db, viewer, project).await?;
            documents.grant_edit(project, author, epoch);
            author
        }
    };
    documents.apply(project, author, client_id, update).await
}

fn check_content(documents: &Documents, content: &str) -> ApiResult<()> {
    let max = documents.config().max_file_bytes;
    if content.len() > max {
        return Err(ApiError::bad_input(
            "content",
            format!("a file holds at most {max} bytes"),
        ));
    }
    Ok(())
}

fn loro_failed(error: impl std::fmt::Display) -> ApiError {
    ApiError::internal(anyhow::anyhow!("document edit failed: {error}"))
}

/// Add a text at `path` holding `content` (the path is free and checked).
fn new_file(doc: &LoroDoc, path: &str, content: &str) -> ApiResult<File> {
    let text = doc
        .get_map(FILES)
        .insert_container(path, LoroText::new())
        .map_err(loro_failed)?;
    text.insert(0, content).map_err(loro_failed)?;
    Ok(File::new(path, &text))
}

/// BAD_USER_INPUT when a file at `path` could not sit beside the files of `doc` (other than
/// `ignoring`) on a disk: a file `a` beside `a/b.py`, in either order. A run would have to
/// make `a` both a file and a folder.
fn check_no_clash(
    doc: &LoroDoc,
    field: &'static str,
    path: &str,
    ignoring: Option<&str>,
) -> ApiResult<()> {
    let mut clash = None;
    doc.get_map(FILES).for_each(|other, _| {
        if clash.is_some() || Some(other) == ignoring {
            return;
        }
        let folder_of = |inner: &str, outer: &str| {
            inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with('/'))
        };
        if folder_of(path, other) {
            clash = Some(format!(
                "{path} would be inside {other}, which is a file, not a folder"
            ));
        } else if folder_of(other, path) {
            clash = Some(format!(
                "{path} is a folder of {other}, so it cannot be a file too"
            ));
        }
    });
    clash.map_or(Ok(()), |message| Err(ApiError::bad_input(field, message)))
}

/// Create a file. EDITOR or OWNER. CONFLICT when the path is taken, BAD_USER_INPUT when it
/// clashes with another file's folders.
pub async fn create_file(
    db: &DatabaseConnection,
    documents: &Documents,
    viewer: Option<&AuthUser>,
    project: Uuid,
    path: &str,
    content: &str,
) -> ApiResult<File> {
    check_path("path", path)?;
    let author = authorize_edit(db, viewer, project).await?;
    check_content(documents, content)?;
    let (file, _) = documents
        .edit(project, author, |doc| {
            let files = doc.get_map(FILES);
            if files.get(path).is_some() {
                return Err(ApiError::conflict(
                    Some("path"),
                    "a file with this path exists",
                ));
            }
            check_no_clash(doc, "path", path, None)?;
            new_file(doc, path, content)
        })
        .await?;
    Ok(file)
}

/// Move a file to a new path, carrying its text over. EDITOR or OWNER.
pub async fn rename_file(
    db: &DatabaseConnection,
    documents: &Documents,
    viewer: Option<&AuthUser>,
    project: Uuid,
    path: &str,
    new_path: &str,
) -> ApiResult<File> {
    check_path("newPath", new_path)?;
    let author = authorize_edit(db, viewer, project).await?;
    let (file, _) = documents
        .edit(project, author, |doc| {
            let files = doc.get_map(FILES);
            let old = text_at(doc, path).ok_or(ApiError::NotFound("file"))?;
            if path == new_path {
                return Ok(File::new(path, &old));
            }
            if files.get(new_path).is_some() {
                return Err(ApiError::conflict(
                    Some("newPath"),
                    "a file with this path exists",
                ));
            }
            check_no_clash(doc, "newPath", new_path, Some(path))?;
            let file = new_file(doc, new_path, &old.to_string())?;
            files.delete(path).map_err(loro_failed)?;
            Ok(file)
        })
        .await?;
    Ok(file)
}

/// Delete a file. EDITOR or OWNER.
pub async fn delete_file(
    db: &DatabaseConnection,
    documents: &Documents,
    viewer: Option<&AuthUser>,
    project: Uuid,
    path: &str,
) -> ApiResult<()> {
    let author = authorize_edit(db, viewer, project).await?;
    documents
        .edit(project, author, |doc| {
            text_at(doc, path).ok_or(ApiError::NotFound("file"))?;
            doc.get_map(FILES).delete(path).map_err(loro_failed)
        })
        .await?;
    Ok(())
}
