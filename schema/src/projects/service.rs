//! Project and membership operations, independent of GraphQL.

use entity::prelude::*;
use entity::project::{self, Language};
use entity::project_member::{self, ProjectRole};
use entity::user;
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
    ModelTrait, PaginatorTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use uuid::Uuid;

use super::access::{self, ProjectAccess, ProjectAction};
use crate::context::{AuthUser, Viewer};
use crate::documents::Documents;
use crate::error::{ApiError, ApiResult};
use crate::paging;
use crate::realtime::{Bus, ProjectEvent};
use crate::time::now;
use crate::validation;

pub const PAGE_MAX: i32 = 100;
pub const SEARCH_MAX: usize = 100;

pub struct NewProject {
    pub title: String,
    pub description: Option<String>,
    pub default_language: Language,
    pub is_public: bool,
}

#[derive(Default)]
pub struct ProjectChanges {
    pub title: Option<String>,
    pub description: Option<String>,
    pub default_language: Option<Language>,
    pub is_public: Option<bool>,
}

#[derive(Default)]
pub struct ProjectListFilter {
    /// Only projects the viewer is a member of (or, with false, is not).
    pub mine: Option<bool>,
    /// Only public (or, with false, only private) projects.
    pub public: Option<bool>,
    /// Case-insensitive substring of title or description.
    pub search: Option<String>,
}

/// One page of a project list.
pub struct ProjectPage {
    pub projects: Vec<(String, ProjectAccess)>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub total_count: u64,
}

pub async fn create(
    db: &DatabaseConnection,
    viewer: &AuthUser,
    input: NewProject,
) -> ApiResult<ProjectAccess> {
    let title = validation::single_line("title", &input.title, validation::TITLE_MAX)?;
    let description = validation::text(
        "description",
        input.description.as_deref().unwrap_or(""),
        validation::DESCRIPTION_MAX,
    )?;
    let txn = db.begin().await?;
    let project = insert_project(
        &txn,
        viewer,
        NewProject {
            title,
            description: Some(description),
            ..input
        },
        None,
    )
    .await?;
    txn.commit().await?;
    Ok(ProjectAccess {
        project,
        role: Some(ProjectRole::Owner),
    })
}

/// Insert a project owned by `viewer` (already validated).
async fn insert_project(
    db: &impl ConnectionTrait,
    viewer: &AuthUser,
    input: NewProject,
    forked_from: Option<Uuid>,
) -> ApiResult<project::Model> {
    let at = now();
    let project = project::ActiveModel {
        id: Set(Uuid::new_v4()),
        title: Set(input.title),
        description: Set(input.description.unwrap_or_default()),
        default_language: Set(input.default_language),
        is_public: Set(input.is_public),
        owner_id: Set(viewer.id),
        created_at: Set(at),
        updated_at: Set(at),
        last_activity_at: Set(at),
        forked_from: Set(forked_from),
    }
    .insert(db)
    .await?;
    insert_member(db, project.id, viewer.id, ProjectRole::Owner).await?;
    Ok(project)
}

/// Copy a project the viewer can read, files and their history included, into a new private
/// project the viewer owns.
pub async fn fork(
    db: &DatabaseConnection,
    documents: &Documents,
    viewer: &AuthUser,
    id: Uuid,
    title: Option<&str>,
) -> ApiResult<ProjectAccess> {
    let source = access::check(db, Some(viewer), id, ProjectAction::Read).await?;
    let title = match title {
        Some(title) => validation::single_line("title", title, validation::TITLE_MAX)?,
        None => source.project.title.clone(),
    };
    let snapshot = documents
        .read(id, |doc| doc.export(loro::ExportMode::Snapshot))
        .await?
        .map_err(ApiError::internal)?;
    let txn = db.begin().await?;
    let project = insert_project(
        &txn,
        viewer,
        NewProject {
            title,
            description: Some(source.project.description.clone()),
            default_language: source.project.default_language,
            is_public: false,
        },
        Some(id),
    )
    .await?;
    crate::documents::store::seed(&txn, project.id, snapshot).await?;
    touch(&txn, source.project).await?;
    txn.commit().await?;
    Ok(ProjectAccess {
        project,
        role: Some(ProjectRole::Owner),
    })
}

/// How many forks of `id` exist.
pub async fn forks_count(db: &DatabaseConnection, id: Uuid) -> ApiResult<u64> {
    Ok(Project::find()
        .filter(project::Column::ForkedFrom.eq(id))
        .count(db)
        .await?)
}

pub async fn get(db: &DatabaseConnection, viewer: &Viewer, id: Uuid) -> ApiResult<ProjectAccess> {
    access::check(db, viewer.user()?, id, ProjectAction::Read).await
}

