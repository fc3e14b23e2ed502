//! `projectEvents`: what happens in a project besides edits, live.

use crate::context::ServicesExt;
use std::sync::Arc;

use async_graphql::{Context, ID, Object, Result, SimpleObject, Subscription, Union};
use futures_util::Stream;
use tokio::sync::broadcast::{self, error::RecvError};
use uuid::Uuid;

use crate::chat::Message;
use crate::context::{AuthUser, ViewerExt};
use crate::loaders::load_user;
use crate::projects::ProjectRole;
use crate::projects::revocation::{lost_access, recheck};
use crate::realtime::{self, ProjectSignal};
use crate::state::Services;
use crate::users::User;
use crate::validation;

/// Something that happened in a project: chat, membership and code runs.
/// Select the fields of each kind with `... on MessagePosted { … }`.
#[derive(Union)]
pub enum ProjectEvent {
    MessagePosted(MessagePosted),
    MemberJoined(MemberJoined),
    MemberRoleChanged(MemberRoleChanged),
    MemberLeft(MemberLeft),
    MemberRemoved(MemberRemoved),
    ProjectDeleted(ProjectDeleted),
    VisibilityChanged(VisibilityChanged),
    RunStarted(RunStarted),
    RunEnded(RunEnded),
}

impl ProjectEvent {
    fn new(project: Uuid, event: &realtime::ProjectEvent) -> Self {
        use realtime::ProjectEvent as E;
        match event {
            E::MessagePosted {
                id,
                author,
                body,
                at,
            } => Self::MessagePosted(MessagePosted {
                message: Message::new(*id, *author, body.clone(), *at),
            }),
            E::MemberJoined { user, role } => Self::MemberJoined(MemberJoined {
                user: *user,
                role: (*role).into(),
            }),
            E::MemberRoleChanged { user, role } => Self::MemberRoleChanged(MemberRoleChanged {
                user: *user,
                role: (*role).into(),
            }),
            E::MemberLeft { user } => Self::MemberLeft(MemberLeft { user: *user }),
            E::MemberRemoved { user } => Self::MemberRemoved(MemberRemoved { user: *user }),
            E::ProjectDeleted => Self::ProjectDeleted(ProjectDeleted { project }),
            E::VisibilityChanged { public } => {
                Self::VisibilityChanged(VisibilityChanged { is_public: *public })
            }
            E::RunStarted { run, by } => Self::RunStarted(RunStarted { run: *run, by: *by }),
            E::RunFinished { run, .. } => Self::RunEnded(RunEnded { run: *run }),
        }
    }
}

/// The project became public or private. Non-members' subscriptions to a project that
/// turned private end after this event.
#[derive(SimpleObject)]
pub struct VisibilityChanged {
    /// Whether the project is public now.
    is_public: bool,
}

/// A run as `run(id)` reads it now (the event only carries its id).
async fn run_as_read_now(ctx: &Context<'_>, id: Uuid) -> Result<crate::runs::Run> {
    let services = ctx.services()?;
    Ok(crate::runs::Run(
        crate::runs::service::get(&services.reads, ctx.viewer(), id).await?,
    ))
}

/// A worker started running code in the project.
pub struct RunStarted {
    run: Uuid,
    by: Uuid,
}

/// A worker started running code in the project.
#[Object]
impl RunStarted {
    /// The run, as `run(id)` reads it now.
    async fn run(&self, ctx: &Context<'_>) -> Result<crate::runs::Run> {
        run_as_read_now(ctx, self.run).await
    }
    /// Who asked for it.
    async fn requested_by(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.by).await
    }
}

/// A run in the project ended.
pub struct RunEnded {
    run: Uuid,
}

/// A run in the project ended.
#[Object]
impl RunEnded {
    /// The run with its result.
    async fn run(&self, ctx: &Context<'_>) -> Result<crate::runs::Run> {
        run_as_read_now(ctx, self.run).await
    }
}

/// A message was posted in the chat.
pub struct MessagePosted {
    message: Message,
}

/// A message was posted in the chat.
#[Object]
impl MessagePosted {
    /// The message, as `messages` lists it.
    async fn message(&self) -> &Message {
        &self.message
    }
}

