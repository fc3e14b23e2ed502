//! One writer and many receivers on one document: the writer sends edits over its socket
//! (one by one, paced, or all at once), every receiver records when each arrives.

use std::time::{Duration, Instant};

use anyhow::bail;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt};
use loro::{ExportMode, LoroDoc};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::server::{Server, Socket, next_of, percentile, subscribe};

const APPLY: &str = "mutation($p: ID!, $u: Base64!) { applyUpdate(projectId: $p, update: $u, clientId: \"bench\") { seq } }";
const FOLLOW: &str = "subscription($p: ID!) { documentUpdates(projectId: $p) { update seq } }";

/// How the writer sends.
#[derive(Clone, Copy, Debug)]
pub enum Writing {
    /// Each edit once the previous one is answered.
    OneByOne,
    /// Each edit once the previous one is answered and its slot of `per_second` has come.
    Paced { per_second: u32 },
    /// Every edit at once, without waiting for answers.
    Pipelined,
}

pub struct Scenario {
    pub receivers: usize,
    pub edits: usize,
    pub writing: Writing,
    /// KiB of text the document holds before the receivers subscribe (their catch-ups carry
    /// it; an idle receiver should not keep it).
    pub content_kib: usize,
}

/// The scenario with the writer on `writer_node` and the receivers on `receiver_node` (the
/// same server, or another node of the deployment).
pub async fn run(
    writer_node: &Server,
    receiver_node: &Server,
    scenario: Scenario,
) -> anyhow::Result<()> {
    let Scenario {
        receivers,
        edits,
        writing,
        content_kib,
    } = scenario;
    let token = writer_node.sign_up("bench").await?;
    let project = writer_node.create_project(&token, "bench").await?;
    if content_kib > 0 {
        let text = crate::documents::text_of(content_kib);
        writer_node
            .create_file(&token, &project, "content.txt", &text)
            .await?;
    }
    // The edits' sequence numbers follow the file's creation, one update.
    let before_edits = usize::from(content_kib > 0);
    let nodes = if writer_node.pid == receiver_node.pid {
        vec![writer_node]
    } else {
        vec![writer_node, receiver_node]
    };

    let rss_before = receiver_node.rss_bytes()?;
    let mut followers = Vec::new();
    for _ in 0..receivers {
        let mut socket = receiver_node.connect(&token).await?;
        socket
            .send(subscribe("f", FOLLOW, json!({ "p": project })))
            .await?;
        next_of(&mut socket, "f").await?; // the catch-up
        followers.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_connection =
        receiver_node.rss_bytes()?.saturating_sub(rss_before) / receivers.max(1) as u64;

    // Each receiver records when it saw each edit.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let debug = std::env::var_os("BENCH_DEBUG").is_some();
    let mut receiving = Vec::with_capacity(receivers);
    for mut socket in followers {
        let seen = seen_tx.clone();
        receiving.push(tokio::spawn(async move {
            loop {
                let payload = match next_of(&mut socket, "f").await {
                    Ok(payload) => payload,
                    Err(error) => {
                        eprintln!("a receiver stopped: {error}");
                        break;
                    }
                };
                if debug {
                    eprintln!("{payload}");
                }
                if let Some(seq) = payload["data"]["documentUpdates"]["seq"].as_u64() {
                    let _ =
                        seen.send(((seq as usize).saturating_sub(before_edits), Instant::now()));
                }
            }
        }));
    }
    drop(seen_tx);

    let writer = writer_node.connect(&token).await?;
    let updates = typing(edits)?;
    let cpu_before = cpu_of(&nodes)?;
    let started = Instant::now();
    let (sent, mut acked, refused) = match writing {
        Writing::Pipelined => write_pipelined(writer, &project, updates).await?,
        Writing::OneByOne => write_one_by_one(writer, &project, updates, None).await?,
        Writing::Paced { per_second } => {
            let every = Duration::from_secs(1) / per_second.max(1);
            write_one_by_one(writer, &project, updates, Some(every)).await?
        }
    };
    let writing_took = started.elapsed();
    // Wait until every receiver has every edit.
    let mut first_seen: Vec<Option<Instant>> = vec![None; edits + 2];
    let mut all_seen: Vec<Duration> = Vec::with_capacity(edits * receivers);
    let expected = edits * receivers;
    let deadline = Instant::now() + Duration::from_secs(60);
    while all_seen.len() < expected && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), seen_rx.recv()).await {
            Ok(Some((seq, at))) => {
                if let Some(slot) = first_seen.get_mut(seq) {
                    slot.get_or_insert(at);
                }
                if let Some(start) = seq.checked_sub(1).and_then(|i| sent.get(i)) {
                    all_seen.push(at.duration_since(*start));
                }
            }
            _ => break,
        }
    }
    let cpu = cpu_of(&nodes)?.saturating_sub(cpu_before);
    // Done: the receivers stop before the servers do.
    for receiver in receiving {
        receiver.abort();
    }
    let deliveries = all_seen.len();
    let mut first: Vec<Duration> = first_seen
        .iter()
        .enumerate()
        .filter_map(|(seq, at)| Some(at.as_ref()?.duration_since(*sent.get(seq.checked_sub(1)?)?)))
        .collect();
    first.sort();
    all_seen.sort();
    acked.sort();
    println!(
        "receivers: {receivers}{}, edits: {edits} ({writing:?}), delivered: {deliveries}/{expected}",
        if nodes.len() == 2 {
            " on another node"
        } else {
            ""
        }
    );
    println!(
        "writer: all {edits} answered in {writing_took:?} ({:.0} edits/s), refused: {refused}",
        edits as f64 / writing_took.as_secs_f64()
    );
    println!(
        "server CPU per delivered update{}: {:.2} µs ({:.0} delivered/s)",
        if nodes.len() == 2 {
            " (both nodes)"
        } else {
            ""
        },
        cpu.as_secs_f64() * 1e6 / deliveries.max(1) as f64,
        deliveries as f64 / writing_took.as_secs_f64()
    );
    println!(
        "first receiver latency: p50 {:?}, p99 {:?}; all receivers: p50 {:?}, p99 {:?}",
        percentile(&first, 0.5),
        percentile(&first, 0.99),
        percentile(&all_seen, 0.5),
        percentile(&all_seen, 0.99)
    );
    println!(
        "writer ack latency (durable): p50 {:?}, p99 {:?}",
        percentile(&acked, 0.5),
        percentile(&acked, 0.99)
    );
    println!(
        "server memory per idle subscribed connection{}: {} KiB",
        if content_kib > 0 {
            format!(" (document of {content_kib} KiB)")
        } else {
            String::new()
        },
        per_connection / 1024
    );
    Ok(())
}

