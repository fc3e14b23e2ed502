//! GraphQL types and resolvers of projects and members.

use crate::context::ServicesExt;
use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::project_member;
use uuid::Uuid;

use super::access::ProjectAccess;
use super::service::{self, NewProject, ProjectChanges, ProjectListFilter};
use crate::context::ViewerExt;
use crate::error::{ApiError, ApiResult};
use crate::loaders::load_user;
use crate::users::User;
use crate::validation;

/// A member's role in a project.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "entity::project_member::ProjectRole")]
pub enum ProjectRole {
    /// Everything, including settings, members and deletion.
    Owner,
    /// Reads and edits the files.
    Editor,
    /// Reads only.
    Viewer,
}

/// The language a project's code is written in.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "entity::project::Language")]
pub enum Language {
    /// Python 3.
    Python,
    /// JavaScript on Node.js.
    #[graphql(name = "JAVASCRIPT")]
    JavaScript,
    /// C (gcc).
    C,
    /// C++ (g++).
    Cpp,
    /// Bash scripts.
    Bash,
    /// Rust.
    Rust,
    /// Java.
    Java,
    /// Go.
    Go,
    /// TypeScript, compiled by `tsc` and run on Node.js.
    #[graphql(name = "TYPESCRIPT")]
    TypeScript,
    /// Ruby.
    Ruby,
}

/// A shared workspace of files that its members edit together.
pub struct Project(ProjectAccess);

/// A shared workspace of files that its members edit together.
#[Object]
impl Project {
    /// Stable id (a UUID).
    async fn id(&self) -> ID {
        ID(self.0.project.id.to_string())
    }
    /// 1–120 characters.
    async fn title(&self) -> &str {
        &self.0.project.title
    }
    /// Up to 2,000 characters; may be empty.
    async fn description(&self) -> &str {
        &self.0.project.description
    }
    /// The language new files and runs default to.
    async fn default_language(&self) -> Language {
        self.0.project.default_language.into()
    }
    /// Public projects are listed, readable and joinable by anyone.
    async fn is_public(&self) -> bool {
        self.0.project.is_public
    }
    /// The primary owner.
    async fn owner(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.0.project.owner_id).await
    }
    /// When the project was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.project.created_at
    }
    /// When its settings or ownership last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.project.updated_at
    }
    /// When a member last did something here; lists are sorted on it, newest first.
    async fn last_activity_at(&self) -> DateTime<Utc> {
        self.0.project.last_activity_at
    }
    /// The signed-in user's role here, or null when not a member.
    async fn viewer_role(&self) -> Option<ProjectRole> {
        self.0.role.map(Into::into)
    }
    /// The project this one was forked from; null when it was not, or when that project
    /// is gone or private to you.
    async fn forked_from(&self, ctx: &Context<'_>) -> Result<Option<Project>> {
        let Some(source) = self.0.project.forked_from else {
            return Ok(None);
        };
        let services = ctx.services()?;
        match service::get(&services.reads, ctx.viewer(), source).await {
            Ok(access) => Ok(Some(Project(access))),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
    /// How many forks of this project exist.
    async fn forks_count(&self, ctx: &Context<'_>) -> Result<u64> {
        Ok(service::forks_count(&ctx.services()?.reads, self.0.project.id).await?)
    }
    /// Everyone in the project, longest-standing first.
    async fn members(&self, ctx: &Context<'_>) -> Result<Vec<ProjectMember>> {
        let members = service::members(&ctx.services()?.reads, self.0.project.id).await?;
        Ok(members.into_iter().map(ProjectMember).collect())
    }
}

/// A person's membership of a project.
pub struct ProjectMember(project_member::Model);

/// A person's membership of a project.
#[Object]
impl ProjectMember {
    /// The member.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.0.user_id).await
    }
    /// What the member may do.
    async fn role(&self) -> ProjectRole {
        self.0.role.into()
    }
    /// When the membership began.
    async fn joined_at(&self) -> DateTime<Utc> {
        self.0.joined_at
    }
}

/// Totals of a project list.
#[derive(SimpleObject)]
pub struct ProjectConnectionFields {
    /// How many projects match the filter, over all pages.
    total_count: u64,
}

pub type ProjectConnection = Connection<String, Project, ProjectConnectionFields, EmptyFields>;

/// Which projects to list. Without a filter: every project the viewer can read.
#[derive(InputObject, Default)]
pub struct ProjectFilter {
    /// true: only projects the viewer is a member of; false: only the others.
    pub mine: Option<bool>,
    /// true: only public projects; false: only private ones (that the viewer can read).
    pub public: Option<bool>,
    /// Case-insensitive text to find in the title or description (up to 100 characters).
    pub search: Option<String>,
}

/// A new project.
#[derive(InputObject)]
pub struct CreateProjectInput {
    /// 1–120 characters.
    pub title: String,
    /// Up to 2,000 characters.
    pub description: Option<String>,
    /// PYTHON unless given.
    #[graphql(default_with = "Language::Python")]
    pub default_language: Language,
    /// Private (false) unless given.
    #[graphql(default = false)]
    pub is_public: bool,
}

