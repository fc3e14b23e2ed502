//! Waiting in tests, shared by the sandbox tests of `jobs` (which cannot use the end-to-end
//! harness: it starts servers that depend on `jobs`) and the end-to-end tests: a test waits
//! for a condition it can name, never for a fixed time.

use std::time::Duration;

/// How often a condition is checked again.
const EVERY: Duration = Duration::from_millis(20);

/// Wait until `condition` holds, checking every 20 ms; panics after `deadline`.
pub async fn eventually(deadline: Duration, mut condition: impl AsyncFnMut() -> bool) {
    eventually_some(deadline, async || condition().await.then_some(())).await
}

/// Wait until `probe` yields a value and return it, checking every 20 ms; panics after
/// `deadline`. For conditions that need what they found ("the run once it has ended").
pub async fn eventually_some<T>(
    deadline: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the condition did not hold within {deadline:?}"
        );
        tokio::time::sleep(EVERY).await;
    }
}
