//! The rules of code runs.

use jobs::RunLimits;
use jobs::worker::{DEFAULT_MAX_ATTEMPTS, WorkerConfig};

/// The rules of code runs; `codecrafter serve` and `codecrafter worker` read them from the
/// environment (see the README).
#[derive(Clone, Debug)]
pub struct RunsConfig {
    /// Runs one user may start per minute.
    pub runs_per_minute: u32,
    pub default_limits: RunLimits,
    pub max_limits: RunLimits,
    /// Largest `source` and `stdin`, in bytes.
    pub max_source_bytes: usize,
    pub max_stdin_bytes: usize,
    /// Most bytes of project files copied into one run.
    pub max_files_bytes: usize,
    /// Infrastructure failures are retried; a run is given up (INTERNAL_ERROR) after this
    /// many attempts.
    pub max_attempts: i32,
    /// The `bwrap` executable the sandbox uses.
    pub bwrap: std::path::PathBuf,
}

impl Default for RunsConfig {
    fn default() -> Self {
        Self {
            runs_per_minute: Self::RUNS_PER_MINUTE,
            default_limits: RunLimits::DEFAULT,
            max_limits: RunLimits::MAX,
            max_source_bytes: Self::MAX_SOURCE_BYTES,
            max_stdin_bytes: Self::MAX_STDIN_BYTES,
            max_files_bytes: Self::MAX_FILES_BYTES,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            bwrap: Self::BWRAP.into(),
        }
    }
}

impl RunsConfig {
    pub const RUNS_PER_MINUTE: u32 = 10;
    pub const MAX_SOURCE_BYTES: usize = 64 * 1024;
    pub const MAX_STDIN_BYTES: usize = 64 * 1024;
    pub const MAX_FILES_BYTES: usize = 8 * jobs::limits::MIB as usize;
    pub const BWRAP: &str = "bwrap";

    /// What a worker needs of these rules.
    pub fn worker(&self) -> WorkerConfig {
        WorkerConfig {
            max_attempts: self.max_attempts,
            bwrap: self.bwrap.clone(),
            sandboxes_ahead: 1,
        }
    }
}