/// Somebody became a member (joined a public project or was added by an owner).
pub struct MemberJoined {
    user: Uuid,
    role: ProjectRole,
}

/// Somebody became a member (joined a public project or was added by an owner).
#[Object]
impl MemberJoined {
    /// The new member.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.user).await
    }
    /// Their role.
    async fn role(&self) -> ProjectRole {
        self.role
    }
}

/// A member's role changed (also on a transfer of ownership: one event per member).
pub struct MemberRoleChanged {
    user: Uuid,
    role: ProjectRole,
}

/// A member's role changed (also on a transfer of ownership: one event per member).
#[Object]
impl MemberRoleChanged {
    /// The member.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.user).await
    }
    /// Their new role.
    async fn role(&self) -> ProjectRole {
        self.role
    }
}

/// A member left the project on their own.
pub struct MemberLeft {
    user: Uuid,
}

/// A member left the project on their own.
#[Object]
impl MemberLeft {
    /// The former member.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.user).await
    }
}

/// An owner removed a member. The removed member's own subscriptions to the project end.
pub struct MemberRemoved {
    user: Uuid,
}

/// An owner removed a member. The removed member's own subscriptions to the project end.
#[Object]
impl MemberRemoved {
    /// The former member.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.user).await
    }
}

/// The project was deleted; this is the last event of every subscription to it.
pub struct ProjectDeleted {
    project: Uuid,
}

/// The project was deleted; this is the last event of every subscription to it.
#[Object]
impl ProjectDeleted {
    /// The id the project had.
    async fn project_id(&self) -> ID {
        ID(self.project.to_string())
    }
}

#[derive(Default)]
pub struct EventsSubscription;

#[Subscription]
impl EventsSubscription {
    /// A project's events as they happen: chat messages and membership changes. Needs read
    /// access. When the viewer loses it (removed by an owner, the project deleted, or left a
    /// private project) the event that caused it comes first, then a FORBIDDEN error, and
    /// the subscription ends. Events are not replayed: read `messages` and `members` for what
    /// happened before.
    async fn project_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
    ) -> Result<impl Stream<Item = Result<ProjectEvent>> + use<>> {
        let project = validation::id("projectId", &project_id)?;
        let services = ctx.services()?.clone();
        let viewer = ctx.viewer().user()?.cloned();
        let signals =
            super::service::follow(&services.db, &services.bus, viewer.as_ref(), project).await?;
        Ok(crate::context::budgeted(
            ctx,
            event_stream(services, project, viewer, signals),
        )?)
    }
}

/// Whether the viewer can still read the project; the error that ends the stream if not.
/// One receiver serves both the events and the end of access, so the event that takes the
/// access away (MemberRemoved, ProjectDeleted) is always delivered before the stream ends.
fn event_stream(
    services: Services,
    project: Uuid,
    viewer: Option<AuthUser>,
    mut signals: broadcast::Receiver<Arc<ProjectSignal>>,
) -> impl Stream<Item = Result<ProjectEvent>> {
    let user = viewer.as_ref().map(|v| v.id);
    async_stream::stream! {
        loop {
            match signals.recv().await {
                Ok(signal) => {
                    let ProjectSignal::Event(event) = signal.as_ref() else {
                        continue;
                    };
                    yield Ok(ProjectEvent::new(project, event));
                    if event.revokes(user) {
                        yield Err(lost_access().into());
                        break;
                    }
                    // Leaving a private project, or the project turning private, may take the
                    // access away.
                    if event.may_revoke(user)
                        && let Some(error) = recheck(&services.db, project, viewer.as_ref()).await
                    {
                        yield Err(error.into());
                        break;
                    }
                }
                Err(RecvError::Lagged(skipped)) => {
                    // The events in between are gone (they are not stored); whatever they
                    // were, make sure none of them took the viewer's access away.
                    tracing::warn!(%project, skipped, "a projectEvents subscriber lagged");
                    if let Some(error) = recheck(&services.db, project, viewer.as_ref()).await {
                        yield Err(error.into());
                        break;
                    }
                }
                Err(RecvError::Closed) => break,
            }
        }
    }
}