/// Changes to a project; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateProjectInput {
    /// 1–120 characters.
    pub title: Option<String>,
    /// Up to 2,000 characters.
    pub description: Option<String>,
    /// The new default language.
    pub default_language: Option<Language>,
    /// Make the project public or private.
    pub is_public: Option<bool>,
}

fn project_id(raw: &ID) -> ApiResult<Uuid> {
    validation::id("id", raw)
}

/// The `projectId` and `userId` arguments of the membership mutations.
fn membership_ids(project_id: &ID, user_id: &ID) -> ApiResult<(Uuid, Uuid)> {
    Ok((
        validation::id("projectId", project_id)?,
        validation::id("userId", user_id)?,
    ))
}

#[derive(Default)]
pub struct ProjectsQuery;

#[Object]
impl ProjectsQuery {
    /// A project's invite links that still work (neither revoked nor expired), newest
    /// first. OWNER only.
    async fn invites(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
    ) -> Result<Vec<Invite>> {
        let viewer = ctx.viewer().require()?;
        let id = validation::id("projectId", &project_id)?;
        let invites = super::invites::list(&ctx.services()?.reads, viewer, id).await?;
        Ok(invites.into_iter().map(Invite).collect())
    }

    /// A project the viewer can read: public, a member of it, or an admin.
    async fn project(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] id: ID,
    ) -> Result<Project> {
        let id = project_id(&id)?;
        Ok(Project(
            service::get(&ctx.services()?.reads, ctx.viewer(), id).await?,
        ))
    }

    /// Projects the viewer can read, most recently active first.
    async fn projects(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Narrow the list: membership, visibility, a search text.")] filter: Option<
            ProjectFilter,
        >,
        #[graphql(default = 20, desc = "Page size, 0 to 100.")] first: i32,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<ProjectConnection> {
        let filter = filter.unwrap_or_default();
        let filter = ProjectListFilter {
            mine: filter.mine,
            public: filter.public,
            search: filter.search,
        };
        let page = service::list(
            &ctx.services()?.reads,
            ctx.viewer(),
            filter,
            first,
            after.as_deref(),
        )
        .await?;
        let mut connection = Connection::with_additional_fields(
            page.has_previous_page,
            page.has_next_page,
            ProjectConnectionFields {
                total_count: page.total_count,
            },
        );
        connection.edges.extend(
            page.projects
                .into_iter()
                .map(|(cursor, access)| Edge::new(cursor, Project(access))),
        );
        Ok(connection)
    }
}

#[derive(Default)]
pub struct ProjectsMutation;

#[Object]
impl ProjectsMutation {
    /// Create a project; the caller becomes its OWNER.
    async fn create_project(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new project's title, description, language and visibility.")]
        input: CreateProjectInput,
    ) -> Result<Project> {
        let viewer = ctx.viewer().require()?;
        let input = NewProject {
            title: input.title,
            description: input.description,
            default_language: input.default_language.into(),
            is_public: input.is_public,
        };
        Ok(Project(
            service::create(&ctx.services()?.db, viewer, input).await?,
        ))
    }

