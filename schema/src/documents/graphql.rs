//! GraphQL types and resolvers of documents: files, updates and their live feed.

use std::sync::Arc;

use async_graphql::{Context, ID, Object, Result, SimpleObject, Subscription};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::Stream;
use loro::{Container, LoroDoc, LoroText, ValueOrContainer, VersionVector};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::hub::{Applied, DocUpdate, FILES, decode_vv};
use super::limits::check_path;
use crate::context::{AuthUser, ViewerExt};
use crate::error::{ApiError, ApiResult};
use crate::loaders::load_user_opt;
use crate::projects::access::{self, ProjectAction};
use crate::projects::revocation::Revocation;
use crate::scalars::{Base64, EncodedVersionVector};
use crate::state::Services;
use crate::users::User;
use crate::validation;

/// The longest client id, in bytes.
const CLIENT_ID_MAX: usize = 64;

/// A file of a project, at the head of its document or at a version.
#[derive(SimpleObject)]
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

/// Where a document stands: after a change, or now.
#[derive(SimpleObject)]
pub struct DocumentVersion {
    /// The position in the document's log of the last update applied (for a change that
    /// changed nothing, the current head).
    pub seq: i64,
    /// The server's version vector.
    pub version_vector: EncodedVersionVector,
}

impl From<Applied> for DocumentVersion {
    fn from(applied: Applied) -> Self {
        Self {
            seq: applied.seq,
            version_vector: EncodedVersionVector(Base64::Text(applied.version_vector)),
        }
    }
}

/// Changes to a project's document, as a subscriber receives them.
pub struct DocumentUpdate {
    update: Arc<DocUpdate>,
    catch_up: bool,
}

/// Changes to a project's document, as a subscriber receives them.
#[Object]
impl DocumentUpdate {
    /// A Loro update (`ExportMode::Updates`); import it into the client's document.
    async fn update(&self) -> Base64 {
        Base64::Text(self.update.update.clone())
    }
    /// Position in the document's log; null for a catch-up or a resync.
    async fn seq(&self) -> Option<i64> {
        self.update.seq
    }
    /// True for the first event (what the client lacked) and for resyncs after lagging.
    async fn catch_up(&self) -> bool {
        self.catch_up
    }
    /// The server's version vector once this update is applied.
    async fn version_vector(&self) -> EncodedVersionVector {
        EncodedVersionVector(Base64::Text(self.update.version_vector.clone()))
    }
    /// Who sent it; null for catch-ups and for edits the server made (restores).
    async fn author(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        load_user_opt(ctx, self.update.author).await
    }
    /// The `clientId` the author sent with it, so a client can skip its own echo.
    async fn client_id(&self) -> Option<&str> {
        self.update.client_id.as_deref()
    }
}

fn services_of(ctx: &Context<'_>) -> ApiResult<Services> {
    ctx.data::<Services>()
        .cloned()
        .map_err(|e| ApiError::internal(anyhow::anyhow!(e.message)))
}

/// The services, once the viewer (if any) may read `project`.
async fn authorize_read(
    ctx: &Context<'_>,
    project: Uuid,
) -> ApiResult<(Services, Option<AuthUser>)> {
    let services = services_of(ctx)?;
    let viewer = ctx.viewer().user()?.cloned();
    access::check(&services.db, viewer.as_ref(), project, ProjectAction::Read).await?;
    Ok((services, viewer))
}

