//! What a document may hold, and how long it stays in memory.

use std::time::Duration;

use crate::error::{ApiError, ApiResult};

/// Limits and timings of the collaboration hub; `codecrafter serve` reads them from the
/// environment (see the README).
#[derive(Clone, Debug)]
pub struct CollabConfig {
    /// Largest update blob `applyUpdate` accepts, in bytes (before base64).
    pub max_update_bytes: usize,
    /// Largest file, in UTF-8 bytes.
    pub max_file_bytes: usize,
    /// Most files in one project.
    pub max_files: usize,
    /// Fold the update log into a snapshot after this many appended updates…
    pub compact_after_updates: u32,
    /// …or once the document has been idle this long. An idle document with nobody
    /// subscribed is also dropped from memory then.
    pub idle_unload: Duration,
    /// Take an automatic checkpoint ("Auto-save") once a changed document has been idle this long.
    pub autosave_idle: Duration,
    /// Remove a client from presence after this long without an update or heartbeat.
    pub presence_ttl: Duration,
    /// How many updates a subscriber may fall behind before it is resynchronised instead.
    pub subscriber_queue: usize,
}

/// Longest path, in bytes.
pub const MAX_PATH_BYTES: usize = 255;

/// A file path: relative, `/`-separated, no empty, `.` or `..` segments, no control
/// characters or backslashes, at most [`MAX_PATH_BYTES`].
pub fn check_path(field: &'static str, path: &str) -> ApiResult<()> {
    let bad = |why: &str| {
        Err(ApiError::bad_input(
            field,
            format!("invalid path {path:?}: {why}"),
        ))
    };
    if path.is_empty() {
        return bad("it is empty");
    }
    if path.len() > MAX_PATH_BYTES {
        return bad("it is longer than 255 bytes");
    }
    if path.starts_with('/') {
        return bad("it must be relative");
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return bad("it contains a control character or a backslash");
    }
    for segment in path.split('/') {
        match segment {
            "" => return bad("it has an empty segment"),
            "." | ".." => return bad("it has a `.` or `..` segment"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for good in [
            "main.py",
            "src/lib.rs",
            "a/b/c.txt",
            ".gitignore",
            "dir/.env",
            "é.txt",
        ] {
            assert!(check_path("path", good).is_ok(), "{good}");
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a/",
            "./a",
            "a\\b",
            "a\nb",
            &long,
        ] {
            assert!(check_path("path", bad).is_err(), "{bad:?}");
        }
    }
}
