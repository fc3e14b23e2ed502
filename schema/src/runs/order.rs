//! A follower's output in order. Output chunks are numbered by the worker; a follower can see
//! a gap: chunks published before it subscribed that the row did not hold yet (the worker
//! writes output to the row at heartbeats), or chunks it lost by falling behind. It holds
//! what comes after a gap, asks the worker to replay what is missing, and hands chunks on in
//! order; if the replay does not come (a worker gone), it goes on without them after a while.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// How long a follower holds output back waiting for a replay.
pub(super) const REPLAY_WAIT: Duration = Duration::from_secs(1);
/// Chunks held back at most: past this the follower goes on without what is missing.
const MOST_HELD: usize = 1024;

/// One chunk of output: its stream (stderr or not) and its bytes.
pub(super) type Chunk = (bool, Vec<u8>);

/// What a follower should do with a chunk it was handed.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Step {
    /// Chunks to pass on now, in order, with their numbers.
    pub ready: Vec<(i64, Chunk)>,
    /// Ask the worker to publish everything after this number again.
    pub replay_after: Option<i64>,
}

pub(super) struct InOrder {
    /// The number of the last chunk passed on.
    seen: i64,
    held: BTreeMap<i64, Chunk>,
    /// Since when chunks are held back (a replay was asked then).
    waiting_since: Option<Instant>,
}

impl InOrder {
    /// A follower that has passed on everything up to `seen`.
    pub fn after(seen: i64) -> Self {
        Self {
            seen,
            held: BTreeMap::new(),
            waiting_since: None,
        }
    }

    /// Chunk `seq` arrived (live or replayed, perhaps twice).
    pub fn take(&mut self, seq: i64, chunk: Chunk) -> Step {
        let mut step = Step::default();
        if seq <= self.seen {
            return step;
        }
        self.held.entry(seq).or_insert(chunk);
        self.pass_on_consecutive(&mut step.ready);
        if self.held.is_empty() {
            self.waiting_since = None;
        } else if self.held.len() > MOST_HELD {
            step.ready.extend(self.give_up());
        } else if self.waiting_since.is_none() {
            self.waiting_since = Some(Instant::now());
            step.replay_after = Some(self.seen);
        }
        step
    }

    /// When to stop waiting for a replay, while chunks are held back.
    pub fn deadline(&self) -> Option<Instant> {
        self.waiting_since.map(|since| since + REPLAY_WAIT)
    }

    /// Everything held back, in order, without what is still missing.
    pub fn give_up(&mut self) -> Vec<(i64, Chunk)> {
        self.waiting_since = None;
        let held = std::mem::take(&mut self.held);
        if let Some(&last) = held.keys().next_back() {
            self.seen = last;
        }
        held.into_iter().collect()
    }

    fn pass_on_consecutive(&mut self, ready: &mut Vec<(i64, Chunk)>) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() != self.seen + 1 {
                break;
            }
            self.seen += 1;
            ready.push((self.seen, entry.remove()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(data: &str) -> Chunk {
        (false, data.as_bytes().to_vec())
    }

    fn numbers(step: &Step) -> Vec<i64> {
        step.ready.iter().map(|(seq, _)| *seq).collect()
    }

    #[tokio::test]
    async fn chunks_in_order_pass_straight_on_and_repeats_are_dropped() {
        let mut order = InOrder::after(2);
        assert_eq!(numbers(&order.take(3, chunk("c"))), [3]);
        assert_eq!(order.take(3, chunk("c")), Step::default());
        assert_eq!(order.take(1, chunk("a")), Step::default());
        assert_eq!(order.deadline(), None);
    }

    #[tokio::test]
    async fn after_a_gap_chunks_wait_for_the_replay_which_is_asked_once() {
        let mut order = InOrder::after(0);
        let step = order.take(3, chunk("c"));
        assert_eq!((numbers(&step), step.replay_after), (vec![], Some(0)));
        assert!(order.deadline().is_some());
        let step = order.take(4, chunk("d"));
        assert_eq!((numbers(&step), step.replay_after), (vec![], None));
        // The replay: 1 and 2, then 3 and 4 again.
        assert_eq!(numbers(&order.take(1, chunk("a"))), [1]);
        let step = order.take(2, chunk("b"));
        assert_eq!(numbers(&step), [2, 3, 4]);
        let data: Vec<u8> = step.ready.into_iter().flat_map(|(_, (_, d))| d).collect();
        assert_eq!(data, b"bcd");
        assert_eq!(order.take(3, chunk("c")), Step::default());
        assert_eq!(order.deadline(), None);
        // A later gap asks again.
        assert_eq!(order.take(7, chunk("g")).replay_after, Some(4));
    }

    #[tokio::test]
    async fn without_a_replay_it_goes_on_with_what_it_has() {
        let mut order = InOrder::after(0);
        order.take(5, chunk("e"));
        order.take(7, chunk("g"));
        let given: Vec<i64> = order.give_up().into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(given, [5, 7]);
        assert_eq!(order.deadline(), None);
        assert_eq!(order.take(6, chunk("f")), Step::default());
        assert_eq!(numbers(&order.take(8, chunk("h"))), [8]);
    }

    #[tokio::test]
    async fn it_holds_back_a_bounded_number_of_chunks() {
        let mut order = InOrder::after(0);
        for seq in 2..=MOST_HELD as i64 + 1 {
            assert!(order.take(seq, chunk("x")).ready.is_empty());
        }
        let step = order.take(MOST_HELD as i64 + 2, chunk("x"));
        assert_eq!(step.ready.len(), MOST_HELD + 1);
        assert_eq!(order.deadline(), None);
    }
}
