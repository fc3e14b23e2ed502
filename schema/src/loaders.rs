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

/// Users by id, through a short-lived cache shared by the whole node: a live update fanned
/// out to a hundred subscribers that select its `author` costs one lookup, not a hundred.
pub struct UserLoader(pub DatabaseConnection, pub UserCache);

/// Profiles read in the last few seconds.
#[derive(Clone, Default)]
pub struct UserCache(Arc<std::sync::Mutex<HashMap<Uuid, (std::time::Instant, user::Model)>>>);

/// How long a cached profile is used (a renamed user shows the new name after this).
const USER_TTL: std::time::Duration = std::time::Duration::from_secs(10);
const USER_CACHE_MAX: usize = 10_000;

impl UserCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (std::time::Instant, user::Model)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Loader<Uuid> for UserLoader {
    type Value = user::Model;
    type Error = Arc<sea_orm::DbErr>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = self.1.lock();
            for key in keys {
                match cache.get(key) {
                    Some((at, user)) if at.elapsed() < USER_TTL => {
                        found.insert(*key, user.clone());
                    }
                    _ => missing.push(*key),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let users = User::find()
            .filter(user::Column::Id.is_in(missing))
            .all(&self.0)
            .await?;
        let mut cache = self.1.lock();
        if cache.len() >= USER_CACHE_MAX {
            cache.retain(|_, (at, _)| at.elapsed() < USER_TTL);
        }
        let now = std::time::Instant::now();
        for user in users {
            cache.insert(user.id, (now, user.clone()));
            found.insert(user.id, user);
        }
        Ok(found)
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
