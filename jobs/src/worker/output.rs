//! A run's output as the worker keeps it for the row and publishes it, numbered.

use realtime::{Bus, RunSignal};
use uuid::Uuid;

use crate::sandbox::OutputChunk;

/// Output kept for the row and numbered as it is published. The sandbox already stops each
/// stream at the run's output limit (and says so in its outcome).
#[derive(Default)]
pub(super) struct Output {
    streams: [Vec<u8>; 2],
    seq: i64,
}

impl Output {
    /// Output numbered on from `seq` (where an earlier attempt stopped).
    pub fn from_seq(seq: i64) -> Self {
        Self {
            seq,
            ..Self::default()
        }
    }

    /// The number of the last chunk taken.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    pub fn take(&mut self, bus: &Bus, run: Uuid, chunk: OutputChunk) {
        if chunk.data.is_empty() {
            return;
        }
        self.streams[usize::from(chunk.stderr)].extend_from_slice(&chunk.data);
        self.seq += 1;
        bus.publish_run(
            run,
            RunSignal::Output {
                stderr: chunk.stderr,
                seq: self.seq,
                data: chunk.data,
            },
        );
    }

    /// The stream as stored: any bytes are safe on both databases (invalid UTF-8 becomes
    /// U+FFFD, and so does NUL, which PostgreSQL's `text` refuses).
    pub fn text(&self, stderr: bool) -> String {
        String::from_utf8_lossy(&self.streams[usize::from(stderr)]).replace('\0', "\u{FFFD}")
    }
}
