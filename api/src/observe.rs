//! What an operator sees of every request: a request id, one access line at info, the HTTP
//! metrics; and the Prometheus recorder behind `/metrics`, for the API and the worker alike.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

/// The header a request id travels in, both ways.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest request id taken from a client; a longer or odd one is replaced.
const MAX_REQUEST_ID: usize = 128;

/// Histogram buckets, in seconds: from a millisecond (an edit) to a minute (a long run).
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The GraphQL operation a response answered, for the access line (set by the handler).
#[derive(Clone, Debug)]
pub struct OperationName(pub String);

struct Recorder {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

/// The process-wide recorder, installed on first use (tests start many servers in one
/// process: they share it).
fn recorder() -> Option<&'static Recorder> {
    static RECORDER: OnceLock<Option<Recorder>> = OnceLock::new();
    RECORDER
        .get_or_init(|| {
            let handle = match PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .and_then(PrometheusBuilder::install_recorder)
            {
                Ok(handle) => handle,
                Err(error) => {
                    tracing::warn!(%error, "cannot install the metrics recorder; /metrics stays empty");
                    return None;
                }
            };
            schema::metrics::describe();
            schema::metrics::register_families();
            let process = metrics_process::Collector::default();
            process.describe();
            Some(Recorder { handle, process })
        })
        .as_ref()
}

/// Install the recorder (call before serving, so the first events are counted).
pub fn install_metrics() {
    let _ = recorder();
}

/// The Prometheus text exposition of every family, process figures read now.
pub fn render_metrics() -> String {
    match recorder() {
        Some(recorder) => {
            recorder.process.collect();
            recorder.handle.render()
        }
        None => String::new(),
    }
}

/// `/metrics` as answered: text format 0.0.4.
pub fn metrics_response(body: String) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// The client's request id if it is a sane one, else a new one.
fn request_id(request: &Request) -> HeaderValue {
    request
        .headers()
        .get(&REQUEST_ID)
        .filter(|value| {
            let bytes = value.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= MAX_REQUEST_ID
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b))
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().simple().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        })
}

/// The request's span: the server side of an HTTP request, continuing the client's trace
/// when it sent a valid W3C `traceparent` (a malformed one is ignored: a new trace).
fn request_span(request: &Request, route: &str, path: &str, id: &str) -> tracing::Span {
    let method = request.method();
    let span = tracing::info_span!(
        "request",
        %method,
        path = %path,
        request_id = %id,
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
    );
    realtime::trace::set_attribute(&span, "http.request.method", method.as_str().to_owned());
    realtime::trace::set_attribute(&span, "http.route", route.to_owned());
    realtime::trace::set_attribute(&span, "url.path", path.to_owned());
    let traceparent = request
        .headers()
        .get(realtime::trace::TRACEPARENT)
        .and_then(|value| value.to_str().ok());
    realtime::trace::continue_trace(&span, traceparent);
    span
}

/// Middleware around every route: request id in and out, a span carrying it, the HTTP
/// metrics, and the access line.
pub async fn access(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&request);
    request.headers_mut().insert(REQUEST_ID.clone(), id.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // A route's pattern (`/graphql`), never the raw path, which a client chooses.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", |matched| match matched.as_str() {
            "/graphql" => "/graphql",
            "/healthz" => "/healthz",
            "/readyz" => "/readyz",
            "/metrics" => "/metrics",
            _ => "other",
        });
    let id_text = id.to_str().unwrap_or_default().to_owned();
    let span = request_span(&request, route, &path, &id_text);
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    realtime::trace::set_attribute(
        &span,
        "http.response.status_code",
        i64::from(status.as_u16()),
    );
    if status.is_server_error() {
        realtime::trace::set_error(&span, status.to_string());
    }
    response.headers_mut().insert(REQUEST_ID.clone(), id);
    schema::metrics::http_request(route, method.as_str(), status.as_u16(), elapsed);
    let operation = response
        .extensions()
        .get::<OperationName>()
        .map(|name| name.0.as_str())
        .unwrap_or("");
    span.in_scope(|| {
        tracing::info!(
            target: "access",
            %method,
            path = %path,
            status = status.as_u16(),
            latency_ms = millis(elapsed),
            operation,
            request_id = %id_text,
            "request"
        );
    });
    response
}

fn millis(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// `codecrafter worker`'s own endpoint, serving until dropped.
pub struct WorkerEndpoint {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WorkerEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve `/metrics` and `/healthz` for `codecrafter worker` on `bind`.
pub async fn serve_worker_endpoint(
    services: crate::startup::WorkerServices,
    bind: std::net::SocketAddr,
) -> anyhow::Result<WorkerEndpoint> {
    use anyhow::Context;
    use axum::routing::get;
    install_metrics();
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("could not listen on {bind} (WORKER_METRICS_BIND)"))?;
    let router = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let services = services.clone();
                async move {
                    schema::metrics::observe_shared(&services.db, &services.bus).await;
                    metrics_response(render_metrics())
                }
            }),
        );
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "worker metrics and health at /metrics and /healthz");
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "the worker's metrics endpoint failed");
        }
    });
    Ok(WorkerEndpoint { addr, task })
}
