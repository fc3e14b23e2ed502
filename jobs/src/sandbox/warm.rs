//! Sandboxes started ahead of their runs.
//!
//! Most of a short run's time is its sandbox's start (see [`Sandbox`]), and none of that
//! depends on the run but its language and limits. A worker keeps a few sandboxes started for
//! the language and limits of its latest runs: a run that fits one takes it, and each run
//! starts the sandbox of the next one while it goes. A sandbox serves one run and is then
//! gone; one that waits holds a uid, a run directory and cgroups, and two idle processes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, watch};

use super::{Language, Outcome, OutputChunk, RunLimits, RunSpec, Sandbox, SandboxError};

pub struct Warm {
    bwrap: PathBuf,
    /// The most sandboxes that wait at once (one per run a worker takes at a time).
    keep: usize,
    /// Oldest first.
    waiting: Mutex<Vec<Sandbox>>,
    closed: AtomicBool,
}

impl Warm {
    /// Keep up to `keep` sandboxes waiting (none: every run starts its own).
    pub fn new(bwrap: PathBuf, keep: usize) -> Arc<Self> {
        Arc::new(Self {
            bwrap,
            keep,
            waiting: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// Run `spec` in a sandbox started ahead for its language and limits if one waits, in a
    /// new one otherwise; either way, start one for the next run like it.
    pub async fn run(
        self: &Arc<Self>,
        spec: RunSpec,
        output: mpsc::UnboundedSender<OutputChunk>,
        cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, SandboxError> {
        let sandbox = match self.take(&spec) {
            Some(sandbox) => sandbox,
            None => Sandbox::start(&self.bwrap, spec.language, spec.limits)?,
        };
        self.start_next(spec.language, spec.limits);
        sandbox.run(spec, output, cancel).await
    }

    /// How many sandboxes wait.
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    /// Stop the sandboxes that wait, and start no more.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let waiting = std::mem::take(&mut *self.lock());
        for sandbox in waiting {
            sandbox.discard().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sandbox>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A waiting sandbox that fits `spec` and is still up (one that is not is stopped).
    fn take(&self, spec: &RunSpec) -> Option<Sandbox> {
        loop {
            let mut sandbox = {
                let mut waiting = self.lock();
                let at = waiting.iter().position(|s| s.fits(spec))?;
                waiting.remove(at)
            };
            if sandbox.waiting() {
                return Some(sandbox);
            }
            tracing::warn!("a sandbox started ahead ended before its run; starting another");
            tokio::spawn(sandbox.discard());
        }
    }

    /// Start a sandbox for a run in `language` under `limits`, to wait; the oldest waiting
    /// makes room when `keep` already do.
    fn start_next(self: &Arc<Self>, language: Language, limits: RunLimits) {
        if self.keep == 0 || self.closed.load(Ordering::SeqCst) {
            return;
        }
        let warm = Arc::downgrade(self);
        tokio::spawn(async move {
            let Some(warm) = warm.upgrade() else { return };
            let sandbox = match Sandbox::start(&warm.bwrap, language, limits) {
                Ok(sandbox) => sandbox,
                Err(error) => {
                    tracing::warn!(%error, "could not start a sandbox ahead of its run");
                    return;
                }
            };
            let unwanted = {
                let mut waiting = warm.lock();
                if warm.closed.load(Ordering::SeqCst) {
                    Some(sandbox)
                } else {
                    waiting.push(sandbox);
                    (waiting.len() > warm.keep).then(|| waiting.remove(0))
                }
            };
            if let Some(sandbox) = unwanted {
                sandbox.discard().await;
            }
        });
    }
}
