//! Starting, reading, listing and cancelling runs, independent of GraphQL.

use std::collections::BTreeMap;

use chrono::Duration as ChronoDuration;
use entity::prelude::*;
use entity::project::Language;
use entity::run::{self, RunStatus};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use crate::context::{AuthUser, Viewer};
use crate::documents::{Documents, check_path, list_files};
use crate::error::{ApiError, ApiResult};
use crate::paging::{self, Page};
use crate::projects::access::{self, ProjectAction};
use crate::realtime::{Bus, RunSignal};
use crate::state::Runs;
use crate::time::now;
use crate::validation;
use jobs::RunLimits;

/// The largest page of `runs`.
pub const PAGE_MAX: i32 = 100;

/// What `runCode` asks for.
pub struct RunRequest {
    pub language: Option<Language>,
    pub entry: Option<String>,
    pub source: Option<String>,
    pub stdin: Option<String>,
    /// Within the configured maxima (see `RunLimitsInput::resolve`).
    pub limits: RunLimits,
}

/// Refuse a user who started more than `per_minute` runs in the last minute.
async fn check_rate(db: &DatabaseConnection, per_minute: u32, viewer: &AuthUser) -> ApiResult<()> {
    let since = now() - ChronoDuration::seconds(60);
    let recent = Run::find()
        .filter(run::Column::RequestedBy.eq(viewer.id))
        .filter(run::Column::CreatedAt.gt(since))
        .order_by_asc(run::Column::CreatedAt)
        .limit(u64::from(per_minute))
        .all(db)
        .await?;
    if recent.len() >= per_minute as usize {
        let oldest = recent.first().map_or_else(now, |r| r.created_at);
        let retry_after = (oldest + ChronoDuration::seconds(60) - now())
            .num_seconds()
            .clamp(1, 60);
        crate::metrics::rate_limited("runsPerMinute");
        return Err(ApiError::RateLimited {
            retry_after_secs: u64::try_from(retry_after).unwrap_or(60),
        });
    }
    Ok(())
}

/// Start a run: EDITOR or OWNER. The run is stored QUEUED (with the files it runs, read
/// from the live document) and handed to `runs`' queue; the answer does not wait for it.
pub async fn start(
    db: &DatabaseConnection,
    documents: &Documents,
    runs: &Runs,
    viewer: &AuthUser,
    project_id: Uuid,
    request: RunRequest,
) -> ApiResult<run::Model> {
    let config = &runs.config;
    let stdin = request.stdin.unwrap_or_default();
    if stdin.len() > config.max_stdin_bytes {
        return Err(ApiError::bad_input(
            "stdin",
            format!("stdin holds at most {} bytes", config.max_stdin_bytes),
        ));
    }
    let limits = request.limits;
    let access = access::check(db, Some(viewer), project_id, ProjectAction::Edit).await?;
    let language = request.language.unwrap_or(access.project.default_language);
    if !jobs::sandbox::is_available(language.into()) {
        return Err(ApiError::bad_input(
            "language",
            "that language's toolchain is not installed on the workers (see `languages`)",
        ));
    }
    let (entry, files) = match (request.entry, request.source) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::bad_input(
                "entry",
                "give either `entry` (a file of the project) or `source`",
            ));
        }
        (None, Some(source)) => {
            if source.len() > config.max_source_bytes {
                return Err(ApiError::bad_input(
                    "source",
                    format!("source holds at most {} bytes", config.max_source_bytes),
                ));
            }
            let entry = jobs::sandbox::Language::from(language)
                .source_file()
                .to_owned();
            (entry.clone(), BTreeMap::from([(entry, source)]))
        }
        (Some(entry), None) => {
            check_path("entry", &entry)?;
            let files = documents.read(project_id, list_files).await?;
            let total: usize = files.iter().map(|f| f.size).sum();
            if total > config.max_files_bytes {
                return Err(ApiError::bad_input(
                    "entry",
                    format!(
                        "the project's files exceed the {} bytes a run may copy",
                        config.max_files_bytes
                    ),
                ));
            }
            let files: BTreeMap<String, String> =
                files.into_iter().map(|f| (f.path, f.content)).collect();
            if !files.contains_key(&entry) {
                return Err(ApiError::bad_input("entry", "no such file in the project"));
            }
            (entry, files)
        }
    };
    check_rate(db, config.runs_per_minute, viewer).await?;
    let run = run::ActiveModel {
        id: Set(Uuid::new_v4()),
        project_id: Set(project_id),
        requested_by: Set(viewer.id),
        language: Set(language),
        entry: Set(entry),
        files: Set(serde_json::to_value(&files).map_err(ApiError::internal)?),
        stdin: Set(stdin.into_bytes()),
        limits: Set(serde_json::to_value(limits).map_err(ApiError::internal)?),
        status: Set(RunStatus::Queued),
        cancel_requested: Set(false),
        exit_code: Set(None),
        signal: Set(None),
        stdout: Set(String::new()),
        stderr: Set(String::new()),
        stdout_truncated: Set(false),
        stderr_truncated: Set(false),
        output_seq: Set(0),
        wall_ms: Set(None),
        cpu_ms: Set(None),
        peak_memory_bytes: Set(None),
        attempts: Set(0),
        worker_id: Set(None),
        error: Set(None),
        heartbeat_at: Set(None),
        created_at: Set(now()),
        started_at: Set(None),
        finished_at: Set(None),
    }
    .insert(db)
    .await?;
    if let Err(error) = runs.queue.push(run.id).await {
        // The run stays QUEUED; workers re-enqueue forgotten runs (see `jobs::worker`'s reaper).
        tracing::error!(run = %run.id, ?error, "cannot enqueue a run");
    }
    Ok(run)
}