    /// Change a project's settings. OWNER only.
    async fn update_project(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] id: ID,
        #[graphql(desc = "The settings to change; absent ones stay as they are.")]
        input: UpdateProjectInput,
    ) -> Result<Project> {
        let viewer = ctx.viewer().require()?;
        let services = ctx.services()?;
        let id = project_id(&id)?;
        let changes = ProjectChanges {
            title: input.title,
            description: input.description,
            default_language: input.default_language.map(Into::into),
            is_public: input.is_public,
        };
        Ok(Project(
            service::update(&services.db, &services.bus, viewer, id, changes).await?,
        ))
    }

    /// Delete a project and everything in it. OWNER only. Answers the deleted id.
    async fn delete_project(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] id: ID,
    ) -> Result<ID> {
        let viewer = ctx.viewer().require()?;
        let services = ctx.services()?;
        service::delete(
            &services.db,
            &services.documents,
            &services.bus,
            viewer,
            project_id(&id)?,
        )
        .await?;
        Ok(id)
    }

    /// Copy a project you can read (its files, with their history) into a new private
    /// project you own. `title` defaults to the original's.
    async fn fork_project(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The id of the project to copy.")] id: ID,
        #[graphql(desc = "The fork's title; the original's when absent.")] title: Option<String>,
    ) -> Result<Project> {
        let viewer = ctx.viewer().require()?;
        let services = ctx.services()?;
        Ok(Project(
            service::fork(
                &services.db,
                &services.documents,
                viewer,
                project_id(&id)?,
                title.as_deref(),
            )
            .await?,
        ))
    }

    /// Join a public project as VIEWER. Joining again changes nothing.
    async fn join_project(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The id of the public project to join.")] id: ID,
    ) -> Result<Project> {
        let viewer = ctx.viewer().require()?;
        let services = ctx.services()?;
        Ok(Project(
            service::join(&services.db, &services.bus, viewer, project_id(&id)?).await?,
        ))
    }

    /// Leave a project. The last OWNER cannot leave. Answers the project's id.
    async fn leave_project(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] id: ID,
    ) -> Result<ID> {
        let viewer = ctx.viewer().require()?;
        let services = ctx.services()?;
        service::leave(&services.db, &services.bus, viewer, project_id(&id)?).await?;
        Ok(id)
    }

    /// Create an invite link: whoever signs in and presents its token joins with `role`
    /// (EDITOR or VIEWER). OWNER only. The token is shown this once; `expiresInHours`
    /// 1–720, or never.
    async fn create_invite(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The role whoever accepts gets: EDITOR or VIEWER.")] role: ProjectRole,
        #[graphql(desc = "Hours until the link stops working (1–720); never when absent.")]
        expires_in_hours: Option<i32>,
    ) -> Result<CreatedInvite> {
        let viewer = ctx.viewer().require()?;
        let id = validation::id("projectId", &project_id)?;
        let (token, invite) = super::invites::create(
            &ctx.services()?.db,
            viewer,
            id,
            role.into(),
            expires_in_hours,
        )
        .await?;
        Ok(CreatedInvite {
            token,
            invite: Invite(invite),
        })
    }

    /// Revoke an invite link. OWNER only.
    async fn revoke_invite(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The invite's id.")] id: ID,
    ) -> Result<Invite> {
        let viewer = ctx.viewer().require()?;
        let id = validation::id("id", &id)?;
        let invite = super::invites::revoke(&ctx.services()?.db, viewer, id).await?;
        Ok(Invite(invite))
    }

    /// Join a project with an invite token. A member already keeps their role; an unknown,
    /// revoked or expired token is NOT_FOUND.
    async fn accept_invite(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The token from the invite link.")] token: String,
    ) -> Result<Project> {
        let viewer = ctx.viewer().require()?;
        let services = ctx.services()?;
        let access = super::invites::accept(&services.db, &services.bus, viewer, &token).await?;
        Ok(Project(access))
    }

    /// Add a user to a project by username. OWNER only.
    async fn add_member(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The username of the person to add.")] username: String,
        #[graphql(desc = "The role they get.")] role: ProjectRole,
    ) -> Result<ProjectMember> {
        let viewer = ctx.viewer().require()?;
        let id = validation::id("projectId", &project_id)?;
        let services = ctx.services()?;
        let member = service::add_member(
            &services.db,
            &services.bus,
            viewer,
            id,
            &username,
            role.into(),
        )
        .await?;
        Ok(ProjectMember(member))
    }

    /// Change a member's role. OWNER only; the last OWNER cannot be demoted.
    async fn set_member_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The member's user id.")] user_id: ID,
        #[graphql(desc = "The new role.")] role: ProjectRole,
    ) -> Result<ProjectMember> {
        let viewer = ctx.viewer().require()?;
        let (id, user_id) = membership_ids(&project_id, &user_id)?;
        let services = ctx.services()?;
        let member = service::set_member_role(
            &services.db,
            &services.bus,
            viewer,
            id,
            user_id,
            role.into(),
        )
        .await?;
        Ok(ProjectMember(member))
    }

    /// Remove a member. OWNER only; the last OWNER cannot be removed.
    async fn remove_member(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The member's user id.")] user_id: ID,
    ) -> Result<Project> {
        let viewer = ctx.viewer().require()?;
        let services = ctx.services()?;
        let (id, user_id) = membership_ids(&project_id, &user_id)?;
        Ok(Project(
            service::remove_member(&services.db, &services.bus, viewer, id, user_id).await?,
        ))
    }

    /// Make another member the primary OWNER; the caller becomes an EDITOR.
    async fn transfer_ownership(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The user id of the member who becomes the primary OWNER.")] user_id: ID,
    ) -> Result<Project> {
        let viewer = ctx.viewer().require()?;
        let services = ctx.services()?;
        let (id, user_id) = membership_ids(&project_id, &user_id)?;
        Ok(Project(
            service::transfer_ownership(&services.db, &services.bus, viewer, id, user_id).await?,
        ))
    }
}

/// An invite link to a project (its token is only shown when created).
pub struct Invite(entity::invite::Model);

/// An invite link to a project (its token is only shown when created).
#[Object]
impl Invite {
    /// Stable id (a UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The role people join with.
    async fn role(&self) -> ProjectRole {
        self.0.role.into()
    }
    /// How many people joined with it.
    async fn uses(&self) -> i32 {
        self.0.uses
    }
    /// Who created it.
    async fn created_by(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.0.created_by).await
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it stops working; null for never.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    /// Whether an owner revoked it (it no longer works).
    async fn revoked(&self) -> bool {
        self.0.revoked_at.is_some()
    }
}

/// A new invite and its token: share `token` (for example as a link); it is not shown again.
#[derive(SimpleObject)]
pub struct CreatedInvite {
    /// The secret to share (as `/invite/<token>` links); shown only this once.
    token: String,
    /// The invite it belongs to (to list or revoke it).
    invite: Invite,
}
