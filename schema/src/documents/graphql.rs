//! GraphQL types and resolvers of documents: files, updates and their live feed.

use crate::context::ServicesExt;
use std::sync::Arc;

use async_graphql::{Context, ID, Object, Result, SimpleObject, Subscription};
use futures_util::Stream;
use uuid::Uuid;

use super::hub::{Applied, DocUpdate, decode_vv};
use super::live::{Live, LiveHandoff};
use super::service::{self, File};
use crate::context::ViewerExt;
use crate::error::{ApiError, ApiResult};
use crate::loaders::load_user_opt;
use crate::projects::revocation::Revocation;
use crate::scalars::{Base64, EncodedVersionVector};
use crate::users::User;
use crate::validation;

/// A file of a project, at the head of its document or at a version.
#[derive(SimpleObject)]
#[graphql(name = "File")]
pub struct FileObject {
    /// Relative path, `/`-separated.
    pub path: String,
    /// The text.
    pub content: String,
    /// Size in UTF-8 bytes.
    pub size: usize,
}

impl From<File> for FileObject {
    fn from(file: File) -> Self {
        Self {
            path: file.path,
            content: file.content,
            size: file.size,
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
        // The first event and a resync are the only ones not in the log.
        self.update.seq.is_none()
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

#[derive(Default)]
pub struct DocumentsQuery;

#[Object]
impl DocumentsQuery {
    /// The files of a project at the head of its document, sorted by path.
    async fn files(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
    ) -> Result<Vec<FileObject>> {
        let project = project_id_arg(&project_id)?;
        let services = ctx.services()?;
        let files = service::files(
            &services.reads,
            &services.documents,
            ctx.viewer().user()?,
            project,
        )
        .await?;
        Ok(files.into_iter().map(FileObject::from).collect())
    }

    /// Where a project's document stands on the server now; a client holding this version
    /// vector holds everything.
    async fn document_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
    ) -> Result<DocumentVersion> {
        let project = project_id_arg(&project_id)?;
        let services = ctx.services()?;
        let head = service::head(
            &services.reads,
            &services.documents,
            ctx.viewer().user()?,
            project,
        )
        .await?;
        Ok(head.into())
    }

    /// One file, at the head or, given `version`, as it was at that version.
    async fn file(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The file's path.")] path: String,
        #[graphql(desc = "A version's id: the file as it was then; the head when absent.")] version: Option<ID>,
    ) -> Result<FileObject> {
        let project = project_id_arg(&project_id)?;
        let version = version
            .map(|version| validation::id("version", &version))
            .transpose()?;
        let services = ctx.services()?;
        let file = service::file(
            &services.reads,
            &services.documents,
            ctx.viewer().user()?,
            project,
            &path,
            version,
        )
        .await?;
        Ok(file.into())
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
    /// BAD_USER_INPUT. Updates may be sent without waiting for the previous answer (over one
    /// socket or concurrent requests): one that depends on changes the server lacks waits for
    /// them while the document moves, and gets CONFLICT with the server's version vector in
    /// `extensions.versionVector` when they do not come (5 s without progress, at most 30 s).
    /// Either way nothing changes.
    async fn apply_update(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "A Loro update (`doc.export({mode: \"update\", from})`), base64.")] update: Base64,
        #[graphql(desc = "The sender's own id, echoed to subscribers (1–64 bytes).")]
        client_id: Option<String>,
    ) -> Result<DocumentVersion> {
        let project = project_id_arg(&project_id)?;
        let services = ctx.services()?;
        let bytes = update
            .into_bytes()
            .ok_or_else(|| ApiError::bad_input("update", "not valid base64"))?;
        let applied = service::apply_update(
            &services.db,
            &services.documents,
            ctx.viewer().user()?,
            project,
            client_id,
            &bytes,
        )
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
    ) -> Result<FileObject> {
        let project = project_id_arg(&project_id)?;
        let services = ctx.services()?;
        let file = service::create_file(
            &services.db,
            &services.documents,
            ctx.viewer().user()?,
            project,
            &path,
            content.as_deref().unwrap_or_default(),
        )
        .await?;
        Ok(file.into())
    }

    /// Move a file to a new path (its text is carried over). EDITOR or OWNER.
    async fn rename_file(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The file's current path.")] path: String,
        #[graphql(desc = "The path it moves to.")] new_path: String,
    ) -> Result<FileObject> {
        let project = project_id_arg(&project_id)?;
        let services = ctx.services()?;
        let file = service::rename_file(
            &services.db,
            &services.documents,
            ctx.viewer().user()?,
            project,
            &path,
            &new_path,
        )
        .await?;
        Ok(file.into())
    }

    /// Delete a file. EDITOR or OWNER.
    async fn delete_file(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The path of the file to delete.")] path: String,
    ) -> Result<bool> {
        let project = project_id_arg(&project_id)?;
        let services = ctx.services()?;
        service::delete_file(
            &services.db,
            &services.documents,
            ctx.viewer().user()?,
            project,
            &path,
        )
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
        let services = ctx.services()?;
        let viewer = ctx.viewer().user()?.cloned();
        let permit = crate::context::subscription_permit(ctx)?;
        let revocation =
            Revocation::watch(&services.bus, services.db.clone(), project, viewer.clone());
        // Boxed, as the resync below: what a subscription's stream holds is as large as the
        // largest future it ever awaits, and the ones that query the database are large.
        let subscription = Box::pin(service::follow(
            &services.db,
            &services.documents,
            viewer.as_ref(),
            project,
            since,
        ))
        .await?;
        let live = Live::new(subscription, services.documents.clone(), revocation, permit);
        let handoff = ctx
            .data_opt::<Arc<LiveHandoff>>()
            .map(|handoff| (handoff.clone(), services.metrics.clone()));
        Ok(updates_stream(live, handoff))
    }
}

fn updates_stream(
    mut live: Live,
    handoff: Option<(Arc<LiveHandoff>, Arc<crate::metrics::Metrics>)>,
) -> impl Stream<Item = Result<DocumentUpdate>> {
    async_stream::stream! {
        yield Ok(DocumentUpdate { update: live.catch_up() });
        if let Some((handoff, metrics)) = handoff {
            // The connection takes the live part from here on (see `documents/live.rs`) and
            // drops this stream.
            handoff.hand(live, &metrics);
            std::future::pending::<()>().await;
            return;
        }
        while let Some(next) = live.next().await {
            match next {
                Ok(update) => yield Ok(DocumentUpdate { update }),
                Err(error) => {
                    yield Err(error.into());
                    break;
                }
            }
        }
    }
}
