//! GraphQL types and resolvers of users.

use crate::context::ServicesExt;
use async_graphql::{Context, Enum, ID, InputObject, Object, Result};
use chrono::{DateTime, Utc};
use entity::user;

use super::preferences::{Preferences, PreferencesInput};
use super::service::{self, ProfileUpdate};
use crate::context::ViewerExt;

/// A user's public profile.
pub struct User(pub user::Model);

/// A user's public profile.
#[Object]
impl User {
    /// Stable id (a UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Unique, 3–32 characters of `[a-z0-9_-]`.
    async fn username(&self) -> &str {
        &self.0.username
    }
    /// The name shown to other people.
    async fn display_name(&self) -> &str {
        &self.0.display_name
    }
    /// When the account was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// The signed-in user's own account, with the private fields.
pub struct Account(pub user::Model);

/// The signed-in user's own account, with the private fields.
#[Object]
impl Account {
    /// Stable id (a UUID); the same as the public profile's.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Unique, 3–32 characters of `[a-z0-9_-]`.
    async fn username(&self) -> &str {
        &self.0.username
    }
    /// Lower-cased; unique across accounts.
    async fn email(&self) -> &str {
        &self.0.email
    }
    /// The name shown to other people.
    async fn display_name(&self) -> &str {
        &self.0.display_name
    }
    /// USER, or ADMIN for operators.
    async fn role(&self) -> UserRole {
        self.0.role.into()
    }
    /// Editor look and behaviour, applied on every device.
    async fn preferences(&self) -> Preferences {
        Preferences::from_json(&self.0.preferences)
    }
    /// When the account was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When the user last signed in with a password.
    async fn last_login_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_login_at
    }
}

/// What a user may do across the whole service.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "entity::user::UserRole")]
pub enum UserRole {
    /// An ordinary account.
    User,
    /// Reads every project, public or not.
    Admin,
}

/// Changes to the signed-in user's profile; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateMeInput {
    /// 1–64 characters.
    pub display_name: Option<String>,
    /// Only the preferences given change.
    pub preferences: Option<PreferencesInput>,
}

/// Queries about users.
#[derive(Default)]
pub struct UsersQuery;

#[Object]
impl UsersQuery {
    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> Result<Account> {
        let viewer = ctx.viewer().require()?;
        Ok(Account(service::me(&ctx.services()?.reads, viewer).await?))
    }

    /// Anyone's public profile, by username.
    async fn user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The username to look up.")] username: String,
    ) -> Result<User> {
        ctx.viewer().user()?;
        Ok(User(
            service::by_username(&ctx.services()?.reads, &username).await?,
        ))
    }
}

#[derive(Default)]
pub struct UsersMutation;

#[Object]
impl UsersMutation {
    /// Change the signed-in user's display name or preferences.
    async fn update_me(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The fields to change; absent ones stay as they are.")]
        input: UpdateMeInput,
    ) -> Result<Account> {
        let viewer = ctx.viewer().require()?;
        let update = ProfileUpdate {
            display_name: input.display_name,
            preferences: input.preferences,
        };
        Ok(Account(
            service::update_me(&ctx.services()?.db, viewer, update).await?,
        ))
    }
}
