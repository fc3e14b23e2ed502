//! Who the client is (the socket's address, or the one a trusted proxy forwards) and the
//! per-address GCRA budget on `/graphql` (tower-governor), answered as GraphQL clients
//! expect: RATE_LIMITED with `extensions.retryAfter`, HTTP 429 with `Retry-After`.
//!
//! This per-address budget stays per node, even with `REDIS_URL`, unlike the operation
//! budgets and the sign-in slowdown (`schema::shared_limits`): it is the flood guard in front
//! of everything, checked on every request before anything else is done, so it must cost
//! nothing and depend on nothing. A Redis round trip per request would add its latency to
//! every query and edit and make Redis a part of every request's path, while what it guards
//! against (one address flooding) is already bounded per node, so behind N nodes an address
//! gets at most N times this generous budget. The budgets that guard against guessing and
//! spamming (a few per minute, where N times would matter) are the shared ones.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::middleware::NoOpMiddleware;
use schema::budgets::ClientIp;
use tower_governor::GovernorError;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;

/// The socket's peer, put on every request by the server.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// Addresses and ranges whose forwarding headers are believed.
#[derive(Debug, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    pub fn parse(entries: &[String]) -> anyhow::Result<Self> {
        let mut ranges = Vec::new();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let (address, prefix) = match entry.split_once('/') {
                Some((address, prefix)) => (address, Some(prefix)),
                None => (entry, None),
            };
            let address: IpAddr = address
                .parse()
                .with_context(|| format!("TRUSTED_PROXIES: {entry:?} is not an address"))?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(prefix) => prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .with_context(|| format!("TRUSTED_PROXIES: bad prefix in {entry:?}"))?,
            };
            ranges.push((address, prefix));
        }
        Ok(Self(ranges))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0
            .iter()
            .any(|(range, prefix)| match (canonical(*range), ip) {
                (IpAddr::V4(range), IpAddr::V4(ip)) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
                    u32::from(range) & mask == u32::from(ip) & mask
                }
                (IpAddr::V6(range), IpAddr::V6(ip)) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
                    u128::from(range) & mask == u128::from(ip) & mask
                }
                _ => false,
            })
    }
}

/// IPv4 addresses mapped into IPv6 (`::ffff:a.b.c.d`) as the IPv4 they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses a request passed through, nearest last: `Forwarded: for=` if present,
/// else `X-Forwarded-For`.
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let forwarded: Vec<IpAddr> = headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                if !key.eq_ignore_ascii_case("for") {
                    return None;
                }
                let value = value.trim().trim_matches('"');
                // `[v6]:port`, `[v6]`, `v4:port` or `v4`.
                let host = match value.strip_prefix('[') {
                    Some(rest) => rest.split(']').next()?,
                    None => value.split(':').next()?,
                };
                host.parse().ok()
            })
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

/// The client: the peer, unless the peer is a trusted proxy; then the nearest forwarded
/// address that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return peer;
    }
    let chain = forwarded_chain(headers);
    chain
        .iter()
        .rev()
        .copied()
        .map(canonical)
        .find(|ip| !trusted.contains(*ip))
        .or_else(|| chain.first().copied().map(canonical))
        .unwrap_or(peer)
}

/// Middleware: put [`ClientIp`] on the request (for the budgets and the sign-in slowdown).
pub async fn identify(
    State(trusted): State<Arc<TrustedProxies>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(PeerAddr(peer)) = request.extensions().get::<PeerAddr>().copied() {
        let ip = client_ip(peer.ip(), request.headers(), &trusted);
        request.extensions_mut().insert(ClientIp(ip));
    }
    next.run(request).await
}

/// tower-governor's key: the [`ClientIp`] [`identify`] found.
#[derive(Clone, Copy, Debug)]
pub struct ClientIpKey;

impl KeyExtractor for ClientIpKey {
    type Key = IpAddr;

    fn extract<T>(&self, request: &axum::http::Request<T>) -> Result<IpAddr, GovernorError> {
        request
            .extensions()
            .get::<ClientIp>()
            .map(|ip| ip.0)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

pub type Budget = GovernorConfig<ClientIpKey, NoOpMiddleware<governor::clock::QuantaInstant>>;

/// The per-address budget of `/graphql`.
pub fn budget(per_second: u32, burst: u32) -> anyhow::Result<Arc<Budget>> {
    let period = Duration::from_secs(1) / per_second.max(1);
    let config = GovernorConfigBuilder::default()
        .period(period)
        .burst_size(burst.max(1))
        .key_extractor(ClientIpKey)
        .finish()
        .context("RATE_LIMIT_PER_SECOND / RATE_LIMIT_BURST must be positive")?;
    let limiter = config.limiter().clone();
    // Forget addresses whose budget is full again, now and then.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if Arc::strong_count(&limiter) == 1 {
                return;
            }
            limiter.retain_recent();
        }
    });
    Ok(Arc::new(config))
}

/// A refusal as GraphQL clients read it.
pub fn refused(error: GovernorError) -> Response {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => {
            limited_response("address", wait_time.max(1))
        }
        other => {
            tracing::warn!(error = %other, "rate limit check failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// HTTP 429, `Retry-After`, and RATE_LIMITED naming the limit.
pub fn limited_response(limit: &'static str, retry_after: u64) -> Response {
    let error = schema::budgets::refused(limit, Duration::from_secs(retry_after));
    let body = serde_json::json!({ "errors": [error] }).to_string();
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::CONTENT_TYPE, "application/graphql-response+json")],
        body,
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() -> anyhow::Result<()> {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into()])?;
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, 10.1.2.3"),
        );
        let proxy: IpAddr = [10, 9, 9, 9].into();
        let stranger: IpAddr = [198, 51, 100, 4].into();
        assert_eq!(
            client_ip(proxy, &headers, &trusted),
            IpAddr::from([203, 0, 113, 7])
        );
        assert_eq!(client_ip(stranger, &headers, &trusted), stranger);
        headers.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=\"[2001:db8::1]:4711\";proto=https"),
        );
        assert_eq!(
            client_ip(proxy, &headers, &trusted),
            "2001:db8::1".parse::<IpAddr>()?
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        Ok(())
    }
}
