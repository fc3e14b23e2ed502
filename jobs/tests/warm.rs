//! Sandboxes started ahead of their runs (`sandbox::Warm`), as a worker uses them. Needs
//! root (cgroups, uids) and bubblewrap, as the workers have. The tests of this file take
//! turns: they count the run directories of this process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use jobs::RunLimits;
use jobs::sandbox::{self, Language, Outcome, RunSpec, Status, Warm};
use tokio::sync::{Mutex, MutexGuard, mpsc, watch};

mod common;

use common::{bwrap, spec};

static TURNS: Mutex<()> = Mutex::const_new(());

async fn turn() -> MutexGuard<'static, ()> {
    TURNS.lock().await
}

fn warm() -> Arc<Warm> {
    Warm::new(bwrap().to_path_buf(), 1)
}

fn python(source: &str) -> RunSpec {
    spec(Language::Python, "main.py", source)
}

/// What a run printed on stdout, byte for byte, and how it ended.
async fn run(warm: &Arc<Warm>, spec: RunSpec) -> (Outcome, Vec<u8>, String) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_cancel, cancel) = watch::channel(false);
    let outcome = warm.run(spec, tx, cancel).await.expect("the sandbox works");
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Ok(chunk) = rx.try_recv() {
        if chunk.stderr {
            stderr.extend(chunk.data);
        } else {
            stdout.extend(chunk.data);
        }
    }
    (
        outcome,
        stdout,
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

async fn until_waiting(warm: &Warm, count: usize) {
    testkit::eventually_some(Duration::from_secs(20), async || {
        (warm.waiting() == count).then_some(())
    })
    .await;
}

/// The host's clock, in the ticks `/proc/<pid>/stat` counts a process's start in.
fn ticks_since_boot() -> u64 {
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap();
    let seconds: f64 = uptime.split_whitespace().next().unwrap().parse().unwrap();
    (seconds * 100.0) as u64
}

/// Prints when the run's PID 1 (its supervisor) started, in ticks since boot.
const SUPERVISOR_STARTED: &str = "print(open('/proc/1/stat').read().rsplit(')', 1)[1].split()[19])";

#[tokio::test]
async fn a_run_takes_the_sandbox_started_ahead_and_finds_nothing_of_the_run_before() {
    let _turn = turn().await;
    let warm = warm();
    let mut first = python(
        "open('/tmp/left-by-first', 'w').write('x')\nopen('/work/made-by-first', 'w').write('x')\nprint('first')",
    );
    first
        .files
        .push(("secret-of-first.txt".into(), b"secret".to_vec()));
    let (outcome, stdout, stderr) = run(&warm, first).await;
    assert_eq!(outcome.status, Status::Succeeded, "{stderr}");
    assert_eq!(stdout, b"first\n");
    // The first run started a sandbox for the next one.
    until_waiting(&warm, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked_at = ticks_since_boot();
    let second = python(&format!(
        "import os\nprint(sorted(os.listdir('/src')), sorted(os.listdir('/work')), sorted(os.listdir('/tmp')))\n{SUPERVISOR_STARTED}"
    ));
    let (outcome, stdout, stderr) = run(&warm, second).await;
    assert_eq!(outcome.status, Status::Succeeded, "{stderr}");
    let stdout = String::from_utf8(stdout).unwrap();
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("['main.py'] ['main.py'] []"),
        "nothing of the first run"
    );
    let supervisor_started: u64 = lines.next().unwrap().parse().unwrap();
    assert!(
        supervisor_started + 20 < asked_at,
        "the second run's sandbox was up before it was asked for ({supervisor_started} against {asked_at} ticks)"
    );
    // And it started the next one's.
    until_waiting(&warm, 1).await;
    warm.close().await;
}

#[tokio::test]
async fn the_program_reads_its_own_input_after_what_the_supervisor_was_told() {
    let _turn = turn().await;
    let warm = warm();
    // Bytes that look like the order's parts: a length and its newline, NULs.
    let input = b"12\n\0python3\0-c\0print(1)\0\n\xff\xfe last line without newline".to_vec();
    let echo = "import sys\nsys.stdout.buffer.write(sys.stdin.buffer.read())";
    for attempt in ["started for it", "started ahead"] {
        let (outcome, stdout, stderr) = run(
            &warm,
            RunSpec {
                stdin: input.clone(),
                ..python(echo)
            },
        )
        .await;
        assert_eq!(outcome.status, Status::Succeeded, "{attempt}: {stderr}");
        assert_eq!(stdout, input, "{attempt}");
        until_waiting(&warm, 1).await;
    }
    warm.close().await;
}

#[tokio::test]
async fn the_time_a_sandbox_waited_is_not_its_runs() {
    let _turn = turn().await;
    let warm = warm();
    let short = |source: &str| RunSpec {
        limits: RunLimits {
            wall_ms: 1_000,
            ..python(source).limits
        },
        ..python(source)
    };
    let (outcome, _, stderr) = run(&warm, short("pass")).await;
    assert_eq!(outcome.status, Status::Succeeded, "{stderr}");
    until_waiting(&warm, 1).await;
    // Longer than the run's whole wall time.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (outcome, stdout, stderr) = run(&warm, short("print('in time')")).await;
    assert_eq!(outcome.status, Status::Succeeded, "{stderr}");
    assert_eq!(stdout, b"in time\n");
    assert!(
        outcome.wall_time < Duration::from_millis(1_000),
        "{:?}",
        outcome.wall_time
    );
    // The limit still holds from the run's start.
    let (outcome, _, _) = run(&warm, short("import time\ntime.sleep(3)")).await;
    assert_eq!(outcome.status, Status::TimedOut);
    warm.close().await;
}

#[tokio::test]
async fn a_run_of_another_language_or_limits_starts_its_own_and_takes_the_place() {
    let _turn = turn().await;
    let warm = warm();
    let (outcome, _, stderr) = run(&warm, python("print(1)")).await;
    assert_eq!(outcome.status, Status::Succeeded, "{stderr}");
    until_waiting(&warm, 1).await;
    let bash = spec(Language::Bash, "main.sh", "echo bash");
    let more_memory = RunSpec {
        limits: RunLimits {
            memory_bytes: 256 * 1024 * 1024,
            ..python("").limits
        },
        ..python("import resource\nprint('more memory')")
    };
    for (other, printed) in [(bash, "bash\n"), (more_memory, "more memory\n")] {
        let (outcome, stdout, stderr) = run(&warm, other).await;
        assert_eq!(outcome.status, Status::Succeeded, "{stderr}");
        assert_eq!(String::from_utf8(stdout).unwrap(), printed);
        // One for the next run like it, in place of the one that waited: never more than kept.
        until_waiting(&warm, 1).await;
    }
    warm.close().await;
}

/// The run directories of this process.
fn run_dirs() -> usize {
    let prefix = format!("codecrafter-run-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .count()
}

#[tokio::test]
async fn closing_stops_the_sandboxes_that_wait_and_starts_no_more() {
    let _turn = turn().await;
    let warm = warm();
    let (outcome, _, stderr) = run(&warm, python("pass")).await;
    assert_eq!(outcome.status, Status::Succeeded, "{stderr}");
    until_waiting(&warm, 1).await;
    // The finished run's is removed after its outcome was told.
    testkit::eventually_some(Duration::from_secs(5), async || {
        (run_dirs() == 1).then_some(())
    })
    .await;
    warm.close().await;
    assert_eq!(warm.waiting(), 0);
    assert_eq!(run_dirs(), 0, "removed with it");
    // A run after closing still runs, in a sandbox of its own, and leaves none waiting.
    let (outcome, _, stderr) = run(&warm, python("pass")).await;
    assert_eq!(outcome.status, Status::Succeeded, "{stderr}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((warm.waiting(), run_dirs()), (0, 0));
}

#[tokio::test]
async fn a_sandbox_that_fits_nothing_refuses_the_run() {
    let _turn = turn().await;
    let sandbox = sandbox::Sandbox::start(bwrap(), Language::Bash, python("").limits).unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let (_cancel, cancel) = watch::channel(false);
    let result = sandbox.run(python("print(1)"), tx, cancel).await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(run_dirs(), 0);
}
