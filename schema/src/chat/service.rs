//! Chat rules, independent of GraphQL: who may post, what a message may hold, and pages of
//! history.

use entity::message;
use entity::prelude::*;
use entity::project;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set,
    TransactionTrait,
};
use uuid::Uuid;

use crate::context::{AuthUser, Viewer};
use crate::error::{ApiError, ApiResult};
use crate::paging::{self, Page};
use crate::projects::access::{self, ProjectAction};
use crate::realtime::{Bus, ProjectEvent};
use crate::time::now;
use crate::validation;

/// The longest message, in characters (after trimming).
pub const MESSAGE_MAX: usize = 4_000;
/// The largest page of `messages`.
pub const PAGE_MAX: i32 = 100;

/// One page of a project's chat, newest first.
pub struct MessagePage {
    /// Each message with its cursor.
    pub messages: Vec<(String, message::Model)>,
    /// Older messages exist beyond this page.
    pub has_next_page: bool,
    /// The page was asked for with a cursor, so newer messages exist before it.
    pub has_previous_page: bool,
}

/// A message's text, trimmed: 1–[`MESSAGE_MAX`] characters, line breaks and tabs allowed but
/// no other control characters.
pub fn check_text(field: &'static str, raw: &str) -> ApiResult<String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(ApiError::bad_input(field, "a message must not be empty"));
    }
    if text.chars().count() > MESSAGE_MAX {
        return Err(ApiError::bad_input(
            field,
            format!("a message holds at most {MESSAGE_MAX} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ApiError::bad_input(
            field,
            "a message must not contain control characters other than line breaks and tabs",
        ));
    }
    Ok(text.to_owned())
}

/// Post `text` in `project`'s chat. Any member may, whatever their role. The message is
/// stored (and the project's activity time moved) before everyone following the project
/// hears of it (on `bus`).
pub async fn send(
    db: &DatabaseConnection,
    bus: &Bus,
    viewer: &AuthUser,
    project_id: Uuid,
    text: &str,
) -> ApiResult<message::Model> {
    let body = check_text("text", text)?;
    let txn = db.begin().await?;
    access::load_member(&txn, viewer, project_id, "post in its chat").await?;
    let at = now();
    let inserted = message::ActiveModel {
        id: Set(Uuid::new_v4()),
        project_id: Set(project_id),
        author_id: Set(viewer.id),
        body: Set(body),
        created_at: Set(at),
    }
    .insert(&txn)
    .await;
    let message = match inserted {
        Ok(message) => message,
        // The project was deleted between the check and the insert.
        Err(error)
            if matches!(
                error.sql_err(),
                Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_))
            ) =>
        {
            return Err(ApiError::NotFound("project"));
        }
        Err(error) => return Err(error.into()),
    };
    Project::update_many()
        .col_expr(project::Column::LastActivityAt, Expr::value(at))
        .filter(project::Column::Id.eq(project_id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    bus.announce(
        project_id,
        ProjectEvent::MessagePosted {
            id: message.id,
            author: message.author_id,
            body: message.body.clone(),
            at: message.created_at,
        },
    );
    Ok(message)
}

/// Up to `first` messages of `project`, newest first, older than the message at `before`
/// when given. Whoever can read the project can read its chat.
pub async fn list(
    db: &DatabaseConnection,
    viewer: &Viewer,
    project_id: Uuid,
    first: i32,
    before: Option<&str>,
) -> ApiResult<MessagePage> {
    let viewer = viewer.user()?;
    let first = validation::in_range("first", first, 1..=PAGE_MAX)?;
    let before = before.map(|c| paging::decode("before", c)).transpose()?;
    access::check(db, viewer, project_id, ProjectAction::Read).await?;
    let Page {
        rows: messages,
        has_next_page,
        has_previous_page,
    } = paging::newest_first(
        db,
        Message::find().filter(message::Column::ProjectId.eq(project_id)),
        message::Column::CreatedAt,
        message::Column::Id,
        before,
        usize::try_from(first).unwrap_or(0),
        |m| (m.created_at, m.id),
    )
    .await?;
    Ok(MessagePage {
        messages,
        has_next_page,
        has_previous_page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        assert_eq!(check_text("text", "  hi\n").ok().as_deref(), Some("hi"));
        assert!(check_text("text", " \n\t ").is_err());
        assert!(check_text("text", &"é".repeat(MESSAGE_MAX)).is_ok());
        assert!(check_text("text", &"a".repeat(MESSAGE_MAX + 1)).is_err());
        assert!(check_text("text", "line\nline\tcol").is_ok());
        assert!(check_text("text", "bell\u{7}").is_err());
    }
}
