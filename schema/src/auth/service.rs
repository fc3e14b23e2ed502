//! The auth operations, independent of GraphQL.

use chrono::{DateTime, Utc};
use entity::prelude::*;
use entity::{refresh_token, user};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TransactionTrait,
};
use uuid::Uuid;

use super::password;
use super::tokens::{hash_refresh_token, new_refresh_token};
use crate::context::AuthUser;
use crate::error::{ApiError, ApiResult, unique_violation};
use crate::state::Services;
use crate::time::now;
use crate::users::preferences::Preferences;
use crate::validation;

/// What a successful sign-in hands the client.
pub struct Session {
    pub access_token: String,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub refresh_token_expires_at: DateTime<Utc>,
    pub user: user::Model,
}

pub struct SignUp {
    pub username: String,
    pub email: String,
    pub password: String,
    pub display_name: Option<String>,
}

const BAD_CREDENTIALS: &str = "invalid username, email or password";

pub async fn sign_up(services: &Services, input: SignUp) -> ApiResult<Session> {
    let username = validation::username("username", &input.username)?;
    let email = validation::email("email", &input.email)?;
    validation::password("password", &input.password)?;
    let display_name = match &input.display_name {
        Some(name) => validation::single_line("displayName", name, validation::DISPLAY_NAME_MAX)?,
        None => username.clone(),
    };
    let db = &services.db;
    if User::find()
        .filter(user::Column::Username.eq(&username))
        .one(db)
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(
            Some("username"),
            "that username is taken",
        ));
    }
    if User::find()
        .filter(user::Column::Email.eq(&email))
        .one(db)
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(
            Some("email"),
            "that email is already registered",
        ));
    }
    let password_hash = password::hash(input.password).await?;

    let at = now();
    let txn = db.begin().await?;
    let inserted = user::ActiveModel {
        id: Set(Uuid::new_v4()),
        username: Set(username),
        email: Set(email),
        display_name: Set(display_name),
        password_hash: Set(password_hash),
        role: Set(user::UserRole::User),
        preferences: Set(Preferences::default().to_json()),
        active: Set(true),
        created_at: Set(at),
        updated_at: Set(at),
        last_login_at: Set(Some(at)),
    }
    .insert(&txn)
    .await;
    let user = match inserted {
        Ok(user) => user,
        Err(err) => {
            return Err(match unique_violation(&err, &["username", "email"]) {
                Some(field) => ApiError::conflict(Some(field), format!("that {field} is taken")),
                None => err.into(),
            });
        }
    };
    let session = start_session(services, &txn, user, Uuid::new_v4()).await?;
    txn.commit().await?;
    Ok(session)
}

/// `login` is a username or an email address.
pub async fn sign_in(services: &Services, login: &str, password: String) -> ApiResult<Session> {
    let login = login.trim().to_lowercase();
    services.sign_ins.check(&login)?;
    let column = if login.contains('@') {
        user::Column::Email
    } else {
        user::Column::Username
    };
    let found = User::find()
        .filter(column.eq(&login))
        .one(&services.db)
        .await?;
    let hash = found.as_ref().map(|u| u.password_hash.clone());
    if !password::verify(password, hash).await? {
        services.sign_ins.failed(&login);
        return Err(ApiError::unauthenticated(BAD_CREDENTIALS));
    }
    services.sign_ins.succeeded(&login);
    let Some(user) = found else {
        return Err(ApiError::unauthenticated(BAD_CREDENTIALS));
    };
    if !user.active {
        return Err(ApiError::forbidden("this account is deactivated"));
    }
    let txn = services.db.begin().await?;
    let mut active: user::ActiveModel = user.into();
    active.last_login_at = Set(Some(now()));
    let user = active.update(&txn).await?;
    let session = start_session(services, &txn, user, Uuid::new_v4()).await?;
    txn.commit().await?;
    Ok(session)
}

