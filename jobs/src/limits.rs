//! How much a run may use: one type, from the configured defaults and maxima to the row (as
//! JSON) to the sandbox. Each default is written once, below.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const MIB: u64 = 1024 * 1024;

/// Wall-clock time of a program that asks for nothing, in milliseconds.
pub const DEFAULT_WALL_MS: u64 = 10_000;
/// CPU time of a program that asks for nothing (its whole process tree), in milliseconds.
pub const DEFAULT_CPU_MS: u64 = 5_000;
pub const DEFAULT_MEMORY_BYTES: u64 = 256 * MIB;
pub const DEFAULT_PROCESSES: u32 = 64;
pub const DEFAULT_FILE_BYTES: u64 = MIB;
pub const DEFAULT_OUTPUT_BYTES: u64 = 64 * 1024;
/// Wall-clock time of a compile step (C, C++, Rust, Java, Go, TypeScript), in milliseconds.
pub const DEFAULT_COMPILE_WALL_MS: u64 = 40_000;
/// CPU time of a compile step, in milliseconds.
pub const DEFAULT_COMPILE_CPU_MS: u64 = 15_000;
/// CPU bandwidth of a run, in cores (where cgroups bound it).
pub const DEFAULT_CPU_CORES: f64 = 1.0;

/// The most a run may ask for, unless configured otherwise.
pub const MAX_WALL_MS: u64 = 60_000;
pub const MAX_CPU_MS: u64 = 30_000;
pub const MAX_MEMORY_BYTES: u64 = 1024 * MIB;
pub const MAX_PROCESSES: u32 = 256;
pub const MAX_FILE_BYTES: u64 = 16 * MIB;
pub const MAX_OUTPUT_BYTES: u64 = MIB;

/// Limits of one run; stored with it as JSON (rows written before the compile budget and the
/// CPU share were stored read as the defaults).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunLimits {
    /// Wall-clock time of the program, from its start (after any compile step), in
    /// milliseconds.
    pub wall_ms: u64,
    /// CPU time of the program's whole process tree, in milliseconds.
    pub cpu_ms: u64,
    /// Memory of the whole process tree, in bytes.
    pub memory_bytes: u64,
    /// Processes and threads at once.
    pub processes: u32,
    /// Largest file the program may write, in bytes.
    pub file_bytes: u64,
    /// Output kept and streamed per stream (stdout, stderr), in bytes; more kills the run
    /// (OUTPUT_LIMIT).
    pub output_bytes: u64,
    /// Wall-clock time of the compile step, which the program cannot use, in milliseconds.
    #[serde(default = "default_compile_wall_ms")]
    pub compile_wall_ms: u64,
    /// CPU time of the compile step, in milliseconds.
    #[serde(default = "default_compile_cpu_ms")]
    pub compile_cpu_ms: u64,
    /// CPU bandwidth of the run, in cores (where cgroups bound it).
    #[serde(default = "default_cpu_cores")]
    pub cpu_cores: f64,
}

fn default_compile_wall_ms() -> u64 {
    DEFAULT_COMPILE_WALL_MS
}

fn default_compile_cpu_ms() -> u64 {
    DEFAULT_COMPILE_CPU_MS
}

fn default_cpu_cores() -> f64 {
    DEFAULT_CPU_CORES
}

impl RunLimits {
    /// The limits of a run that asks for nothing.
    pub const DEFAULT: Self = Self {
        wall_ms: DEFAULT_WALL_MS,
        cpu_ms: DEFAULT_CPU_MS,
        memory_bytes: DEFAULT_MEMORY_BYTES,
        processes: DEFAULT_PROCESSES,
        file_bytes: DEFAULT_FILE_BYTES,
        output_bytes: DEFAULT_OUTPUT_BYTES,
        compile_wall_ms: DEFAULT_COMPILE_WALL_MS,
        compile_cpu_ms: DEFAULT_COMPILE_CPU_MS,
        cpu_cores: DEFAULT_CPU_CORES,
    };

    /// The most a run may ask for, unless configured otherwise (the compile budget and the
    /// CPU share are not asked for).
    pub const MAX: Self = Self {
        wall_ms: MAX_WALL_MS,
        cpu_ms: MAX_CPU_MS,
        memory_bytes: MAX_MEMORY_BYTES,
        processes: MAX_PROCESSES,
        file_bytes: MAX_FILE_BYTES,
        output_bytes: MAX_OUTPUT_BYTES,
        ..Self::DEFAULT
    };

    pub fn wall(&self) -> Duration {
        Duration::from_millis(self.wall_ms)
    }

    pub fn cpu(&self) -> Duration {
        Duration::from_millis(self.cpu_ms)
    }

    pub fn compile_wall(&self) -> Duration {
        Duration::from_millis(self.compile_wall_ms)
    }

    pub fn compile_cpu(&self) -> Duration {
        Duration::from_millis(self.compile_cpu_ms)
    }
}

impl Default for RunLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A row written before the compile budget was stored reads with the default budget.
    #[test]
    fn older_rows_read_with_the_default_compile_budget() {
        let stored = r#"{"wallMs":2000,"cpuMs":1000,"memoryBytes":1048576,"processes":8,"fileBytes":1024,"outputBytes":512}"#;
        let limits: RunLimits = serde_json::from_str(stored).unwrap();
        assert_eq!(limits.wall(), Duration::from_secs(2));
        assert_eq!(limits.compile_wall_ms, DEFAULT_COMPILE_WALL_MS);
        assert_eq!(limits.cpu_cores, DEFAULT_CPU_CORES);
        let back: RunLimits =
            serde_json::from_value(serde_json::to_value(limits).unwrap()).unwrap();
        assert_eq!(back, limits);
    }
}
