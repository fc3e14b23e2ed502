//! Traces end to end: an OTLP/HTTP receiver inside the test, and an API node and a worker,
//! each the real `codecrafter` binary in a process of its own, exporting to it. One trace
//! runs from a client's `runCode` (its `traceparent` honoured) through the queue to the
//! worker's result, and the API node's JSON logs carry its ids.
//!
//! (Processes of their own: a process installs one global subscriber, and the test binary's
//! other servers export nothing.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;

use codecrafter_tests::serde_json::{Value, json};
use codecrafter_tests::{Backend, TestApp};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use prost::Message as _;
use tokio::io::{AsyncBufReadExt, BufReader};

const RUN: &str = "mutation($p: ID!, $s: String) { runCode(projectId: $p, language: PYTHON, source: $s) { id status } }";
const GET: &str = "query($id: ID!) { run(id: $id) { status stdout } }";

/// The client's trace and its span, as sent in `traceparent`.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// How long exported spans may take to arrive (a loaded machine starts processes slowly).
const WAIT: Duration = Duration::from_secs(60);

/// A span as received, with the service that sent it.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, String>,
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// An OTLP/HTTP (protobuf) trace receiver on a port of its own.
struct Receiver {
    addr: SocketAddr,
    spans: Spans,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let spans = Spans::default();
        let router = axum::Router::new()
            .route("/v1/traces", axum::routing::post(receive))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Receiver { addr, spans, task }
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    /// The environment that points a process's exporter here.
    fn configure(&self, command: &mut tokio::process::Command, service: &str) {
        command
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}", self.addr),
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("OTEL_SERVICE_NAME", service);
    }

    /// The first span `pick` accepts, once it has arrived; the test fails naming `what`
    /// and showing every span received when none does in time.
    async fn span(&self, what: &str, pick: impl Fn(&Received) -> bool) -> Received {
        use futures_util::FutureExt as _;
        let found =
            std::panic::AssertUnwindSafe(codecrafter_tests::eventually_some(WAIT, async || {
                self.spans().into_iter().find(&pick)
            }))
            .catch_unwind()
            .await;
        match found {
            Ok(span) => span,
            Err(_) => panic!("no span {what} arrived; received: {:#?}", self.spans()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

async fn receive(
    State(spans): State<Spans>,
    body: axum::body::Bytes,
) -> impl axum::response::IntoResponse {
    let request = ExportTraceServiceRequest::decode(body).unwrap();
    let mut received = spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                received.push(Received {
                    service: service.clone(),
                    name: span.name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

/// An API node exporting to `receiver`, logging JSON (its stderr lines gathered in `logs`).
async fn spawn_api(
    app: &TestApp,
    data_dir: &std::path::Path,
    receiver: &Receiver,
    logs: Arc<Mutex<Vec<String>>>,
) -> (tokio::process::Child, SocketAddr) {
    use secrecy::ExposeSecret;
    let mut command = app.binary(
        env!("CARGO_BIN_EXE_codecrafter-under-test"),
        "serve",
        data_dir,
    );
    command
        .env(
            "JWT_SECRET",
            app.config.auth.jwt_secret.as_ref().unwrap().expose_secret(),
        )
        .env("BIND", "127.0.0.1:0")
        .env("IN_PROCESS_WORKERS", "false")
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    receiver.configure(&mut command, "codecrafter-api");
    let mut child = command.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            logs.lock().unwrap().push(line);
        }
    });
    let addr = listening(&mut child).await;
    (child, addr)
}

/// The address the `serve` process `child` (its stdout piped) says it listens on.
async fn listening(child: &mut tokio::process::Child) -> SocketAddr {
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            if let Some((_, rest)) = line.split_once("listening on http://") {
                return rest.trim().trim_end_matches("/graphql").parse().unwrap();
            }
        }
        panic!("the API node ended before listening");
    })
    .await
    .expect("the API node listens");
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    addr
}