/// The services and the signed-in viewer's id, once they may edit `project`.
async fn authorize_edit(ctx: &Context<'_>, project: Uuid) -> ApiResult<(Services, Uuid)> {
    let services = services_of(ctx)?;
    let viewer = ctx.viewer().require()?;
    access::check(&services.db, Some(viewer), project, ProjectAction::Edit).await?;
    Ok((services, viewer.id))
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

fn check_content(services: &Services, content: &str) -> ApiResult<()> {
    let max = services.documents.config().max_file_bytes;
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

#[derive(Default)]
pub struct DocumentsQuery;

#[Object]
impl DocumentsQuery {
    /// The files of a project at the head of its document, sorted by path.
    async fn files(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
    ) -> Result<Vec<File>> {
        let project = project_id_arg(&project_id)?;
        let (services, _) = authorize_read(ctx, project).await?;
        Ok(services.documents.read(project, list_files).await?)
    }

    /// Where a project's document stands on the server now; a client holding this version
    /// vector holds everything.
    async fn document_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
    ) -> Result<DocumentVersion> {
        let project = project_id_arg(&project_id)?;
        let (services, _) = authorize_read(ctx, project).await?;
        Ok(services.documents.head(project).await?.into())
    }

    /// One file, at the head or, given `version`, as it was at that version.
    async fn file(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The file's path.")] path: String,
        #[graphql(desc = "A version's id: the file as it was then; the head when absent.")] version: Option<ID>,
    ) -> Result<File> {
        let project = project_id_arg(&project_id)?;
        let (services, _) = authorize_read(ctx, project).await?;
        match version {
            None => Ok(services
                .documents
                .read(project, |doc| read_file(doc, &path))
                .await??),
            Some(version) => {
                let version = validation::id("version", &version)?;
                Ok(crate::versions::file_at(&services, project, version, &path).await?)
            }
        }
    }
}

fn project_id_arg(raw: &ID) -> ApiResult<Uuid> {
    validation::id("projectId", raw)
}

#[derive(Default)]
pub struct DocumentsMutation;

#[Object]
impl DocumentsMutation {
    /// Apply a Loro update (`ExportMode::Updates`, base64) to a project's document. EDITOR or
    /// OWNER. Stored durably before the answer, then sent to every subscriber. An update that
    /// does not decode, breaks the limits, or touches anything but `files` is refused with
    /// BAD_USER_INPUT; one that depends on changes the server lacks gets CONFLICT with the
    /// server's version vector in `extensions.versionVector`. Either way nothing changes.
    async fn apply_update(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "A Loro update (`doc.export({mode: \"update\", from})`), base64.")] update: Base64,
        #[graphql(desc = "The sender's own id, echoed to subscribers (at most 64 bytes).")]
        client_id: Option<String>,
    ) -> Result<DocumentVersion> {
        let project = project_id_arg(&project_id)?;
        if client_id.as_ref().is_some_and(|c| c.len() > CLIENT_ID_MAX) {
            return Err(
                ApiError::bad_input("clientId", "clientId must be at most 64 bytes").into(),
            );
        }
        let (services, author) = authorize_edit(ctx, project).await?;
        let bytes = update
            .into_bytes()
            .ok_or_else(|| ApiError::bad_input("update", "not valid base64"))?;
        let applied = services
            .documents
            .apply(project, author, client_id, &bytes)
            .await;
        crate::metrics::update(&applied, bytes.len());
        Ok(applied?.into())
    }

    /// Create a file. EDITOR or OWNER. CONFLICT when the path is taken.
    async fn create_file(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The new file's path, such as `src/main.py`.")] path: String,
        #[graphql(desc = "The initial text (empty when absent).")] content: Option<String>,
    ) -> Result<File> {
        let content = content.unwrap_or_default();
        let project = project_id_arg(&project_id)?;
        check_path("path", &path)?;
        let (services, author) = authorize_edit(ctx, project).await?;
        check_content(&services, &content)?;
        let (file, _) = services
            .documents
            .edit(project, author, |doc| {
                let files = doc.get_map(FILES);
                if files.get(&path).is_some() {
                    return Err(ApiError::conflict(
                        Some("path"),
                        "a file with this path exists",
                    ));
                }
                let text = files
                    .insert_container(&path, LoroText::new())
                    .map_err(loro_failed)?;
                text.insert(0, &content).map_err(loro_failed)?;
                Ok(File::new(&path, &text))
            })
            .await?;
        Ok(file)
    }

    /// Move a file to a new path (its text is carried over). EDITOR or OWNER.
    async fn rename_file(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The file's current path.")] path: String,
        #[graphql(desc = "The path it moves to.")] new_path: String,
    ) -> Result<File> {
        let project = project_id_arg(&project_id)?;
        check_path("newPath", &new_path)?;
        let (services, author) = authorize_edit(ctx, project).await?;
        let (file, _) = services
            .documents
            .edit(project, author, |doc| {
                let files = doc.get_map(FILES);
                let old = text_at(doc, &path).ok_or(ApiError::NotFound("file"))?;
                if path == new_path {
                    return Ok(File::new(&path, &old));
                }
                if files.get(&new_path).is_some() {
                    return Err(ApiError::conflict(
                        Some("newPath"),
                        "a file with this path exists",
                    ));
                }
                let content = old.to_string();
                let text = files
                    .insert_container(&new_path, LoroText::new())
                    .map_err(loro_failed)?;
                text.insert(0, &content).map_err(loro_failed)?;
                files.delete(&path).map_err(loro_failed)?;
                Ok(File::new(&new_path, &text))
            })
            .await?;
        Ok(file)
    }

    /// Delete a file. EDITOR or OWNER.
    async fn delete_file(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The path of the file to delete.")] path: String,
    ) -> Result<bool> {
        let project = project_id_arg(&project_id)?;
        let (services, author) = authorize_edit(ctx, project).await?;
        services
            .documents
            .edit(project, author, |doc| {
                text_at(doc, &path).ok_or(ApiError::NotFound("file"))?;
                doc.get_map(FILES).delete(&path).map_err(loro_failed)
            })
            .await?;
        Ok(true)
    }
}

