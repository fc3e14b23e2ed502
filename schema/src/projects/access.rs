//! Who may do what to a project: the one place project roles are checked.

use entity::prelude::*;
use entity::project;
use entity::project_member::{self, ProjectRole};
use sea_orm::sea_query::{Expr, ExprTrait, IntoCondition};
use sea_orm::{ConnectionTrait, EntityTrait, JoinType, QuerySelect, RelationTrait};
use uuid::Uuid;

use crate::context::AuthUser;
use crate::error::{ApiError, ApiResult};

/// Operations on a project that need a permission check.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProjectAction {
    /// See the project, its members, files, versions, chat and presence.
    Read,
    /// Change the files, save and restore versions. (Chat and presence are open to members
    /// of any role: see [`load_member`].)
    Edit,
    /// Change title, description, language, visibility.
    Update,
    Delete,
    /// Add members, change their roles, remove them.
    ManageMembers,
    TransferOwnership,
}

impl ProjectAction {
    fn least_role(self) -> ProjectRole {
        match self {
            Self::Read => ProjectRole::Viewer,
            Self::Edit => ProjectRole::Editor,
            Self::Update | Self::Delete | Self::ManageMembers | Self::TransferOwnership => {
                ProjectRole::Owner
            }
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Read => "read this project",
            Self::Edit => "edit this project",
            Self::Update => "change this project's settings",
            Self::Delete => "delete this project",
            Self::ManageMembers => "manage this project's members",
            Self::TransferOwnership => "transfer this project's ownership",
        }
    }
}

fn rank(role: ProjectRole) -> u8 {
    match role {
        ProjectRole::Viewer => 1,
        ProjectRole::Editor => 2,
        ProjectRole::Owner => 3,
    }
}

/// Whether `viewer`, holding `role` in `project`, may perform `action`.
///
/// A project the viewer may not read is reported as NOT_FOUND, so private projects do not
/// reveal that they exist. Public projects are readable by anyone, admins read everything.
pub fn authorize(
    viewer: Option<&AuthUser>,
    project: &project::Model,
    role: Option<ProjectRole>,
    action: ProjectAction,
) -> ApiResult<()> {
    let admin = viewer.is_some_and(AuthUser::is_admin);
    if !(project.is_public || role.is_some() || admin) {
        return Err(ApiError::NotFound("project"));
    }
    if action == ProjectAction::Read {
        return Ok(());
    }
    if viewer.is_none() {
        return Err(ApiError::unauthenticated("sign in first"));
    }
    match role {
        Some(role) if rank(role) >= rank(action.least_role()) => Ok(()),
        _ => Err(ApiError::forbidden(format!(
            "only a project {} may {}",
            match action.least_role() {
                ProjectRole::Owner => "owner",
                ProjectRole::Editor => "editor or owner",
                ProjectRole::Viewer => "member",
            },
            action.describe()
        ))),
    }
}

/// A project together with the viewer's role in it, after a successful check.
#[derive(Clone, Debug)]
pub struct ProjectAccess {
    pub project: project::Model,
    pub role: Option<ProjectRole>,
}

/// Load a project and check `action` for `viewer` (no lock: for reads and single writes).
pub async fn check(
    db: &impl ConnectionTrait,
    viewer: Option<&AuthUser>,
    project_id: Uuid,
    action: ProjectAction,
) -> ApiResult<ProjectAccess> {
    load(db, viewer, project_id, action, false).await
}

/// Load a project and check `action` for `viewer`.
///
/// Inside a transaction that will change membership, pass `lock = true`: on PostgreSQL the
/// project row is locked so concurrent membership changes (two last owners leaving at once)
/// serialise; SQLite serialises writers by itself.
pub async fn load(
    db: &impl ConnectionTrait,
    viewer: Option<&AuthUser>,
    project_id: Uuid,
    action: ProjectAction,
    lock: bool,
) -> ApiResult<ProjectAccess> {
    let (project, role) = match viewer {
        // One statement: the project and the viewer's membership beside it. (PostgreSQL
        // cannot lock the nullable side of an outer join: a locking read takes two.)
        Some(viewer) if !lock => {
            let viewer_id = viewer.id;
            let membership =
                project::Relation::ProjectMember
                    .def()
                    .on_condition(move |_project, member| {
                        Expr::col((member, project_member::Column::UserId))
                            .eq(viewer_id)
                            .into_condition()
                    });
            let (project, member) = Project::find_by_id(project_id)
                .join(JoinType::LeftJoin, membership)
                .select_also(ProjectMember)
                .one(db)
                .await?
                .ok_or(ApiError::NotFound("project"))?;
            (project, member.map(|m| m.role))
        }
        _ => {
            let mut query = Project::find_by_id(project_id);
            if lock {
                query = query.lock_exclusive();
            }
            let project = query.one(db).await?.ok_or(ApiError::NotFound("project"))?;
            let role = match viewer {
                Some(viewer) => ProjectMember::find_by_id((project_id, viewer.id))
                    .one(db)
                    .await?
                    .map(|m: project_member::Model| m.role),
                None => None,
            };
            (project, role)
        }
    };
    authorize(viewer, &project, role, action)?;
    Ok(ProjectAccess { project, role })
}

