//! One writer and many receivers on one document, the way DESIGN.md's peers were measured:
//! starts `codecrafter serve` (embedded mode, a fresh data directory) as a child process,
//! signs up, creates a project, connects the receivers over graphql-ws, then sends edits one
//! at a time over the writer's socket. Reports the server's CPU per delivered update (from
//! /proc), the latency until the first receiver has an edit and until the writer has its
//! answer, and the server's memory per idle connection.
//!
//! `cargo build --release -p codecrafter-api -p codecrafter-bench`
//! `target/release/codecrafter-bench [path/to/codecrafter] [receivers] [edits]`
//! (`BENCH_PIPELINE=1`: the writer sends every edit without waiting for the answers;
//! `BENCH_DOCS=1000`: instead, the memory of 1,000 loaded documents of 10 KiB each)

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt};
use loro::{ExportMode, LoroDoc};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const APPLY: &str = "mutation($p: ID!, $u: Base64!) { applyUpdate(projectId: $p, update: $u, clientId: \"bench\") { seq } }";
const FOLLOW: &str = "subscription($p: ID!) { documentUpdates(projectId: $p) { seq } }";

async fn connect(port: u16, token: &str) -> anyhow::Result<Socket> {
    let mut request = format!("ws://127.0.0.1:{port}/graphql").into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } });
    socket.send(Message::text(init.to_string())).await?;
    loop {
        let Some(frame) = socket.next().await else {
            bail!("closed before connection_ack")
        };
        if let Message::Text(text) = frame?
            && serde_json::from_str::<Value>(&text)?["type"] == "connection_ack"
        {
            return Ok(socket);
        }
    }
}

async fn next_of(socket: &mut Socket, id: &str) -> anyhow::Result<Value> {
    loop {
        let Some(frame) = socket.next().await else {
            bail!("socket closed")
        };
        if let Message::Text(text) = frame? {
            let message: Value = serde_json::from_str(&text)?;
            if message["type"] == "ping" {
                socket
                    .send(Message::text(json!({ "type": "pong" }).to_string()))
                    .await?;
            } else if message["id"] == id && message["type"] == "next" {
                return Ok(message["payload"].clone());
            } else if message["id"] == id && message["type"] == "error" {
                bail!("operation {id} refused: {}", message["payload"]);
            }
        }
    }
}

/// utime + stime of a process, from /proc.
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("VmRSS")?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()?;
    Ok(kb * 1024)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn apply_message(i: usize, project: &str, update: &[u8]) -> Message {
    let message = json!({ "id": format!("w{i}"), "type": "subscribe", "payload": { "query": APPLY, "variables": { "p": project, "u": STANDARD.encode(update) } } });
    Message::text(message.to_string())
}

/// When each edit was sent, how long each took to be answered, and how many were refused.
type Written = (Vec<Instant>, Vec<Duration>, usize);

/// Each edit sent once the previous one is answered.
async fn write_one_by_one(
    mut writer: Socket,
    project: &str,
    updates: Vec<Vec<u8>>,
) -> anyhow::Result<Written> {
    let (mut sent, mut acked) = (Vec::new(), Vec::new());
    for (i, update) in updates.iter().enumerate() {
        let start = Instant::now();
        writer.send(apply_message(i, project, update)).await?;
        sent.push(start);
        let answer = next_of(&mut writer, &format!("w{i}")).await?;
        acked.push(start.elapsed());
        anyhow::ensure!(
            answer.get("errors").is_none(),
            "applyUpdate failed: {answer}"
        );
    }
    Ok((sent, acked, 0))
}

