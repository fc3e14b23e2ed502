//! Accepting connections: caps per IP and in total, a deadline for a request's headers,
//! and a graceful stop.
//!
//! Written over hyper directly because `axum::serve` offers neither a header read timeout
//! nor a way to refuse a connection: with it, clients that open sockets and send nothing
//! hold descriptors until the process can accept nothing at all.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ConnectionLimits;

/// Descriptors kept back from the connection cap for the database pool, Redis, files and
/// the sandbox's pipes.
const RESERVED_DESCRIPTORS: u64 = 128;
/// How long in-flight requests may take to finish after a stop is asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// The open connections, in total and by client address.
#[derive(Clone)]
pub struct ConnectionCount {
    inner: Arc<Mutex<Counts>>,
    max_total: usize,
    max_per_ip: usize,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Full,
    TooManyFromAddress,
}

/// One accepted connection's place in the count, given back when dropped.
pub struct ConnectionPermit {
    count: ConnectionCount,
    ip: IpAddr,
}

impl ConnectionCount {
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            inner: Arc::default(),
            max_total: max_total.max(1),
            max_per_ip: max_per_ip.max(1),
        }
    }

    pub fn admit(&self, ip: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let mut counts = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.total >= self.max_total {
            return Err(Refusal::Full);
        }
        let from_ip = counts.by_ip.entry(ip).or_default();
        if *from_ip >= self.max_per_ip {
            return Err(Refusal::TooManyFromAddress);
        }
        *from_ip += 1;
        counts.total += 1;
        Ok(ConnectionPermit {
            count: self.clone(),
            ip,
        })
    }

    pub fn open(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self
            .count
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.by_ip.remove(&self.ip);
            }
        }
    }
}

/// The total cap: the configured one, but never more than the descriptors this process may
/// open (raised to the hard limit first).
pub fn connection_cap(limits: &ConnectionLimits) -> usize {
    let descriptors = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read the descriptor limit");
            1024
        }
    };
    let by_descriptors = descriptors.saturating_sub(RESERVED_DESCRIPTORS).max(16);
    let cap = limits
        .max_connections
        .min(usize::try_from(by_descriptors).unwrap_or(usize::MAX));
    if cap < limits.max_connections {
        tracing::info!(
            descriptors,
            cap,
            "the descriptor limit caps connections below MAX_CONNECTIONS"
        );
    }
    cap
}

/// Serve `router` on `listener` until `stop` is cancelled, then let requests in flight
/// finish (at most [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &ConnectionLimits,
    count: ConnectionCount,
    stop: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs.max(1)))
        .keep_alive(true);
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or memory: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match count.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                tokio::spawn(refuse(tcp, peer, refusal));
                continue;
            }
        };
        // Edits are small frames answered at once: Nagle's algorithm would hold each answer
        // back until the client's delayed ACK (~40 ms).
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(
            router
                .clone()
                .layer(axum::Extension(crate::ratelimit::PeerAddr(peer))),
        );
        let connection = http
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        let stop = stop.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stop.cancelled() => {
                    // Finish the request in flight, if any, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(DRAIN, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {DRAIN:?} are dropped");
    }
}

/// Tell a refused client why, in the shape GraphQL clients parse, and close.
async fn refuse(mut tcp: TcpStream, peer: SocketAddr, refusal: Refusal) {
    let (status, message) = match refusal {
        Refusal::Full => (
            "503 Service Unavailable",
            "the server has too many open connections; try again shortly",
        ),
        Refusal::TooManyFromAddress => (
            "429 Too Many Requests",
            "too many open connections from your address; close some and try again",
        ),
    };
    tracing::info!(%peer, ?refusal, "connection refused");
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": "RATE_LIMITED", "retryAfter": 1 } }]
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/graphql-response+json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(answer.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_total() {
        let count = ConnectionCount::new(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = count.admit(a).expect("first");
        let _second = count.admit(a).expect("second");
        assert_eq!(count.admit(a).err(), Some(Refusal::TooManyFromAddress));
        let _third = count.admit(b).expect("another address");
        assert_eq!(count.admit(b).err(), Some(Refusal::Full));
        drop(first);
        assert_eq!(count.open(), 2);
        assert!(count.admit(a).is_ok());
    }
}
