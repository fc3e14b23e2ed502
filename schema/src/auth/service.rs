//! The auth operations, independent of GraphQL.

use chrono::{DateTime, Utc};
use entity::prelude::*;
use entity::{refresh_token, user};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QuerySelect, Set, TransactionTrait,
};
use uuid::Uuid;

use super::password;
use super::tokens::{hash_refresh_token, new_refresh_token};
use crate::auth::limiter::SignInLimiter;
use crate::auth::revocations::RevokedSessions;
use crate::auth::tokens::TokenIssuer;
use crate::context::AuthUser;
use crate::error::{ApiError, ApiResult, unique_violation};
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

/// What the auth operations work with (`Services::auth`): the database, the token issuer,
/// the sign-in slowdown and the revoked sessions.
#[derive(Clone, Copy)]
pub struct Auth<'a> {
    pub db: &'a DatabaseConnection,
    pub tokens: &'a TokenIssuer,
    pub sign_ins: &'a SignInLimiter,
    pub revoked_sessions: &'a RevokedSessions,
}

const BAD_CREDENTIALS: &str = "invalid username, email or password";

pub async fn sign_up(auth: Auth<'_>, input: SignUp) -> ApiResult<Session> {
    let username = validation::username("username", &input.username)?;
    let email = validation::email("email", &input.email)?;
    validation::password("password", &input.password)?;
    let display_name = match &input.display_name {
        Some(name) => validation::single_line("displayName", name, validation::DISPLAY_NAME_MAX)?,
        None => username.clone(),
    };
    let db = auth.db;
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
    let session = start_session(auth, &txn, user, Uuid::new_v4()).await?;
    txn.commit().await?;
    Ok(session)
}

/// `login` is a username or an email address.
pub async fn sign_in(
    auth: Auth<'_>,
    login: &str,
    password: String,
    ip: Option<std::net::IpAddr>,
) -> ApiResult<Session> {
    let login = login.trim().to_lowercase();
    auth.sign_ins.check(&login, ip).await?;
    let column = if login.contains('@') {
        user::Column::Email
    } else {
        user::Column::Username
    };
    let found = User::find().filter(column.eq(&login)).one(auth.db).await?;
    let hash = found.as_ref().map(|u| u.password_hash.clone());
    if !password::verify(password, hash).await? {
        auth.sign_ins.failed(&login, ip).await;
        return Err(ApiError::unauthenticated(BAD_CREDENTIALS));
    }
    auth.sign_ins.succeeded(&login, ip).await;
    let Some(user) = found else {
        return Err(ApiError::unauthenticated(BAD_CREDENTIALS));
    };
    if !user.active {
        return Err(ApiError::forbidden("this account is deactivated"));
    }
    let txn = auth.db.begin().await?;
    let mut active: user::ActiveModel = user.into();
    active.last_login_at = Set(Some(now()));
    let user = active.update(&txn).await?;
    let session = start_session(auth, &txn, user, Uuid::new_v4()).await?;
    txn.commit().await?;
    Ok(session)
}

/// Trade a refresh token for a new pair. The presented token is spent; presenting it again
/// within the grace window (another tab refreshing at the same moment) gets the same pair,
/// later it counts as reuse and revokes every token of its family.
pub async fn refresh(auth: Auth<'_>, presented: &str) -> ApiResult<Session> {
    let db = auth.db;
    let hash = hash_refresh_token(presented);
    let Some(token) = RefreshToken::find()
        .filter(refresh_token::Column::TokenHash.eq(hash))
        .one(db)
        .await?
    else {
        return Err(ApiError::unauthenticated("invalid refresh token"));
    };
    if token.revoked_at.is_some() {
        return replayed(auth, presented, &token).await;
    }
    if token.expires_at <= Utc::now() {
        return Err(ApiError::unauthenticated(
            "refresh token expired; sign in again",
        ));
    }
    let user = active_owner(auth, &token).await?;

    let txn = db.begin().await?;
    let successor = Uuid::new_v4();
    // Spend the token only if nobody spent it in the meantime; whoever lost the race is a
    // second presentation like any other (a second tab, or a replay).
    let spent = RefreshToken::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now()))
        .col_expr(refresh_token::Column::ReplacedBy, Expr::value(successor))
        .filter(refresh_token::Column::Id.eq(token.id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if spent.rows_affected != 1 {
        txn.rollback().await?;
        let token = RefreshToken::find_by_id(token.id)
            .one(db)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("invalid refresh token"))?;
        return replayed(auth, presented, &token).await;
    }
    let (refresh_token, token_hash) = auth.tokens.successor_refresh_token(presented);
    let session = insert_session(
        auth,
        &txn,
        user,
        NewToken {
            id: successor,
            family: token.family_id,
            refresh_token,
            token_hash,
        },
    )
    .await?;
    txn.commit().await?;
    Ok(session)
}