pub async fn update(
    db: &DatabaseConnection,
    bus: &Bus,
    viewer: &AuthUser,
    id: Uuid,
    changes: ProjectChanges,
) -> ApiResult<ProjectAccess> {
    let title = changes
        .title
        .map(|t| validation::single_line("title", &t, validation::TITLE_MAX))
        .transpose()?;
    let description = changes
        .description
        .map(|d| validation::text("description", &d, validation::DESCRIPTION_MAX))
        .transpose()?;
    let ProjectAccess { project, role } =
        access::check(db, Some(viewer), id, ProjectAction::Update).await?;
    let was_public = project.is_public;
    let mut active: project::ActiveModel = project.into();
    if let Some(title) = title {
        active.title = Set(title);
    }
    if let Some(description) = description {
        active.description = Set(description);
    }
    if let Some(language) = changes.default_language {
        active.default_language = Set(language);
    }
    if let Some(is_public) = changes.is_public {
        active.is_public = Set(is_public);
    }
    let at = now();
    active.updated_at = Set(at);
    active.last_activity_at = Set(at);
    let project = active.update(db).await?;
    if project.is_public != was_public {
        bus.announce(
            id,
            ProjectEvent::VisibilityChanged {
                public: project.is_public,
            },
        );
    }
    Ok(ProjectAccess { project, role })
}

pub async fn delete(
    db: &DatabaseConnection,
    documents: &Documents,
    bus: &Bus,
    viewer: &AuthUser,
    id: Uuid,
) -> ApiResult<()> {
    let txn = db.begin().await?;
    let ProjectAccess { project, .. } =
        access::load(&txn, Some(viewer), id, ProjectAction::Delete, true).await?;
    project.delete(&txn).await?;
    txn.commit().await?;
    documents.forget(id);
    bus.announce(id, ProjectEvent::ProjectDeleted);
    Ok(())
}

pub async fn list(
    db: &DatabaseConnection,
    viewer: &Viewer,
    filter: ProjectListFilter,
    first: i32,
    after: Option<&str>,
) -> ApiResult<ProjectPage> {
    let viewer = viewer.user()?;
    if !(0..=PAGE_MAX).contains(&first) {
        return Err(ApiError::bad_input(
            "first",
            format!("first must be between 0 and {PAGE_MAX}"),
        ));
    }
    let after = after.map(|c| paging::decode("after", c)).transpose()?;

    let mut query = Project::find();
    let memberships_of = |user: Uuid| {
        Query::select()
            .column(project_member::Column::ProjectId)
            .from(project_member::Entity)
            .and_where(project_member::Column::UserId.eq(user))
            .to_owned()
    };
    match viewer {
        None => query = query.filter(project::Column::IsPublic.eq(true)),
        Some(v) if v.is_admin() => {}
        Some(v) => {
            query = query.filter(
                Condition::any()
                    .add(project::Column::IsPublic.eq(true))
                    .add(project::Column::Id.in_subquery(memberships_of(v.id))),
            );
        }
    }
    if let Some(mine) = filter.mine {
        let v = viewer.ok_or_else(|| ApiError::unauthenticated("sign in to list your projects"))?;
        query = if mine {
            query.filter(project::Column::Id.in_subquery(memberships_of(v.id)))
        } else {
            query.filter(project::Column::Id.not_in_subquery(memberships_of(v.id)))
        };
    }
    if let Some(public) = filter.public {
        query = query.filter(project::Column::IsPublic.eq(public));
    }
    if let Some(search) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if search.chars().count() > SEARCH_MAX {
            return Err(ApiError::bad_input(
                "filter.search",
                format!("search must be at most {SEARCH_MAX} characters"),
            ));
        }
        let escaped: String = search
            .to_lowercase()
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let pattern = format!("%{escaped}%");
        let like = |column: project::Column| {
            Expr::expr(Func::lower(Expr::col(column)))
                .like(LikeExpr::new(pattern.clone()).escape('\\'))
        };
        query = query.filter(
            Condition::any()
                .add(like(project::Column::Title))
                .add(like(project::Column::Description)),
        );
    }

    let total_count = query.clone().count(db).await?;
    let page = paging::newest_first(
        db,
        query,
        project::Column::LastActivityAt,
        project::Column::Id,
        after,
        usize::try_from(first).unwrap_or(0),
        |p| (p.last_activity_at, p.id),
    )
    .await?;

    let roles = match viewer {
        Some(v) if !page.rows.is_empty() => ProjectMember::find()
            .filter(project_member::Column::UserId.eq(v.id))
            .filter(project_member::Column::ProjectId.is_in(page.rows.iter().map(|(_, p)| p.id)))
            .all(db)
            .await?
            .into_iter()
            .map(|m| (m.project_id, m.role))
            .collect(),
        _ => std::collections::HashMap::new(),
    };
    let projects = page
        .rows
        .into_iter()
        .map(|(cursor, project)| {
            let role = roles.get(&project.id).copied();
            (cursor, ProjectAccess { project, role })
        })
        .collect();
    Ok(ProjectPage {
        projects,
        has_next_page: page.has_next_page,
        has_previous_page: page.has_previous_page,
        total_count,
    })
}