/// A run the viewer may read (whoever can read its project).
pub async fn get(db: &DatabaseConnection, viewer: &Viewer, id: Uuid) -> ApiResult<run::Model> {
    authorized(db, viewer.user()?, id, ProjectAction::Read).await
}

/// Run `id`, once `viewer` may do `action` in its project (a run of a project the viewer
/// cannot see is NOT_FOUND, like the project).
async fn authorized(
    db: &DatabaseConnection,
    viewer: Option<&AuthUser>,
    id: Uuid,
    action: ProjectAction,
) -> ApiResult<run::Model> {
    let run = find(db, id).await?;
    access::check(db, viewer, run.project_id, action)
        .await
        .map_err(|error| match error {
            ApiError::NotFound(_) => ApiError::NotFound("run"),
            other => other,
        })?;
    Ok(run)
}

async fn find(db: &DatabaseConnection, id: Uuid) -> ApiResult<run::Model> {
    Run::find_by_id(id)
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("run"))
}

/// One page of a project's runs, newest first.
pub struct RunPage {
    pub runs: Vec<(String, run::Model)>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
}

pub async fn list(
    db: &DatabaseConnection,
    viewer: &Viewer,
    project_id: Uuid,
    first: i32,
    after: Option<&str>,
) -> ApiResult<RunPage> {
    let first = validation::in_range("first", first, 1..=PAGE_MAX)?;
    let after = after.map(|c| paging::decode("after", c)).transpose()?;
    access::check(db, viewer.user()?, project_id, ProjectAction::Read).await?;
    let Page {
        rows: runs,
        has_next_page,
        has_previous_page,
    } = paging::newest_first(
        db,
        Run::find().filter(run::Column::ProjectId.eq(project_id)),
        run::Column::CreatedAt,
        run::Column::Id,
        after,
        usize::try_from(first).unwrap_or(0),
        |r| (r.created_at, r.id),
    )
    .await?;
    Ok(RunPage {
        runs,
        has_next_page,
        has_previous_page,
    })
}

/// Cancel a run: EDITOR or OWNER of its project. A queued run is CANCELLED at once; a
/// running one is killed by its worker, which then records CANCELLED. Cancelling a run that
/// has ended changes nothing. Followers hear it on `bus`.
pub async fn cancel(
    db: &DatabaseConnection,
    bus: &Bus,
    viewer: &AuthUser,
    id: Uuid,
) -> ApiResult<run::Model> {
    let run = authorized(db, Some(viewer), id, ProjectAction::Edit).await?;
    let at = now();
    let cancelled = Run::update_many()
        .col_expr(run::Column::Status, Expr::value(RunStatus::Cancelled))
        .col_expr(run::Column::FinishedAt, Expr::value(at))
        .filter(run::Column::Id.eq(id))
        .filter(run::Column::Status.eq(RunStatus::Queued))
        .exec(db)
        .await?;
    if cancelled.rows_affected == 1 {
        jobs::worker::RunObserver::finished(&super::RunMetrics, run.language, RunStatus::Cancelled);
        jobs::worker::announce_finished(bus, &run, RunStatus::Cancelled);
    } else {
        let asked = Run::update_many()
            .col_expr(run::Column::CancelRequested, Expr::value(true))
            .filter(run::Column::Id.eq(id))
            .filter(run::Column::Status.eq(RunStatus::Running))
            .exec(db)
            .await?;
        if asked.rows_affected == 1 {
            bus.publish_run(id, RunSignal::Cancel);
        }
    }
    find(db, id).await
}