/// A worker process exporting to `receiver`.
fn spawn_worker(
    app: &TestApp,
    data_dir: &std::path::Path,
    receiver: &Receiver,
) -> tokio::process::Child {
    let mut command = app.binary(
        env!("CARGO_BIN_EXE_codecrafter-under-test"),
        "worker",
        data_dir,
    );
    command
        .env("WORKER_CONCURRENCY", "1")
        .env("WORKER_METRICS_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null());
    receiver.configure(&mut command, "codecrafter-worker");
    command.spawn().unwrap()
}

/// POST `query` to `node` with `headers`.
async fn post(
    node: &TestApp,
    token: &str,
    headers: &[(&str, &str)],
    query: &str,
    variables: Value,
) -> reqwest::Response {
    let mut request = node
        .client
        .post(node.url("/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// Whether `span` descends from the span with id `ancestor`, among `spans`.
fn descends(spans: &[Received], span: &Received, ancestor: &str) -> bool {
    let by_id: HashMap<&str, &Received> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let mut parent = span.parent.as_str();
    for _ in 0..64 {
        if parent == ancestor {
            return true;
        }
        match by_id.get(parent) {
            Some(next) => parent = next.parent.as_str(),
            None => return false,
        }
    }
    false
}

#[tokio::test]
async fn one_trace_runs_from_the_request_to_the_workers_result() {
    let receiver = Receiver::start().await;
    codecrafter_tests::run_with(
        Backend::Postgres,
        |config| {
            codecrafter_tests::use_redis(config);
            config.workers.job_queue = format!("cc-test-runs-{}", uuid::Uuid::new_v4().simple());
            config.workers.in_process = Some(false);
        },
        |app| async move {
            let dir = tempfile::tempdir().unwrap();
            let logs = Arc::new(Mutex::new(Vec::new()));
            let (_api, addr) = spawn_api(&app, dir.path(), &receiver, logs.clone()).await;
            let _worker = spawn_worker(&app, dir.path(), &receiver);
            let node = app.at(addr);
            let owner = app.sign_up("tracer").await;
            let project = app.create_project(&owner, "Traced", false).await;

            // (a) runCode with the client's trace context, to the traced API node.
            let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
            let answer = post(
                &node,
                &owner.access,
                &[
                    ("traceparent", &traceparent),
                    ("x-request-id", "traced-run"),
                ],
                RUN,
                json!({ "p": project, "s": "print('traced')" }),
            )
            .await;
            assert_eq!(answer.status(), 200);
            let answer: Value = answer.json().await.unwrap();
            let id = answer["data"]["runCode"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{answer}"))
                .to_owned();
            let run = codecrafter_tests::eventually_some(WAIT, async || {
                let answer = app.gql_as(&owner.access, GET, json!({ "id": id })).await;
                let run = answer.data()["run"].clone();
                (!matches!(run["status"].as_str(), Some("QUEUED" | "RUNNING"))).then_some(run)
            })
            .await;
            assert_eq!(run["status"], "SUCCEEDED", "{run}");

            let in_trace = |name: &'static str, service: &'static str| {
                move |span: &Received| {
                    span.trace_id == TRACE_ID && span.name == name && span.service == service
                }
            };
            let request = receiver
                .span(
                    "POST /graphql",
                    in_trace("POST /graphql", "codecrafter-api"),
                )
                .await;
            assert_eq!(request.parent, CLIENT_SPAN, "{request:?}");
            assert_eq!(request.attributes["request_id"], "traced-run");
            assert_eq!(request.attributes["http.response.status_code"], "200");
            let operation = receiver
                .span(
                    "mutation runCode",
                    in_trace("mutation runCode", "codecrafter-api"),
                )
                .await;
            assert_eq!(operation.parent, request.span_id, "{operation:?}");
            let enqueue = receiver
                .span("enqueue run", in_trace("enqueue run", "codecrafter-api"))
                .await;
            assert_eq!(enqueue.attributes["run"], id);
            let job = receiver
                .span("run job", in_trace("run job", "codecrafter-worker"))
                .await;
            assert_eq!(job.parent, enqueue.span_id, "{job:?}");
            for name in ["claim run", "sandbox", "finish run"] {
                let step = receiver
                    .span(name, in_trace(name, "codecrafter-worker"))
                    .await;
                assert_eq!(step.parent, job.span_id, "{step:?}");
            }
            let finish = receiver
                .span("finish run", in_trace("finish run", "codecrafter-worker"))
                .await;
            assert_eq!(finish.attributes["status"], "Succeeded", "{finish:?}");
            assert_eq!(finish.attributes["recorded"], "true", "{finish:?}");

            // Database queries and Redis, inside the same trace.
            let spans = receiver.spans();
            let claim = spans
                .iter()
                .find(|s| s.trace_id == TRACE_ID && s.name == "claim run")
                .unwrap();
            assert!(
                spans.iter().any(|s| s.name.starts_with("sea_orm.")
                    && s.parent == claim.span_id
                    && s.attributes
                        .get("db.system")
                        .is_some_and(|db| db == "postgresql")),
                "no query span under the claim: {spans:#?}"
            );
            assert!(
                spans.iter().any(|s| s.name.starts_with("sea_orm.")
                    && s.service == "codecrafter-api"
                    && descends(&spans, s, &operation.span_id)),
                "no query span under the operation"
            );
            // The worker's "finished" goes out through Redis and is delivered on the API node,
            // in the same trace.
            let publish = receiver
                .span("redis publish", |s| {
                    s.trace_id == TRACE_ID
                        && s.name == "redis publish"
                        && s.service == "codecrafter-worker"
                        && descends(&receiver.spans(), s, &finish.span_id)
                })
                .await;
            let delivery = receiver
                .span("redis deliver", |s| {
                    s.name == "redis deliver" && s.parent == publish.span_id
                })
                .await;
            assert_eq!(delivery.service, "codecrafter-api");
            assert_eq!(delivery.trace_id, TRACE_ID);

            // (c) The API node's JSON log lines in the request carry its trace and span ids.
            let logged = codecrafter_tests::eventually_some(WAIT, async || {
                logs.lock().unwrap().iter().find_map(|line| {
                    let entry: Value = serde_json::from_str(line).ok()?;
                    (entry["fields"]["request_id"] == "traced-run").then_some(entry)
                })
            })
            .await;
            assert_eq!(logged["trace_id"], TRACE_ID, "{logged}");
            assert_eq!(logged["span_id"], request.span_id.as_str(), "{logged}");

            // (b) A malformed (or invalid) traceparent is ignored: the request is answered
            // and starts a trace of its own.
            for (n, malformed) in [
                "not-a-traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                // A short trace id (the SDK alone would zero-pad it).
                "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            ]
            .into_iter()
            .enumerate()
            {
                let request_id = format!("malformed-{n}");
                let answer = post(
                    &node,
                    &owner.access,
                    &[("traceparent", malformed), ("x-request-id", &request_id)],
                    "query { me { id } }",
                    json!({}),
                )
                .await;
                assert_eq!(answer.status(), 200, "{malformed}");
                let answer: Value = answer.json().await.unwrap();
                assert!(answer["errors"].is_null(), "{malformed}: {answer}");
                let span = receiver
                    .span(&request_id, |s| {
                        s.attributes.get("request_id") == Some(&request_id)
                    })
                    .await;
                assert_eq!(span.parent, "", "{malformed}: {span:?}");
                assert_ne!(span.trace_id, TRACE_ID);
                assert_ne!(span.trace_id, "0".repeat(32));
            }
        },
    )
    .await;
}

/// With `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` the spans go out over gRPC: the exporter opens an
/// HTTP/2 connection (its preface is the first thing on the wire) to the endpoint. (Whether
/// they arrive whole is the HTTP test's part: both encode the same protobuf messages.)
#[tokio::test]
async fn grpc_is_spoken_when_asked() {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_codecrafter-under-test"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CODECRAFTER_DATA_DIR", dir.path())
        .env("BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{endpoint}"))
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = listening(&mut child).await;
    let answer = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let preface = tokio::time::timeout(WAIT, async {
        let (mut connection, _) = listener.accept().await.unwrap();
        let mut preface = [0u8; 24];
        connection.read_exact(&mut preface).await.unwrap();
        preface
    })
    .await
    .expect("the exporter connects");
    assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
}