/// Trade a refresh token for a new pair. The presented token is spent; presenting a spent
/// token again revokes every token of its family.
pub async fn refresh(services: &Services, presented: &str) -> ApiResult<Session> {
    let db = &services.db;
    let hash = hash_refresh_token(presented);
    let Some(token) = RefreshToken::find()
        .filter(refresh_token::Column::TokenHash.eq(hash))
        .one(db)
        .await?
    else {
        return Err(ApiError::unauthenticated("invalid refresh token"));
    };
    if token.revoked_at.is_some() {
        if token.replaced_by.is_some() {
            revoke_reused_family(db, &token).await?;
            return Err(ApiError::unauthenticated(
                "refresh token was already used; signed out everywhere it was shared",
            ));
        }
        return Err(ApiError::unauthenticated("refresh token was revoked"));
    }
    if token.expires_at <= Utc::now() {
        return Err(ApiError::unauthenticated(
            "refresh token expired; sign in again",
        ));
    }
    let user = User::find_by_id(token.user_id)
        .one(db)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("invalid refresh token"))?;
    if !user.active {
        revoke_family(db, token.family_id).await?;
        return Err(ApiError::forbidden("this account is deactivated"));
    }

    let txn = db.begin().await?;
    let successor = Uuid::new_v4();
    // Spend the token only if nobody spent it in the meantime: two concurrent refreshes with
    // one token are a replay just like a late one.
    let spent = RefreshToken::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now()))
        .col_expr(refresh_token::Column::ReplacedBy, Expr::value(successor))
        .filter(refresh_token::Column::Id.eq(token.id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if spent.rows_affected != 1 {
        txn.rollback().await?;
        revoke_reused_family(db, &token).await?;
        return Err(ApiError::unauthenticated(
            "refresh token was already used; signed out everywhere it was shared",
        ));
    }
    let session = start_session_with_id(services, &txn, user, token.family_id, successor).await?;
    txn.commit().await?;
    Ok(session)
}

/// Revoke the session the refresh token belongs to. Unknown tokens are ignored, so the
/// answer does not tell whether a token was ever valid.
pub async fn sign_out(services: &Services, presented: &str) -> ApiResult<()> {
    let hash = hash_refresh_token(presented);
    if let Some(token) = RefreshToken::find()
        .filter(refresh_token::Column::TokenHash.eq(hash))
        .one(&services.db)
        .await?
    {
        revoke_family(&services.db, token.family_id).await?;
    }
    Ok(())
}

/// Change the password and sign out every other session of the user.
pub async fn change_password(
    services: &Services,
    viewer: &AuthUser,
    current: String,
    new: String,
) -> ApiResult<()> {
    validation::password("newPassword", &new)?;
    let db = &services.db;
    let user = User::find_by_id(viewer.id)
        .one(db)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("sign in first"))?;
    if !password::verify(current, Some(user.password_hash.clone())).await? {
        return Err(ApiError::bad_input(
            "currentPassword",
            "the current password is incorrect",
        ));
    }
    let password_hash = password::hash(new).await?;
    let txn = db.begin().await?;
    let mut active: user::ActiveModel = user.into();
    active.password_hash = Set(password_hash);
    active.updated_at = Set(now());
    active.update(&txn).await?;
    RefreshToken::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now()))
        .filter(refresh_token::Column::UserId.eq(viewer.id))
        .filter(refresh_token::Column::FamilyId.ne(viewer.session_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

async fn start_session(
    services: &Services,
    db: &impl ConnectionTrait,
    user: user::Model,
    family: Uuid,
) -> ApiResult<Session> {
    start_session_with_id(services, db, user, family, Uuid::new_v4()).await
}

async fn start_session_with_id(
    services: &Services,
    db: &impl ConnectionTrait,
    user: user::Model,
    family: Uuid,
    token_id: Uuid,
) -> ApiResult<Session> {
    let (refresh_token, token_hash) = new_refresh_token();
    let created_at = now();
    let expires_at = created_at + services.tokens.refresh_ttl;
    refresh_token::ActiveModel {
        id: Set(token_id),
        user_id: Set(user.id),
        family_id: Set(family),
        token_hash: Set(token_hash),
        created_at: Set(created_at),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
        replaced_by: Set(None),
    }
    .insert(db)
    .await?;
    let access = services.tokens.issue_access(user.id, user.role, family)?;
    Ok(Session {
        access_token: access.token,
        access_token_expires_at: access.expires_at,
        refresh_token,
        refresh_token_expires_at: expires_at,
        user,
    })
}

async fn revoke_reused_family(
    db: &impl ConnectionTrait,
    token: &refresh_token::Model,
) -> ApiResult<()> {
    tracing::warn!(user_id = %token.user_id, family_id = %token.family_id, "refresh token reused; revoking its family");
    revoke_family(db, token.family_id).await
}

async fn revoke_family(db: &impl ConnectionTrait, family: Uuid) -> ApiResult<()> {
    RefreshToken::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now()))
        .filter(refresh_token::Column::FamilyId.eq(family))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}
