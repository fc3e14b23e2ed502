//! Invite links: an OWNER hands out a token; whoever signs in and presents it joins the
//! project with the invite's role (EDITOR or VIEWER). Tokens are random, stored hashed,
//! optionally expiring, revocable.

use chrono::Duration as ChronoDuration;
use entity::invite;
use entity::prelude::*;
use entity::project_member::ProjectRole;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};
use uuid::Uuid;

use super::access::{self, ProjectAccess, ProjectAction};
use super::service::insert_member;
use crate::auth::tokens::{hash_refresh_token, new_refresh_token};
use crate::context::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::realtime::{Bus, ProjectEvent};
use crate::time::now;

/// The longest an invite may stay valid, in hours (30 days).
pub const MAX_HOURS: i32 = 720;

/// Invites are managed by the project's owners.
async fn manage(
    db: &DatabaseConnection,
    viewer: &AuthUser,
    project: Uuid,
) -> ApiResult<ProjectAccess> {
    access::check(db, Some(viewer), project, ProjectAction::ManageMembers).await
}

/// Create an invite. OWNER only; the role is EDITOR or VIEWER. Returns the token (shown
/// this once) and the invite.
pub async fn create(
    db: &DatabaseConnection,
    viewer: &AuthUser,
    project: Uuid,
    role: ProjectRole,
    expires_in_hours: Option<i32>,
) -> ApiResult<(String, invite::Model)> {
    if role == ProjectRole::Owner {
        return Err(ApiError::bad_input(
            "role",
            "invites give EDITOR or VIEWER; make an owner with setMemberRole",
        ));
    }
    let expires_at = match expires_in_hours {
        Some(hours) if !(1..=MAX_HOURS).contains(&hours) => {
            return Err(ApiError::bad_input(
                "expiresInHours",
                format!("expiresInHours must be between 1 and {MAX_HOURS}"),
            ));
        }
        Some(hours) => Some(now() + ChronoDuration::hours(i64::from(hours))),
        None => None,
    };
    manage(db, viewer, project).await?;
    let (token, hash) = new_refresh_token();
    let invite = invite::ActiveModel {
        id: Set(Uuid::new_v4()),
        project_id: Set(project),
        token_hash: Set(hash),
        role: Set(role),
        created_by: Set(viewer.id),
        uses: Set(0),
        created_at: Set(now()),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok((token, invite))
}

/// A project's invites that still work, newest first. OWNER only.
pub async fn list(
    db: &DatabaseConnection,
    viewer: &AuthUser,
    project: Uuid,
) -> ApiResult<Vec<invite::Model>> {
    manage(db, viewer, project).await?;
    let at = now();
    Ok(Invite::find()
        .filter(invite::Column::ProjectId.eq(project))
        .filter(invite::Column::RevokedAt.is_null())
        .filter(
            sea_orm::Condition::any()
                .add(invite::Column::ExpiresAt.is_null())
                .add(invite::Column::ExpiresAt.gt(at)),
        )
        .order_by_desc(invite::Column::CreatedAt)
        .all(db)
        .await?)
}

/// Revoke an invite. OWNER of its project only. Revoking twice changes nothing.
pub async fn revoke(
    db: &DatabaseConnection,
    viewer: &AuthUser,
    id: Uuid,
) -> ApiResult<invite::Model> {
    let invite = Invite::find_by_id(id)
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("invite"))?;
    access::check(
        db,
        Some(viewer),
        invite.project_id,
        ProjectAction::ManageMembers,
    )
    .await
    .map_err(|error| match error {
        ApiError::NotFound(_) => ApiError::NotFound("invite"),
        other => other,
    })?;
    if invite.revoked_at.is_some() {
        return Ok(invite);
    }
    let mut active: invite::ActiveModel = invite.into();
    active.revoked_at = Set(Some(now()));
    Ok(active.update(db).await?)
}

/// Join the invite's project with its role. A token that is unknown, revoked or expired is
/// NOT_FOUND (alike, so tokens cannot be probed). A member already keeps their role.
pub async fn accept(
    db: &DatabaseConnection,
    bus: &Bus,
    viewer: &AuthUser,
    token: &str,
) -> ApiResult<ProjectAccess> {
    let hash = hash_refresh_token(token.trim());
    let txn = db.begin().await?;
    let invite = Invite::find()
        .filter(invite::Column::TokenHash.eq(hash))
        .one(&txn)
        .await?
        .filter(|i| i.revoked_at.is_none() && i.expires_at.is_none_or(|at| at > now()))
        .ok_or(ApiError::NotFound("invite"))?;
    let project = Project::find_by_id(invite.project_id)
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound("invite"))?;
    if let Some(member) = ProjectMember::find_by_id((project.id, viewer.id))
        .one(&txn)
        .await?
    {
        return Ok(ProjectAccess {
            project,
            role: Some(member.role),
        });
    }
    insert_member(&txn, project.id, viewer.id, invite.role).await?;
    Invite::update_many()
        .col_expr(invite::Column::Uses, Expr::col(invite::Column::Uses).add(1))
        .filter(invite::Column::Id.eq(invite.id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    bus.announce(
        project.id,
        ProjectEvent::MemberJoined {
            user: viewer.id,
            role: invite.role,
        },
    );
    Ok(ProjectAccess {
        project,
        role: Some(invite.role),
    })
}
