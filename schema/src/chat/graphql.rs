//! GraphQL types and resolvers of the chat.

use crate::context::ServicesExt;
use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, ID, Object, Result};
use chrono::{DateTime, Utc};
use entity::message;
use uuid::Uuid;

use super::service;
use crate::context::ViewerExt;
use crate::loaders::load_user;
use crate::users::User;
use crate::validation;

/// A message in a project's chat.
pub struct Message {
    id: Uuid,
    author: Uuid,
    text: String,
    created_at: DateTime<Utc>,
}

impl Message {
    pub fn new(id: Uuid, author: Uuid, text: String, created_at: DateTime<Utc>) -> Self {
        Self {
            id,
            author,
            text,
            created_at,
        }
    }
}

impl From<message::Model> for Message {
    fn from(m: message::Model) -> Self {
        Self::new(m.id, m.author_id, m.body, m.created_at)
    }
}

/// A message in a project's chat.
#[Object]
impl Message {
    /// Stable id (a UUID).
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    /// 1–4,000 characters, trimmed; may span several lines.
    async fn text(&self) -> &str {
        &self.text
    }
    /// Who posted it.
    async fn author(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.author).await
    }
    /// When it was posted.
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
}

pub type MessageConnection = Connection<String, Message, EmptyFields, EmptyFields>;

fn project_id_arg(raw: &ID) -> Result<Uuid> {
    Ok(validation::id("projectId", raw)?)
}

#[derive(Default)]
pub struct ChatQuery;

#[Object]
impl ChatQuery {
    /// A project's chat, newest message first. Readable by whoever can read the project.
    /// For older messages, pass the page's `pageInfo.endCursor` as `before`;
    /// `pageInfo.hasNextPage` tells whether there are any.
    async fn messages(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(default = 20, desc = "Page size, 1 to 100.")] first: i32,
        #[graphql(desc = "Only messages older than the one at this cursor (an `endCursor`).")]
        before: Option<String>,
    ) -> Result<MessageConnection> {
        let project = project_id_arg(&project_id)?;
        let page = service::list(
            &ctx.services()?.reads,
            ctx.viewer(),
            project,
            first,
            before.as_deref(),
        )
        .await?;
        let mut connection = Connection::new(page.has_previous_page, page.has_next_page);
        connection.edges.extend(
            page.messages
                .into_iter()
                .map(|(cursor, message)| Edge::new(cursor, Message::from(message))),
        );
        Ok(connection)
    }
}

#[derive(Default)]
pub struct ChatMutation;

#[Object]
impl ChatMutation {
    /// Post in a project's chat. Members of any role may; the text is trimmed and must hold
    /// 1–4,000 characters. Everyone following `projectEvents` receives it.
    async fn send_message(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The message, 1–4,000 characters after trimming.")] text: String,
    ) -> Result<Message> {
        let viewer = ctx.viewer().require()?;
        let project = project_id_arg(&project_id)?;
        let services = ctx.services()?;
        let message = service::send(&services.db, &services.bus, viewer, project, &text).await?;
        Ok(message.into())
    }
}
