//! The HTTP query path: many clients, each sending one query after another over its own
//! keep-alive connection for a while; requests per second and latency percentiles.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::server::{Server, percentile};

/// `clients` clients for `duration`, each query of the list in turn.
pub async fn run(server: &Server, clients: usize, duration: Duration) -> anyhow::Result<()> {
    let token = server.sign_up("bench").await?;
    let project = server.create_project(&token, "bench").await?;
    let queries = [
        ("me", json!({ "query": "{ me { id username } }" })),
        (
            "project(id)",
            json!({ "query": "query($id: ID!) { project(id: $id) { id title } }", "variables": { "id": project } }),
        ),
    ];
    for (name, body) in queries {
        let (count, mut latencies, failed) = load(server, &token, &body, clients, duration).await?;
        latencies.sort();
        println!(
            "{name}: {clients} clients for {duration:?}: {:.0} requests/s, p50 {:?}, p99 {:?}, failed {failed}",
            count as f64 / duration.as_secs_f64(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
        );
    }
    Ok(())
}

/// Requests answered, their latencies, and how many failed.
async fn load(
    server: &Server,
    token: &str,
    body: &Value,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<(usize, Vec<Duration>, usize)> {
    let body = serde_json::to_vec(body)?;
    let url = server.url("/graphql");
    let until = Instant::now() + duration;
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        // A client of its own: one connection each, as wrk's connections.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        let (url, body, auth) = (url.clone(), body.clone(), format!("Bearer {token}"));
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut failed) = (Vec::new(), 0usize);
            while Instant::now() < until {
                let start = Instant::now();
                let answer = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("authorization", &auth)
                    .body(body.clone())
                    .send()
                    .await;
                let ok = match answer {
                    Ok(answer) if answer.status().is_success() => {
                        let bytes = answer.bytes().await.unwrap_or_default();
                        !bytes.windows(9).any(|w| w == b"\"errors\":")
                    }
                    _ => false,
                };
                if ok {
                    latencies.push(start.elapsed());
                } else {
                    failed += 1;
                }
            }
            (latencies, failed)
        }));
    }
    let (mut all, mut failed) = (Vec::new(), 0);
    for task in tasks {
        let (latencies, lost) = task.await.context("a client")?;
        all.extend(latencies);
        failed += lost;
    }
    Ok((all.len(), all, failed))
}
