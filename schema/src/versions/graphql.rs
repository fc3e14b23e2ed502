//! GraphQL types and resolvers of versions.

use crate::context::ServicesExt;
use async_graphql::{Context, ID, Object, Result};
use chrono::{DateTime, Utc};
use entity::version;

use super::service;
use crate::context::ViewerExt;
use crate::documents::{DocumentVersion, FileObject};
use crate::loaders::load_user_opt;
use crate::users::User;
use crate::validation;

/// A named checkpoint of a project's files.
pub struct Version(version::Model);

/// A named checkpoint of a project's files.
#[Object]
impl Version {
    /// Stable id (a UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Its name.
    async fn title(&self) -> &str {
        &self.0.title
    }
    /// A longer note (empty when none was given).
    async fn message(&self) -> &str {
        &self.0.message
    }
    /// Who saved it; null for automatic checkpoints ("Auto-save").
    async fn author(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        load_user_opt(ctx, self.0.author_id).await
    }
    /// Taken by the server when a changed document went idle.
    async fn is_auto(&self) -> bool {
        self.0.is_auto
    }
    /// When it was saved.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// The files as they were at this version, sorted by path.
    async fn files(&self, ctx: &Context<'_>) -> Result<Vec<FileObject>> {
        let services = ctx.services()?;
        let files = service::files_at(
            &services.db,
            &services.documents,
            self.0.project_id,
            self.0.id,
        )
        .await?;
        Ok(files.into_iter().map(FileObject::from).collect())
    }
}

#[derive(Default)]
pub struct VersionsQuery;

#[Object]
impl VersionsQuery {
    /// A project's checkpoints, newest first.
    async fn versions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
    ) -> Result<Vec<Version>> {
        let services = ctx.services()?;
        let project = validation::id("projectId", &project_id)?;
        let versions = service::list(&services.reads, ctx.viewer().user()?, project).await?;
        Ok(versions.into_iter().map(Version).collect())
    }
}

#[derive(Default)]
pub struct VersionsMutation;

#[Object]
impl VersionsMutation {
    /// Save the current state of a project's files as a named checkpoint. EDITOR or OWNER.
    async fn create_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The version's name, 1–120 characters.")] title: String,
        #[graphql(desc = "A longer note about the version.")] message: Option<String>,
    ) -> Result<Version> {
        let services = ctx.services()?;
        let viewer = ctx.viewer().require()?;
        let project = validation::id("projectId", &project_id)?;
        let version = service::create(
            &services.db,
            &services.documents,
            viewer,
            project,
            &title,
            message.as_deref(),
        )
        .await?;
        Ok(Version(version))
    }

    /// Bring a project's files back to a version. This is a new edit on top of the current
    /// state, sent to every client like any other; history is never rewritten. EDITOR or OWNER.
    async fn restore_version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The id of the version to bring back.")] version_id: ID,
    ) -> Result<DocumentVersion> {
        let services = ctx.services()?;
        let viewer = ctx.viewer().require()?;
        let project = validation::id("projectId", &project_id)?;
        let version = validation::id("versionId", &version_id)?;
        Ok(
            service::restore(&services.db, &services.documents, viewer, project, version)
                .await?
                .into(),
        )
    }
}
