//! A run's output as the worker keeps it for the row and publishes it, numbered.

use realtime::{Bus, RunSignal};
use uuid::Uuid;

use crate::sandbox::OutputChunk;

/// Output kept for the row and numbered as it is published. The sandbox already stops each
/// stream at the run's output limit (and says so in its outcome), which bounds what is kept.
#[derive(Default)]
pub(super) struct Output {
    streams: [Vec<u8>; 2],
    /// Each chunk this attempt took, in order: its stream and where it lies in it.
    chunks: Vec<(bool, std::ops::Range<usize>)>,
    /// The number before this attempt's first chunk.
    base: i64,
}

impl Output {
    /// Output numbered on from `seq` (where an earlier attempt stopped).
    pub fn from_seq(seq: i64) -> Self {
        Self {
            base: seq,
            ..Self::default()
        }
    }

    /// The number of the last chunk taken.
    pub fn seq(&self) -> i64 {
        self.base + self.chunks.len() as i64
    }

    pub fn take(&mut self, bus: &Bus, run: Uuid, chunk: OutputChunk) {
        if chunk.data.is_empty() {
            return;
        }
        let stream = &mut self.streams[usize::from(chunk.stderr)];
        let start = stream.len();
        stream.extend_from_slice(&chunk.data);
        self.chunks.push((chunk.stderr, start..stream.len()));
        bus.publish_run(
            run,
            RunSignal::Output {
                stderr: chunk.stderr,
                seq: self.seq(),
                data: chunk.data,
            },
        );
    }

    /// Publish again every chunk after `after` this attempt has (a follower missed them;
    /// those that have them already skip them by their number).
    pub fn replay(&self, bus: &Bus, run: Uuid, after: i64) {
        let first = usize::try_from(after - self.base).unwrap_or(0);
        for (index, (stderr, range)) in self.chunks.iter().enumerate().skip(first) {
            bus.publish_run(
                run,
                RunSignal::Output {
                    stderr: *stderr,
                    seq: self.base + 1 + index as i64,
                    data: self.streams[usize::from(*stderr)][range.clone()].to_vec(),
                },
            );
        }
    }

    /// The stream as stored: any bytes are safe on both databases (invalid UTF-8 becomes
    /// U+FFFD, and so does NUL, which PostgreSQL's `text` refuses).
    pub fn text(&self, stderr: bool) -> String {
        String::from_utf8_lossy(&self.streams[usize::from(stderr)]).replace('\0', "\u{FFFD}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(stderr: bool, data: &str) -> OutputChunk {
        OutputChunk {
            stderr,
            data: data.as_bytes().to_vec(),
        }
    }

    #[tokio::test]
    async fn a_replay_publishes_the_chunks_after_a_number_again_as_they_were() {
        let bus = Bus::local();
        let run = Uuid::new_v4();
        let mut heard = bus.subscribe_run(run);
        let mut output = Output::from_seq(10);
        for (stderr, data) in [(false, "a"), (true, "b"), (false, ""), (false, "cd")] {
            output.take(&bus, run, chunk(stderr, data));
        }
        assert_eq!(output.seq(), 13);
        assert_eq!(
            (output.text(false), output.text(true)),
            ("acd".into(), "b".into())
        );
        let live: Vec<_> = (0..3).map(|_| heard.try_recv().unwrap()).collect();
        output.replay(&bus, run, 11);
        let again: Vec<_> = (0..2).map(|_| heard.try_recv().unwrap()).collect();
        assert_eq!(again, live[1..]);
        // Before this attempt's first chunk: all of it, nothing it does not have.
        output.replay(&bus, run, 3);
        let all: Vec<_> = (0..3).map(|_| heard.try_recv().unwrap()).collect();
        assert_eq!(all, live);
        output.replay(&bus, run, 13);
        assert!(heard.try_recv().is_err());
    }
}
