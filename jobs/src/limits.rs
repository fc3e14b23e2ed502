//! How much a run may use: one type, stored with the run as JSON, read by the worker.

use serde::{Deserialize, Serialize};

/// Limits of one run; stored with it as JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunLimits {
    /// Wall-clock time of the program, in milliseconds.
    pub wall_ms: u64,
    /// CPU time of the program, in milliseconds.
    pub cpu_ms: u64,
    /// Memory of the whole process tree, in bytes.
    pub memory_bytes: u64,
    /// Processes and threads at once.
    pub processes: u32,
    /// Largest file the program may write, in bytes.
    pub file_bytes: u64,
    /// Output kept and streamed per stream (stdout, stderr), in bytes.
    pub output_bytes: u64,
}

impl RunLimits {
    /// The defaults of a run that asks for nothing.
    pub const DEFAULT: Self = Self {
        wall_ms: 10_000,
        cpu_ms: 5_000,
        memory_bytes: 256 * 1024 * 1024,
        processes: 64,
        file_bytes: 1024 * 1024,
        output_bytes: 64 * 1024,
    };

    /// The most a run may ask for, unless configured otherwise.
    pub const MAX: Self = Self {
        wall_ms: 60_000,
        cpu_ms: 30_000,
        memory_bytes: 1024 * 1024 * 1024,
        processes: 256,
        file_bytes: 16 * 1024 * 1024,
        output_bytes: 1024 * 1024,
    };
}
