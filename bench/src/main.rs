//! Load generator for CodeCrafter: starts `codecrafter serve` (embedded mode, a fresh data
//! directory; production-shaped with `DATABASE_URL`, `JWT_SECRET`, `REDIS_URL` and
//! `REDIS_CHANNEL` set, which are passed through) as child processes, with the per-user and
//! per-address budgets lifted, and measures one scenario:
//!
//! - default: one writer and N receivers on one document over graphql-ws, the way the peer
//!   servers were measured: server CPU per delivered update (from /proc), latency until the
//!   first and every receiver has an edit and until the writer has its answer, and the
//!   server's memory per idle connection. `BENCH_PIPELINE=1`: the writer sends every edit
//!   without waiting for the answers; `BENCH_PACE=100`: one edit each 10 ms (each still
//!   waiting for its answer); `BENCH_NODES=2`: the receivers on a second node of the same
//!   deployment (needs `DATABASE_URL`, `JWT_SECRET` and `REDIS_URL`); `BENCH_DOC_KIB=100`:
//!   the document holds a file of that size before the receivers subscribe.
//! - `BENCH_DOCS=1000`: the memory of 1,000 loaded documents of 10 KiB each.
//! - `BENCH_QUERIES=200`: `me` and `project(id)` over HTTP from 200 clients for
//!   `BENCH_SECONDS` (10) each: requests per second and latency.
//! - `BENCH_RUNS=50`: a trivial Python run, 50 one after another from `runCode` to its end
//!   (queue wait and execution apart) and 50 at once (runs per second), beside the sandbox
//!   alone and a bare `bwrap`.
//!
//! `cargo build --release -p codecrafter-api -p codecrafter-bench`
//! `target/release/codecrafter-bench [path/to/codecrafter] [receivers] [edits]`

mod documents;
mod fanout;
mod queries;
mod runs;
mod server;

use std::time::Duration;

use anyhow::Context;

use fanout::{Scenario, Writing};
use server::Server;

fn setting(name: &str) -> anyhow::Result<Option<usize>> {
    std::env::var_os(name)
        .map(|value| {
            value
                .to_str()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{name} must be a number"))
        })
        .transpose()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .unwrap_or_else(|| "target/release/codecrafter".into());
    let receivers: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    let edits: usize = args.next().map_or(Ok(1000), |a| a.parse())?;

    if let Some(runs) = setting("BENCH_RUNS")? {
        return runs::run(&binary, runs, runs).await;
    }
    let server = Server::start(&binary, &[]).await?;
    if let Some(count) = setting("BENCH_DOCS")? {
        documents::run(&server, count).await?;
    } else if let Some(clients) = setting("BENCH_QUERIES")? {
        let seconds = setting("BENCH_SECONDS")?.unwrap_or(10);
        queries::run(&server, clients, Duration::from_secs(seconds as u64)).await?;
    } else {
        let writing = match (setting("BENCH_PIPELINE")?, setting("BENCH_PACE")?) {
            (Some(_), _) => Writing::Pipelined,
            (None, Some(per_second)) => Writing::Paced {
                per_second: u32::try_from(per_second)?,
            },
            (None, None) => Writing::OneByOne,
        };
        let scenario = Scenario {
            receivers,
            edits,
            writing,
            content_kib: setting("BENCH_DOC_KIB")?.unwrap_or(0),
        };
        if setting("BENCH_NODES")? == Some(2) {
            let other = Server::start(&binary, &[]).await?;
            fanout::run(&server, &other, scenario).await?;
            other.stop().await;
        } else {
            fanout::run(&server, &server, scenario).await?;
        }
    }
    server.stop().await;
    Ok(())
}