/// A spent or revoked token presented again: the same pair as its first presentation when
/// within the grace window and the pair is still live, otherwise reuse (or plain revocation).
async fn replayed(
    auth: Auth<'_>,
    presented: &str,
    token: &refresh_token::Model,
) -> ApiResult<Session> {
    let (Some(successor_id), Some(rotated_at)) = (token.replaced_by, token.revoked_at) else {
        return Err(ApiError::unauthenticated("refresh token was revoked"));
    };
    let grace =
        chrono::Duration::from_std(auth.tokens.refresh_reuse_grace).map_err(ApiError::internal)?;
    if !grace.is_zero() && now() - rotated_at <= grace {
        let successor = RefreshToken::find_by_id(successor_id).one(auth.db).await?;
        let (refresh_token, token_hash) = auth.tokens.successor_refresh_token(presented);
        match successor {
            Some(successor)
                if successor.revoked_at.is_none() && successor.token_hash == token_hash =>
            {
                let user = active_owner(auth, &successor).await?;
                let access = auth.tokens.issue_access(
                    user.id,
                    user.role,
                    successor.family_id,
                    successor.created_at,
                )?;
                return Ok(Session {
                    access_token: access.token,
                    access_token_expires_at: access.expires_at,
                    refresh_token,
                    refresh_token_expires_at: successor.expires_at,
                    user,
                });
            }
            // The whole session was signed out in the meantime: not a theft.
            Some(successor)
                if successor.revoked_at.is_some() && successor.replaced_by.is_none() =>
            {
                return Err(ApiError::unauthenticated("refresh token was revoked"));
            }
            _ => {}
        }
    }
    tracing::warn!(user_id = %token.user_id, family_id = %token.family_id, "refresh token reused; revoking its family");
    revoke_family(auth, token.family_id).await?;
    Err(ApiError::unauthenticated(
        "refresh token was already used; signed out everywhere it was shared",
    ))
}

/// The token's user, who must still be allowed in (a deactivated account's session ends).
async fn active_owner(auth: Auth<'_>, token: &refresh_token::Model) -> ApiResult<user::Model> {
    let user = User::find_by_id(token.user_id)
        .one(auth.db)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("invalid refresh token"))?;
    if !user.active {
        revoke_family(auth, token.family_id).await?;
        return Err(ApiError::forbidden("this account is deactivated"));
    }
    Ok(user)
}

/// Revoke the session the refresh token belongs to, its access tokens included. Unknown
/// tokens are ignored, so the answer does not tell whether a token was ever valid.
pub async fn sign_out(auth: Auth<'_>, presented: &str) -> ApiResult<()> {
    let hash = hash_refresh_token(presented);
    if let Some(token) = RefreshToken::find()
        .filter(refresh_token::Column::TokenHash.eq(hash))
        .one(auth.db)
        .await?
    {
        revoke_family(auth, token.family_id).await?;
    }
    Ok(())
}

/// Change the password and sign out every other session of the user.
pub async fn change_password(
    auth: Auth<'_>,
    viewer: &AuthUser,
    current: String,
    new: String,
) -> ApiResult<()> {
    validation::password("newPassword", &new)?;
    let db = auth.db;
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
    // The sessions still alive (a family whose tokens all expired has no live access token).
    let others: Vec<Uuid> = RefreshToken::find()
        .select_only()
        .column(refresh_token::Column::FamilyId)
        .distinct()
        .filter(refresh_token::Column::UserId.eq(viewer.id))
        .filter(refresh_token::Column::FamilyId.ne(viewer.session_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .filter(refresh_token::Column::ExpiresAt.gt(now()))
        .into_tuple()
        .all(&txn)
        .await?;
    RefreshToken::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now()))
        .filter(refresh_token::Column::UserId.eq(viewer.id))
        .filter(refresh_token::Column::FamilyId.ne(viewer.session_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    txn.commit().await?;
    auth.revoked_sessions.revoke(&others).await;
    Ok(())
}

/// A refresh token about to be stored.
struct NewToken {
    id: Uuid,
    family: Uuid,
    refresh_token: String,
    token_hash: String,
}

/// A new session (family) with a random first refresh token.
async fn start_session(
    auth: Auth<'_>,
    db: &impl ConnectionTrait,
    user: user::Model,
    family: Uuid,
) -> ApiResult<Session> {
    let (refresh_token, token_hash) = new_refresh_token();
    let token = NewToken {
        id: Uuid::new_v4(),
        family,
        refresh_token,
        token_hash,
    };
    insert_session(auth, db, user, token).await
}

/// Store `token` and sign the access token that goes with it. The access token's issue time
/// is the row's `created_at`, so the pair can be issued again identically (see [`replayed`]).
async fn insert_session(
    auth: Auth<'_>,
    db: &impl ConnectionTrait,
    user: user::Model,
    token: NewToken,
) -> ApiResult<Session> {
    let created_at = now();
    let expires_at = created_at + auth.tokens.refresh_ttl;
    refresh_token::ActiveModel {
        id: Set(token.id),
        user_id: Set(user.id),
        family_id: Set(token.family),
        token_hash: Set(token.token_hash),
        created_at: Set(created_at),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
        replaced_by: Set(None),
    }
    .insert(db)
    .await?;
    let access = auth
        .tokens
        .issue_access(user.id, user.role, token.family, created_at)?;
    Ok(Session {
        access_token: access.token,
        access_token_expires_at: access.expires_at,
        refresh_token: token.refresh_token,
        refresh_token_expires_at: expires_at,
        user,
    })
}

/// End a session: its refresh tokens in the database, its access tokens on every node.
async fn revoke_family(auth: Auth<'_>, family: Uuid) -> ApiResult<()> {
    RefreshToken::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now()))
        .filter(refresh_token::Column::FamilyId.eq(family))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(auth.db)
        .await?;
    auth.revoked_sessions.revoke(&[family]).await;
    Ok(())
}