pub async fn members(
    db: &DatabaseConnection,
    project_id: Uuid,
) -> ApiResult<Vec<project_member::Model>> {
    Ok(ProjectMember::find()
        .filter(project_member::Column::ProjectId.eq(project_id))
        .order_by_asc(project_member::Column::JoinedAt)
        .order_by_asc(project_member::Column::UserId)
        .all(db)
        .await?)
}

/// Join a public project as VIEWER. Joining a project one already belongs to changes nothing.
pub async fn join(
    db: &DatabaseConnection,
    bus: &Bus,
    viewer: &AuthUser,
    id: Uuid,
) -> ApiResult<ProjectAccess> {
    let txn = db.begin().await?;
    let access = access::load(&txn, Some(viewer), id, ProjectAction::Read, true).await?;
    if access.role.is_some() {
        return Ok(access);
    }
    if !access.project.is_public {
        return Err(ApiError::forbidden(
            "private projects are joined by invitation of an owner",
        ));
    }
    insert_member(&txn, id, viewer.id, ProjectRole::Viewer).await?;
    let project = touch(&txn, access.project).await?;
    txn.commit().await?;
    bus.announce(
        id,
        ProjectEvent::MemberJoined {
            user: viewer.id,
            role: ProjectRole::Viewer,
        },
    );
    Ok(ProjectAccess {
        project,
        role: Some(ProjectRole::Viewer),
    })
}

/// Leave a project. The last owner cannot leave: transfer ownership or delete it instead.
pub async fn leave(
    db: &DatabaseConnection,
    bus: &Bus,
    viewer: &AuthUser,
    id: Uuid,
) -> ApiResult<()> {
    let txn = db.begin().await?;
    let access = access::load(&txn, Some(viewer), id, ProjectAction::Read, true).await?;
    let member = find_member(&txn, id, viewer.id).await?;
    remove(&txn, access.project, member).await?;
    txn.commit().await?;
    bus.announce(id, ProjectEvent::MemberLeft { user: viewer.id });
    Ok(())
}

pub async fn add_member(
    db: &DatabaseConnection,
    bus: &Bus,
    viewer: &AuthUser,
    id: Uuid,
    username: &str,
    role: ProjectRole,
) -> ApiResult<project_member::Model> {
    let txn = db.begin().await?;
    let access = access::load(&txn, Some(viewer), id, ProjectAction::ManageMembers, true).await?;
    let user = User::find()
        .filter(user::Column::Username.eq(username.trim().to_lowercase()))
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    if ProjectMember::find_by_id((id, user.id))
        .one(&txn)
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(
            Some("username"),
            "that user is already a member; use setMemberRole",
        ));
    }
    let member = insert_member(&txn, id, user.id, role).await?;
    touch(&txn, access.project).await?;
    txn.commit().await?;
    bus.announce(
        id,
        ProjectEvent::MemberJoined {
            user: user.id,
            role,
        },
    );
    Ok(member)
}

pub async fn set_member_role(
    db: &DatabaseConnection,
    bus: &Bus,
    viewer: &AuthUser,
    id: Uuid,
    user_id: Uuid,
    role: ProjectRole,
) -> ApiResult<project_member::Model> {
    let txn = db.begin().await?;
    let access = access::load(&txn, Some(viewer), id, ProjectAction::ManageMembers, true).await?;
    let member = find_member(&txn, id, user_id).await?;
    if member.role == role {
        return Ok(member);
    }
    if member.role == ProjectRole::Owner {
        ensure_another_owner(&txn, id, user_id).await?;
    }
    let mut active: project_member::ActiveModel = member.into();
    active.role = Set(role);
    let member = active.update(&txn).await?;
    let project = touch(&txn, access.project).await?;
    ensure_primary_owner(&txn, project).await?;
    txn.commit().await?;
    bus.announce(
        id,
        ProjectEvent::MemberRoleChanged {
            user: user_id,
            role,
        },
    );
    Ok(member)
}

pub async fn remove_member(
    db: &DatabaseConnection,
    bus: &Bus,
    viewer: &AuthUser,
    id: Uuid,
    user_id: Uuid,
) -> ApiResult<ProjectAccess> {
    let txn = db.begin().await?;
    let access = access::load(&txn, Some(viewer), id, ProjectAction::ManageMembers, true).await?;
    let member = find_member(&txn, id, user_id).await?;
    let project = remove(&txn, access.project, member).await?;
    let role = if user_id == viewer.id {
        None
    } else {
        access.role
    };
    txn.commit().await?;
    bus.announce(
        id,
        if user_id == viewer.id {
            ProjectEvent::MemberLeft { user: user_id }
        } else {
            ProjectEvent::MemberRemoved { user: user_id }
        },
    );
    Ok(ProjectAccess { project, role })
}