/// Every edit sent at once; the answers are read as they come.
async fn write_pipelined(
    writer: Socket,
    project: &str,
    updates: Vec<Vec<u8>>,
) -> anyhow::Result<Written> {
    let count = updates.len();
    let (mut sink, mut stream) = writer.split();
    let reading = tokio::spawn(async move {
        let mut answered = vec![None; count];
        let mut refused = 0;
        let mut left = count;
        while left > 0 {
            let Some(frame) = stream.next().await else {
                bail!("the writer's socket closed")
            };
            let Message::Text(text) = frame? else {
                continue;
            };
            let message: Value = serde_json::from_str(&text)?;
            let index = message["id"]
                .as_str()
                .and_then(|id| id.strip_prefix('w'))
                .and_then(|i| i.parse::<usize>().ok());
            if let (Some(i), "next") = (index, message["type"].as_str().unwrap_or("")) {
                if message["payload"].get("errors").is_some() {
                    refused += 1;
                }
                if let Some(slot) = answered.get_mut(i) {
                    *slot = Some(Instant::now());
                }
                left -= 1;
            }
        }
        Ok::<_, anyhow::Error>((answered, refused))
    });
    let mut sent = Vec::with_capacity(count);
    for (i, update) in updates.iter().enumerate() {
        sent.push(Instant::now());
        sink.feed(apply_message(i, project, update)).await?;
    }
    sink.flush().await?;
    let (answered, refused) = reading.await??;
    let acked = sent
        .iter()
        .zip(answered)
        .map(|(start, at)| at.map_or(Duration::MAX, |at| at.duration_since(*start)))
        .collect();
    Ok((sent, acked, refused))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .unwrap_or_else(|| "target/release/codecrafter".into());
    let receivers: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    let edits: usize = args.next().map_or(Ok(1000), |a| a.parse())?;

    let data = tempfile::tempdir()?;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let mut command = tokio::process::Command::new(&binary);
    command
        .arg("serve")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("CODECRAFTER_DATA_DIR", data.path())
        .env("RUST_LOG", "warn")
        .env("IN_PROCESS_WORKERS", "false")
        // One account from one address, far past a person's pace (defaults: the README).
        .env("RATE_LIMIT_PER_SECOND", "1000000")
        .env("RATE_LIMIT_BURST", "1000000")
        .env("RATE_LIMIT_WRITES_PER_MINUTE", "1000000")
        .env("RATE_LIMIT_WRITES_BURST", "1000000")
        .env("RATE_LIMIT_UPDATES_PER_SECOND", "1000000")
        .env("RATE_LIMIT_UPDATES_BURST", "1000000");
    // To measure a production-shaped node (PostgreSQL, Redis fan-out), pass these through.
    for name in ["DATABASE_URL", "JWT_SECRET", "REDIS_URL", "REDIS_CHANNEL"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let mut server = command
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {binary}"))?;
    let pid = server.id().context("server pid")?;
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/graphql");
    let gql = |token: Option<String>, query: &'static str, variables: Value| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let mut request = http
                .post(&url)
                .json(&json!({ "query": query, "variables": variables }));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let answer: Value = request.send().await?.json().await?;
            anyhow::ensure!(answer.get("errors").is_none(), "{answer}");
            Ok::<Value, anyhow::Error>(answer["data"].clone())
        }
    };
    let mut ready = false;
    for _ in 0..200 {
        if http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::ensure!(ready, "the server did not start");
    let signed = gql(None, "mutation { signUp(input: {username: \"bench\", email: \"bench@example.com\", password: \"bench-password\"}) { accessToken } }", json!({})).await?;
    let token = signed["signUp"]["accessToken"]
        .as_str()
        .context("token")?
        .to_owned();
    if let Some(count) = std::env::var_os("BENCH_DOCS") {
        let count: usize = count.to_str().context("BENCH_DOCS")?.parse()?;
        let rss_before = rss_bytes(pid)?;
        let content = ("x".repeat(63) + "\n").repeat(10 * 1024 / 64);
        for i in 0..count {
            let created = gql(
                Some(token.clone()),
                "mutation($t: String!) { createProject(input: {title: $t}) { id } }",
                json!({ "t": format!("doc {i}") }),
            )
            .await?;
            // Creating the file loads the document, which stays in memory while not idle.
            gql(
                Some(token.clone()),
                "mutation($p: ID!, $c: String!) { createFile(projectId: $p, path: \"main.py\", content: $c) { size } }",
                json!({ "p": created["createProject"]["id"], "c": content }),
            )
            .await?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let grown = rss_bytes(pid)?.saturating_sub(rss_before);
        println!(
            "{count} loaded documents of {} bytes: server memory +{:.1} MiB ({} KiB each)",
            content.len(),
            grown as f64 / (1024.0 * 1024.0),
            grown / 1024 / count.max(1) as u64
        );
        server.kill().await.ok();
        return Ok(());
    }
    let created = gql(
        Some(token.clone()),
        "mutation { createProject(input: {title: \"bench\"}) { id } }",
        json!({}),
    )
    .await?;
    let project = created["createProject"]["id"]
        .as_str()
        .context("project")?
        .to_owned();

    let rss_before = rss_bytes(pid)?;
    let mut followers = Vec::new();
    for _ in 0..receivers {
        let mut socket = connect(port, &token).await?;
        let subscribe = json!({ "id": "f", "type": "subscribe", "payload": { "query": FOLLOW, "variables": { "p": project } } });
        socket.send(Message::text(subscribe.to_string())).await?;
        next_of(&mut socket, "f").await?; // the catch-up
        followers.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_connection = rss_bytes(pid)?.saturating_sub(rss_before) / receivers.max(1) as u64;

    // Each receiver records when it saw each edit.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    for mut socket in followers {
        let seen = seen_tx.clone();
        tokio::spawn(async move {
            loop {
                let payload = match next_of(&mut socket, "f").await {
                    Ok(payload) => payload,
                    Err(error) => {
                        eprintln!("a receiver stopped: {error}");
                        break;
                    }
                };
                if std::env::var_os("BENCH_DEBUG").is_some() {
                    eprintln!("{payload}");
                }
                if let Some(seq) = payload["data"]["documentUpdates"]["seq"].as_u64() {
                    let _ = seen.send((seq as usize, Instant::now()));
                }
            }
        });
    }
    drop(seen_tx);

    let writer = connect(port, &token).await?;
    let doc = LoroDoc::new();
    let text = doc
        .get_map("files")
        .insert_container("main.py", loro::LoroText::new())?;
    let cpu_before = cpu_time(pid)?;
    // BENCH_PIPELINE=1: the writer sends every edit at once, without waiting for answers (a
    // fast typist on a slow network); otherwise it waits for each answer before the next.
    let pipelined = std::env::var_os("BENCH_PIPELINE").is_some();
    // Each update holds what the previous ones did not (the first, the file's creation too).
    let mut sent_until = loro::VersionVector::default();
    let mut updates = Vec::with_capacity(edits);
    for i in 0..edits {
        text.insert(text.len_unicode(), &format!("{i} "))?;
        doc.commit();
        updates.push(doc.export(ExportMode::updates(&sent_until))?);
        sent_until = doc.oplog_vv();
    }
    let started = Instant::now();
    let (sent, acked, refused) = if pipelined {
        write_pipelined(writer, &project, updates).await?
    } else {
        write_one_by_one(writer, &project, updates).await?
    };
    let writing = started.elapsed();
    let mut acked = acked;
    // Wait until every receiver has every edit.
    let mut first_seen: Vec<Option<Instant>> = vec![None; edits + 2];
    let mut deliveries = 0usize;
    let expected = edits * receivers;
    let deadline = Instant::now() + Duration::from_secs(60);
    while deliveries < expected && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), seen_rx.recv()).await {
            Ok(Some((seq, at))) => {
                deliveries += 1;
                if let Some(slot) = first_seen.get_mut(seq) {
                    slot.get_or_insert(at);
                }
            }
            _ => break,
        }
    }
    let cpu = cpu_time(pid)?.saturating_sub(cpu_before);
    let mut first: Vec<Duration> = first_seen
        .iter()
        .enumerate()
        .filter_map(|(seq, at)| Some(at.as_ref()?.duration_since(*sent.get(seq.checked_sub(1)?)?)))
        .collect();
    first.sort();
    acked.sort();
    println!(
        "receivers: {receivers}, edits: {edits} ({}), delivered: {deliveries}/{expected}",
        if pipelined { "pipelined" } else { "one by one" }
    );
    println!(
        "writer: all {edits} answered in {writing:?} ({:.0} edits/s), refused: {refused}",
        edits as f64 / writing.as_secs_f64()
    );
    println!(
        "server CPU per delivered update: {:.2} µs",
        cpu.as_secs_f64() * 1e6 / deliveries.max(1) as f64
    );
    if !first.is_empty() {
        println!(
            "first receiver latency: p50 {:?}, p99 {:?}",
            percentile(&first, 0.5),
            percentile(&first, 0.99)
        );
    }
    println!(
        "writer ack latency (durable): p50 {:?}, p99 {:?}",
        percentile(&acked, 0.5),
        percentile(&acked, 0.99)
    );
    println!(
        "server memory per idle subscribed connection: {} KiB",
        per_connection / 1024
    );
    server.kill().await.ok();
    Ok(())
}