fn cpu_of(nodes: &[&Server]) -> anyhow::Result<Duration> {
    nodes.iter().map(|node| node.cpu_time()).sum()
}

/// `edits` updates of someone typing into one file: each holds what the previous ones did
/// not (the first, the file's creation too).
fn typing(edits: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let doc = LoroDoc::new();
    let text = doc
        .get_map("files")
        .insert_container("main.py", loro::LoroText::new())?;
    let mut sent_until = loro::VersionVector::default();
    let mut updates = Vec::with_capacity(edits);
    for i in 0..edits {
        text.insert(text.len_unicode(), &format!("{i} "))?;
        doc.commit();
        updates.push(doc.export(ExportMode::updates(&sent_until))?);
        sent_until = doc.oplog_vv();
    }
    Ok(updates)
}

fn apply_message(i: usize, project: &str, update: &[u8]) -> Message {
    subscribe(
        &format!("w{i}"),
        APPLY,
        json!({ "p": project, "u": STANDARD.encode(update) }),
    )
}

/// When each edit was sent, how long each took to be answered, and how many were refused.
type Written = (Vec<Instant>, Vec<Duration>, usize);

/// Each edit sent once the previous one is answered (and, paced, not before its slot).
async fn write_one_by_one(
    mut writer: Socket,
    project: &str,
    updates: Vec<Vec<u8>>,
    every: Option<Duration>,
) -> anyhow::Result<Written> {
    let (mut sent, mut acked) = (Vec::new(), Vec::new());
    let began = tokio::time::Instant::now();
    for (i, update) in updates.iter().enumerate() {
        if let Some(every) = every {
            tokio::time::sleep_until(began + every * i as u32).await;
        }
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
