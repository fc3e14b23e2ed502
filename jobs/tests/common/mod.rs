//! What the sandbox's test binaries (`sandbox.rs`, `warm.rs`) share.

use std::path::Path;

use jobs::RunLimits;
use jobs::sandbox::{Language, RunSpec};

pub fn bwrap() -> &'static Path {
    Path::new("bwrap")
}

/// A run of `source` in `file` (its entry) under small limits.
pub fn spec(language: Language, file: &str, source: &str) -> RunSpec {
    RunSpec {
        language,
        files: vec![(file.to_owned(), source.as_bytes().to_vec())],
        entry: file.to_owned(),
        stdin: Vec::new(),
        limits: RunLimits {
            wall_ms: 5_000,
            cpu_ms: 2_000,
            memory_bytes: 128 * 1024 * 1024,
            processes: 32,
            file_bytes: 1024 * 1024,
            output_bytes: 16 * 1024,
            ..RunLimits::DEFAULT
        },
    }
}