/// Load a project that `viewer` must be a member of, in any role: posting in the chat and
/// sharing presence. Like [`load`] with [`ProjectAction::Read`], so a private project stays
/// NOT_FOUND to outsiders; a reader who is not a member (a public project, an admin) gets
/// FORBIDDEN.
pub async fn load_member(
    db: &impl ConnectionTrait,
    viewer: &AuthUser,
    project_id: Uuid,
    what: &'static str,
) -> ApiResult<ProjectAccess> {
    let access = load(db, Some(viewer), project_id, ProjectAction::Read, false).await?;
    if access.role.is_none() {
        return Err(ApiError::forbidden(format!(
            "only members of this project may {what}"
        )));
    }
    Ok(access)
}

/// What somebody does with a project's live state: its document, its presence and its
/// events. The one place that decides who may follow, edit or appear in a project live;
/// the documents, presence and events services ask here, and so does a subscription that
/// checks again whether its viewer still has access ([`super::revocation::recheck`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Live {
    /// Read the document and follow its updates, the presence list and the events: whoever
    /// may read the project.
    Follow,
    /// Change the document: editors and owners.
    Edit,
    /// Appear in the presence list: members of any role.
    SharePresence,
}

/// Load a project and check `live` for `viewer`.
pub async fn check_live(
    db: &impl ConnectionTrait,
    viewer: Option<&AuthUser>,
    project_id: Uuid,
    live: Live,
) -> ApiResult<ProjectAccess> {
    match live {
        Live::Follow => check(db, viewer, project_id, ProjectAction::Read).await,
        Live::Edit => {
            let viewer = viewer.ok_or_else(|| ApiError::unauthenticated("sign in first"))?;
            check(db, Some(viewer), project_id, ProjectAction::Edit).await
        }
        Live::SharePresence => {
            let viewer = viewer.ok_or_else(|| ApiError::unauthenticated("sign in first"))?;
            load_member(db, viewer, project_id, "share presence").await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::now;
    use entity::project::Language;
    use entity::user::UserRole;

    fn project(is_public: bool) -> project::Model {
        let at = now();
        project::Model {
            id: Uuid::new_v4(),
            title: "t".into(),
            description: String::new(),
            default_language: Language::Python,
            is_public,
            owner_id: Uuid::new_v4(),
            created_at: at,
            updated_at: at,
            last_activity_at: at,
            forked_from: None,
        }
    }

    fn user(role: UserRole) -> AuthUser {
        AuthUser {
            id: Uuid::new_v4(),
            role,
            session_id: Uuid::new_v4(),
            expires_at: i64::MAX,
        }
    }

    fn code(result: ApiResult<()>) -> &'static str {
        result.err().map_or("OK", |e| e.code())
    }

    #[test]
    fn private_projects_are_invisible_to_outsiders() {
        let p = project(false);
        let outsider = user(UserRole::User);
        assert_eq!(
            code(authorize(None, &p, None, ProjectAction::Read)),
            "NOT_FOUND"
        );
        assert_eq!(
            code(authorize(Some(&outsider), &p, None, ProjectAction::Delete)),
            "NOT_FOUND"
        );
        assert_eq!(
            code(authorize(
                Some(&user(UserRole::Admin)),
                &p,
                None,
                ProjectAction::Read
            )),
            "OK"
        );
        assert_eq!(
            code(authorize(
                Some(&user(UserRole::Admin)),
                &p,
                None,
                ProjectAction::Update
            )),
            "FORBIDDEN"
        );
    }

    #[test]
    fn roles_rank() {
        let p = project(true);
        let u = user(UserRole::User);
        assert_eq!(code(authorize(None, &p, None, ProjectAction::Read)), "OK");
        assert_eq!(
            code(authorize(None, &p, None, ProjectAction::Update)),
            "UNAUTHENTICATED"
        );
        for role in [ProjectRole::Viewer, ProjectRole::Editor] {
            assert_eq!(
                code(authorize(
                    Some(&u),
                    &p,
                    Some(role),
                    ProjectAction::ManageMembers
                )),
                "FORBIDDEN"
            );
        }
        assert_eq!(
            code(authorize(
                Some(&u),
                &p,
                Some(ProjectRole::Owner),
                ProjectAction::Delete
            )),
            "OK"
        );
    }
}
