//! Code runs: a trivial Python program from `runCode` to its end, one after another
//! (latency: queue wait, then execution), and many at once (runs per second through the
//! node's in-process workers); beside them the sandbox alone and a bare `bwrap`, both without
//! the queue, the database or GraphQL.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::SinkExt;
use jobs::sandbox::{self, Language, RunSpec};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::server::{Server, Socket, next_message, next_of, percentile, subscribe};

const RUN: &str = "mutation($p: ID!, $s: String!) { runCode(projectId: $p, language: PYTHON, source: $s) { id } }";
const EVENTS: &str = "subscription($p: ID!) { projectEvents(projectId: $p) { __typename ... on RunStarted { run { id } } ... on RunEnded { run { id status } } } }";
const SOURCE: &str = "pass";

fn python_pass() -> RunSpec {
    RunSpec {
        language: Language::Python,
        files: vec![("main.py".into(), SOURCE.into())],
        entry: "main.py".into(),
        stdin: Vec::new(),
        limits: jobs::RunLimits::default(),
    }
}

pub async fn run(binary: &str, sequential: usize, concurrent: usize) -> anyhow::Result<()> {
    let bwrap = Path::new("bwrap");
    let mut bare = Vec::new();
    for _ in 0..sequential {
        let start = Instant::now();
        let status = tokio::process::Command::new(bwrap)
            .args(BARE_BWRAP)
            .args(["python3", "-c", SOURCE])
            .status()
            .await
            .context("bwrap")?;
        anyhow::ensure!(status.success(), "bare bwrap: {status}");
        bare.push(start.elapsed());
    }
    report("bare bwrap python3 -c pass", &mut bare);

    let mut alone = Vec::new();
    for _ in 0..sequential {
        let (output, _) = mpsc::unbounded_channel();
        let (_cancel, cancelled) = watch::channel(false);
        let start = Instant::now();
        let outcome = sandbox::run(bwrap, python_pass(), output, cancelled).await?;
        anyhow::ensure!(outcome.status == sandbox::Status::Succeeded, "{outcome:?}");
        alone.push(start.elapsed());
    }
    report("the sandbox alone (jobs::sandbox::run)", &mut alone);

    // As a worker runs them: each run starts the next one's sandbox (the first has none).
    let warm = sandbox::Warm::new(bwrap.into(), 1);
    let mut ahead = Vec::new();
    for i in 0..=sequential {
        let (output, _) = mpsc::unbounded_channel();
        let (_cancel, cancelled) = watch::channel(false);
        let start = Instant::now();
        let outcome = warm.run(python_pass(), output, cancelled).await?;
        anyhow::ensure!(outcome.status == sandbox::Status::Succeeded, "{outcome:?}");
        if i > 0 {
            ahead.push(start.elapsed());
        }
    }
    warm.close().await;
    report(
        "the sandbox started ahead, runs back to back (jobs::sandbox::Warm)",
        &mut ahead,
    );

    let server = Server::start(
        binary,
        &[
            ("IN_PROCESS_WORKERS", "true"),
            ("RUNS_PER_MINUTE", "1000000"),
        ],
    )
    .await?;
    let token = server.sign_up("bench").await?;
    let project = server.create_project(&token, "bench").await?;
    let mut socket = server.connect(&token).await?;
    socket
        .send(subscribe("e", EVENTS, json!({ "p": project })))
        .await?;
    let (mut waited, mut executed, mut whole) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..sequential {
        let start = Instant::now();
        let id = run_code(&mut socket, &format!("r{i}"), &project).await?;
        let started = until_event(&mut socket, "RunStarted", &id).await?;
        let ended = until_event(&mut socket, "RunEnded", &id).await?;
        waited.push(started - start);
        executed.push(ended - started);
        whole.push(ended - start);
    }
    report("runCode until RunStarted (queue wait)", &mut waited);
    report(
        "RunStarted until RunEnded (sandbox, result row)",
        &mut executed,
    );
    report("runCode until RunEnded", &mut whole);

    let start = Instant::now();
    let mut ids = std::collections::HashSet::new();
    for i in 0..concurrent {
        let message = subscribe(&format!("c{i}"), RUN, json!({ "p": project, "s": SOURCE }));
        socket.feed(message).await?;
    }
    socket.flush().await?;
    // Answers and ends arrive interleaved on the one socket.
    let (mut answered, mut ended) = (0, std::collections::HashSet::new());
    while answered < concurrent || !ids.is_subset(&ended) {
        let (id, payload) = next_message(&mut socket).await?;
        if id == "e" {
            let event = &payload["data"]["projectEvents"];
            if event["__typename"] == "RunEnded" {
                ended.insert(event["run"]["id"].as_str().unwrap_or_default().to_owned());
            }
        } else if id.starts_with('c') {
            answered += 1;
            ids.insert(run_id(&payload)?);
        }
    }
    let took = start.elapsed();
    println!(
        "{concurrent} runs at once: all ended in {took:?}, {:.1} runs/s",
        concurrent as f64 / took.as_secs_f64()
    );
    server.stop().await;
    Ok(())
}

/// What a bare sandbox gives `python3`: its own namespaces, a read-only `/usr`, `/proc`,
/// `/dev`, nothing of the host's files else.
const BARE_BWRAP: &[&str] = &[
    "--unshare-all",
    "--die-with-parent",
    "--ro-bind",
    "/usr",
    "/usr",
    "--symlink",
    "usr/lib",
    "/lib",
    "--symlink",
    "usr/lib64",
    "/lib64",
    "--symlink",
    "usr/bin",
    "/bin",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--clearenv",
];

async fn run_code(socket: &mut Socket, id: &str, project: &str) -> anyhow::Result<String> {
    socket
        .send(subscribe(id, RUN, json!({ "p": project, "s": SOURCE })))
        .await?;
    run_id(&next_of(socket, id).await?)
}

fn run_id(answer: &serde_json::Value) -> anyhow::Result<String> {
    match answer["data"]["runCode"]["id"].as_str() {
        Some(id) => Ok(id.to_owned()),
        None => bail!("runCode failed: {answer}"),
    }
}

/// When the project's event `kind` about run `id` arrived.
async fn until_event(socket: &mut Socket, kind: &str, id: &str) -> anyhow::Result<Instant> {
    loop {
        let event = next_of(socket, "e").await?;
        let event = &event["data"]["projectEvents"];
        if event["__typename"] == kind && event["run"]["id"] == id {
            return Ok(Instant::now());
        }
    }
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort();
    println!(
        "{what}: p50 {:?}, p90 {:?}, min {:?} ({} runs)",
        percentile(times, 0.5),
        percentile(times, 0.9),
        times.first().copied().unwrap_or_default(),
        times.len()
    );
}