#[derive(Default)]
pub struct DocumentsSubscription;

#[Subscription]
impl DocumentsSubscription {
    /// A project's document, live: first what the client lacks relative to `since` (an
    /// encoded version vector; everything when absent), then every update as it is stored,
    /// with its author and clientId. A subscriber that falls behind gets a resync (catchUp
    /// true) instead of being dropped. Ends when the viewer loses access to the project.
    async fn document_updates(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The version vector the client holds; everything when absent.")]
        since: Option<EncodedVersionVector>,
    ) -> Result<impl Stream<Item = Result<DocumentUpdate>> + use<>> {
        let project = project_id_arg(&project_id)?;
        let since = match since {
            Some(since) => {
                let bytes = since
                    .0
                    .into_bytes()
                    .ok_or_else(|| ApiError::bad_input("since", "not valid base64"))?;
                Some(decode_vv("since", &bytes)?)
            }
            None => None,
        };
        let (services, viewer) = authorize_read(ctx, project).await?;
        let revocation = Revocation::watch(&services.bus, services.db.clone(), project, viewer);
        let subscription = services.documents.subscribe(project, since).await?;
        Ok(crate::context::budgeted(
            ctx,
            updates_stream(services, subscription, revocation),
        )?)
    }
}

fn updates_stream(
    services: Services,
    subscription: super::hub::Subscription,
    mut revocation: Revocation,
) -> impl Stream<Item = Result<DocumentUpdate>> {
    let super::hub::Subscription {
        catch_up,
        mut live,
        entry,
    } = subscription;
    async_stream::stream! {
        let catch_up = Arc::new(catch_up);
        let mut last = catch_up.clone();
        yield Ok(DocumentUpdate { update: catch_up, catch_up: true });
        loop {
            tokio::select! {
                received = live.recv() => match received {
                    Ok(update) => {
                        last = update.clone();
                        yield Ok(DocumentUpdate { update, catch_up: false });
                    }
                    Err(RecvError::Lagged(_)) => {
                        let known = last_known(&last);
                        match services.documents.resync(&entry, &known).await {
                            Ok(update) => {
                                let update = Arc::new(update);
                                last = update.clone();
                                yield Ok(DocumentUpdate { update, catch_up: true });
                            }
                            Err(error) => {
                                yield Err(error.into());
                                break;
                            }
                        }
                    }
                    Err(RecvError::Closed) => break,
                },
                error = revocation.revoked() => {
                    yield Err(error.into());
                    break;
                }
            }
        }
    }
}

/// The version a subscriber is known to hold: that of the last update it was sent.
fn last_known(update: &DocUpdate) -> VersionVector {
    STANDARD
        .decode(&update.version_vector)
        .ok()
        .and_then(|bytes| VersionVector::decode(&bytes).ok())
        .unwrap_or_default()
}
