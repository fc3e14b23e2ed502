//! Who may follow a project's events.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::context::AuthUser;
use crate::error::ApiResult;
use crate::projects::access::{self, Live};
use crate::realtime::{Bus, ProjectSignal};

/// The signals of `project`, once `viewer` (if any) may follow it. Listening starts before
/// the check, so nothing between the check and the stream is lost.
pub async fn follow(
    db: &DatabaseConnection,
    bus: &Bus,
    viewer: Option<&AuthUser>,
    project: Uuid,
) -> ApiResult<broadcast::Receiver<Arc<ProjectSignal>>> {
    let signals = bus.subscribe_project(project);
    access::check_live(db, viewer, project, Live::Follow).await?;
    Ok(signals)
}
