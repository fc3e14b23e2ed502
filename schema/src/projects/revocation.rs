//! Ending a subscription when its viewer loses access to the project.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio::sync::broadcast::{self, error::RecvError};
use uuid::Uuid;

use super::access::{self, Live};
use crate::context::AuthUser;
use crate::error::ApiError;
use crate::realtime::{Bus, ProjectSignal};

/// Watches a project's events for those that take the viewer's access away: removal and
/// deletion at once; leaving, a private turn and a lag after checking access again.
pub struct Revocation {
    events: broadcast::Receiver<Arc<ProjectSignal>>,
    db: DatabaseConnection,
    project: Uuid,
    viewer: Option<AuthUser>,
}

/// The error a subscription ends with when access is gone.
pub fn lost_access() -> ApiError {
    ApiError::forbidden("you no longer have access to this project")
}

/// Whether `viewer` still may read `project`; the error to end with when not.
pub async fn recheck(
    db: &DatabaseConnection,
    project: Uuid,
    viewer: Option<&AuthUser>,
) -> Option<ApiError> {
    match access::check_live(db, viewer, project, Live::Follow).await {
        Ok(_) => None,
        Err(ApiError::NotFound(_) | ApiError::Forbidden(_)) => Some(lost_access()),
        Err(error) => Some(error),
    }
}

impl Revocation {
    /// Start watching before the subscription's first event, so nothing slips between.
    pub fn watch(
        bus: &Bus,
        db: DatabaseConnection,
        project: Uuid,
        viewer: Option<AuthUser>,
    ) -> Self {
        Self {
            events: bus.subscribe_project_events(project),
            db,
            project,
            viewer,
        }
    }

    /// Resolves, with the error to end the subscription with, once access is lost.
    /// Cancel-safe: usable in `select!` (a re-check in progress is simply done again).
    pub async fn revoked(&mut self) -> ApiError {
        let user = self.viewer.as_ref().map(|v| v.id);
        loop {
            let recheck_needed = match self.events.recv().await {
                Ok(signal) => match signal.as_ref() {
                    ProjectSignal::Event(event) if event.revokes(user) => return lost_access(),
                    ProjectSignal::Event(event) => event.may_revoke(user),
                    ProjectSignal::Presence(_) => false,
                },
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => {
                    return ApiError::internal(anyhow::anyhow!("project event channel closed"));
                }
            };
            // Boxed: a query's future is large, and this one lives in every subscription's state.
            if recheck_needed
                && let Some(error) =
                    Box::pin(recheck(&self.db, self.project, self.viewer.as_ref())).await
            {
                return error;
            }
        }
    }
}
