//! Reading and updating profiles.

use entity::prelude::*;
use entity::user;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};

use super::preferences::{Preferences, PreferencesInput};
use crate::context::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::time::now;
use crate::validation;

pub async fn me(db: &DatabaseConnection, viewer: &AuthUser) -> ApiResult<user::Model> {
    User::find_by_id(viewer.id)
        .one(db)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("this account no longer exists"))
}

pub async fn by_username(db: &DatabaseConnection, username: &str) -> ApiResult<user::Model> {
    User::find()
        .filter(user::Column::Username.eq(username.trim().to_lowercase()))
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("user"))
}

pub struct ProfileUpdate {
    pub display_name: Option<String>,
    pub preferences: Option<PreferencesInput>,
}

pub async fn update_me(
    db: &DatabaseConnection,
    viewer: &AuthUser,
    update: ProfileUpdate,
) -> ApiResult<user::Model> {
    let display_name = update
        .display_name
        .map(|name| validation::single_line("displayName", &name, validation::DISPLAY_NAME_MAX))
        .transpose()?;
    let user = me(db, viewer).await?;
    let preferences = match update.preferences {
        Some(input) => Some(Preferences::from_json(&user.preferences).apply(input)?),
        None => None,
    };
    let mut active: user::ActiveModel = user.into();
    if let Some(name) = display_name {
        active.display_name = Set(name);
    }
    if let Some(preferences) = preferences {
        active.preferences = Set(preferences.to_json());
    }
    active.updated_at = Set(now());
    Ok(active.update(db).await?)
}
