//! What a run's life tells the bus: its followers (`runEvents`) and its project
//! (`projectEvents`) hear it start and end, on every node.

use entity::run::RunStatus;
use uuid::Uuid;

use crate::bus::Bus;
use crate::signal::{ProjectEvent, RunSignal};

impl Bus {
    /// Run `run` of `project`, asked for by `by`, started.
    pub fn run_started(&self, project: Uuid, run: Uuid, by: Uuid) {
        self.announce(project, ProjectEvent::RunStarted { run, by });
    }

    /// Run `run` of `project` ended with `status`; its row holds the result.
    pub fn run_finished(&self, project: Uuid, run: Uuid, status: RunStatus) {
        self.publish_run(run, RunSignal::Finished { status });
        self.announce(project, ProjectEvent::RunFinished { run, status });
    }
}
