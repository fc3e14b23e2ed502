//! DataLoaders: batch the lookups that lists would otherwise repeat per row.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Result};
use entity::prelude::*;
use entity::user;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::error::ApiError;
use crate::users::User as UserProfile;

/// Users by id.
pub struct UserLoader(pub DatabaseConnection);

impl Loader<Uuid> for UserLoader {
    type Value = user::Model;
    type Error = Arc<sea_orm::DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let users = User::find()
            .filter(user::Column::Id.is_in(keys.iter().copied()))
            .all(&self.0)
            .await?;
        Ok(users.into_iter().map(|u| (u.id, u)).collect())
    }
}

/// The public profile of user `id`, batched with the other lookups of the request.
pub async fn load_user(ctx: &Context<'_>, id: Uuid) -> Result<UserProfile> {
    let loader = ctx.data::<DataLoader<UserLoader>>()?;
    let user = loader
        .load_one(id)
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("loading user {id}: {e}")))?
        .ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("user {id} is referenced but missing"))
        })?;
    Ok(UserProfile(user))
}

/// Like [`load_user`], for references that may be empty (a deleted author, the server).
pub async fn load_user_opt(ctx: &Context<'_>, id: Option<Uuid>) -> Result<Option<UserProfile>> {
    match id {
        Some(id) => load_user(ctx, id).await.map(Some),
        None => Ok(None),
    }
}
