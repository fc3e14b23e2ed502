//! Host uids for runs, leased across every worker process on the host: a uid is a run's while
//! the run holds an exclusive lock on its lock file, and the kernel drops the lock when the
//! holder exits, even by SIGKILL, so a dead worker's uids come free by themselves.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

use super::SandboxError;

const UID_BASE: u32 = 20_000;
const UID_COUNT: u32 = 10_000;

/// A uid leased to one run.
pub struct Uid {
    pub uid: u32,
    _lock: File,
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("codecrafter-uids")
}

impl Uid {
    pub fn take() -> Result<Self, SandboxError> {
        let dir = lock_dir();
        std::fs::create_dir_all(&dir)?;
        super::set_mode(&dir, 0o700)?;
        // Start somewhere random, so concurrent workers rarely try the same files.
        let start = uuid::Uuid::new_v4().as_u128() as u32 % UID_COUNT;
        for step in 0..UID_COUNT {
            let uid = UID_BASE + (start + step) % UID_COUNT;
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("{uid}.lock")))?;
            match file.try_lock() {
                Ok(()) => return Ok(Self { uid, _lock: file }),
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(error)) => return Err(error.into()),
            }
        }
        Err(SandboxError::Start("no free sandbox uid".into()))
    }
}
