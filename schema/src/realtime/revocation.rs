//! Ending a subscription when its viewer loses access to the project.

use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};
use uuid::Uuid;

use super::{Bus, ProjectSignal};
use crate::error::ApiError;

/// Watches a project's events for the one that takes the viewer's access away.
pub struct Revocation {
    events: broadcast::Receiver<Arc<ProjectSignal>>,
    user: Option<Uuid>,
}

impl Revocation {
    /// Start watching before the subscription's first event, so nothing slips between.
    pub fn watch(bus: &Bus, project: Uuid, user: Option<Uuid>) -> Self {
        Self {
            events: bus.subscribe_project(project),
            user,
        }
    }

    /// Resolves, with the error to end the subscription with, once access is lost.
    /// Cancel-safe: usable in `select!`.
    pub async fn revoked(&mut self) -> ApiError {
        loop {
            match self.events.recv().await {
                Ok(signal) => {
                    if let ProjectSignal::Event(event) = signal.as_ref()
                        && event.revokes(self.user)
                    {
                        return ApiError::forbidden("you no longer have access to this project");
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => {
                    return ApiError::internal(anyhow::anyhow!("project event channel closed"));
                }
            }
        }
    }
}