/// Make another member the primary owner; the caller stays on as EDITOR.
pub async fn transfer_ownership(
    db: &DatabaseConnection,
    bus: &Bus,
    viewer: &AuthUser,
    id: Uuid,
    user_id: Uuid,
) -> ApiResult<ProjectAccess> {
    if user_id == viewer.id {
        return Err(ApiError::bad_input(
            "userId",
            "you already own this project",
        ));
    }
    let txn = db.begin().await?;
    let access = access::load(
        &txn,
        Some(viewer),
        id,
        ProjectAction::TransferOwnership,
        true,
    )
    .await?;
    let target = find_member(&txn, id, user_id).await?;
    let mut target: project_member::ActiveModel = target.into();
    target.role = Set(ProjectRole::Owner);
    target.update(&txn).await?;
    let me = find_member(&txn, id, viewer.id).await?;
    let mut me: project_member::ActiveModel = me.into();
    me.role = Set(ProjectRole::Editor);
    me.update(&txn).await?;
    let mut project: project::ActiveModel = access.project.into();
    project.owner_id = Set(user_id);
    let at = now();
    project.updated_at = Set(at);
    project.last_activity_at = Set(at);
    let project = project.update(&txn).await?;
    txn.commit().await?;
    bus.announce(
        id,
        ProjectEvent::MemberRoleChanged {
            user: user_id,
            role: ProjectRole::Owner,
        },
    );
    bus.announce(
        id,
        ProjectEvent::MemberRoleChanged {
            user: viewer.id,
            role: ProjectRole::Editor,
        },
    );
    Ok(ProjectAccess {
        project,
        role: Some(ProjectRole::Editor),
    })
}

pub(crate) async fn insert_member(
    db: &impl ConnectionTrait,
    project_id: Uuid,
    user_id: Uuid,
    role: ProjectRole,
) -> ApiResult<project_member::Model> {
    Ok(project_member::ActiveModel {
        project_id: Set(project_id),
        user_id: Set(user_id),
        role: Set(role),
        joined_at: Set(now()),
    }
    .insert(db)
    .await?)
}

async fn find_member(
    db: &impl ConnectionTrait,
    project_id: Uuid,
    user_id: Uuid,
) -> ApiResult<project_member::Model> {
    ProjectMember::find_by_id((project_id, user_id))
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("member"))
}

/// Remove a membership, refusing to remove the last owner.
async fn remove(
    db: &impl ConnectionTrait,
    project: project::Model,
    member: project_member::Model,
) -> ApiResult<project::Model> {
    if member.role == ProjectRole::Owner {
        ensure_another_owner(db, project.id, member.user_id).await?;
    }
    member.delete(db).await?;
    let project = touch(db, project).await?;
    ensure_primary_owner(db, project).await
}

async fn ensure_another_owner(
    db: &impl ConnectionTrait,
    project_id: Uuid,
    except: Uuid,
) -> ApiResult<()> {
    let others = ProjectMember::find()
        .filter(project_member::Column::ProjectId.eq(project_id))
        .filter(project_member::Column::Role.eq(ProjectRole::Owner))
        .filter(project_member::Column::UserId.ne(except))
        .count(db)
        .await?;
    if others == 0 {
        return Err(ApiError::conflict(
            None,
            "a project needs an owner: transfer ownership or delete the project instead",
        ));
    }
    Ok(())
}

/// Keep `projects.owner_id` pointing at an OWNER: when the primary owner stopped being one,
/// the longest-standing remaining owner takes the place.
async fn ensure_primary_owner(
    db: &impl ConnectionTrait,
    project: project::Model,
) -> ApiResult<project::Model> {
    let still_owner = ProjectMember::find_by_id((project.id, project.owner_id))
        .one(db)
        .await?
        .is_some_and(|m| m.role == ProjectRole::Owner);
    if still_owner {
        return Ok(project);
    }
    let successor = ProjectMember::find()
        .filter(project_member::Column::ProjectId.eq(project.id))
        .filter(project_member::Column::Role.eq(ProjectRole::Owner))
        .order_by_asc(project_member::Column::JoinedAt)
        .one(db)
        .await?
        .ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("project {} has no owner left", project.id))
        })?;
    let mut active: project::ActiveModel = project.into();
    active.owner_id = Set(successor.user_id);
    Ok(active.update(db).await?)
}

async fn touch(db: &impl ConnectionTrait, project: project::Model) -> ApiResult<project::Model> {
    let mut active: project::ActiveModel = project.into();
    active.last_activity_at = Set(now());
    Ok(active.update(db).await?)
}
