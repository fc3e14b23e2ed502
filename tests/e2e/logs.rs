//! The access log and request ids, read from a server process's own stderr (a pipe, as under
//! a process manager or a log collector).

use std::time::Duration;

use codecrafter_tests::serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Not a test: the server `serve_logging` starts, with the logging `main` installs.
#[tokio::test]
#[ignore = "started by serve_logging"]
async fn logging_server_process() {
    if std::env::var_os("CODECRAFTER_TEST_SERVER").is_none() {
        return;
    }
    use clap::Parser;
    let cli = api::Cli::try_parse_from(["codecrafter"]).unwrap();
    api::telemetry::init(&cli.config);
    let app = api::Application::build(&cli.config).await.unwrap();
    println!("listening on {}", app.local_addr().unwrap());
    app.run_until(std::future::pending()).await.unwrap();
}

struct LoggingServer {
    child: tokio::process::Child,
    addr: String,
    stderr: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    _data_dir: tempfile::TempDir,
}

async fn serve_logging(format: &str) -> LoggingServer {
    let data_dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = codecrafter_tests::spawn_server_process(
        "logs::logging_server_process",
        data_dir.path(),
        |command| {
            command
                .env("RUST_LOG", "info")
                .env("LOG_FORMAT", format)
                .stderr(std::process::Stdio::piped());
        },
    )
    .await;
    let addr = addr.to_string();
    let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    LoggingServer {
        child,
        addr,
        stderr,
        _data_dir: data_dir,
    }
}

impl LoggingServer {
    /// The first stderr line holding `mark`.
    async fn line_with(&mut self, mark: &str) -> String {
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = self.stderr.next_line().await.unwrap() {
                assert!(!line.contains('\u{1b}'), "colour codes in a pipe: {line:?}");
                if line.contains(mark) {
                    return line;
                }
            }
            panic!("the server ended before logging {mark}");
        })
        .await
        .unwrap_or_else(|_| panic!("no log line with {mark} within 10 s"))
    }

    async fn post(&self, request_id: Option<&str>) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .post(format!("http://{}/graphql", self.addr))
            .json(&json!({ "query": "query Ping { __typename }", "operationName": "Ping" }));
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        request.send().await.unwrap()
    }
}

#[tokio::test]
async fn each_request_gets_one_access_line_and_a_request_id() {
    let mut server = serve_logging("text").await;
    let answer = server.post(Some("client-chosen-id-42")).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-request-id"], "client-chosen-id-42");
    let line = server.line_with("client-chosen-id-42").await;
    for part in [
        " INFO ",
        "method=POST",
        "path=/graphql",
        "status=200",
        "latency_ms=",
        "operation=\"Ping\"",
    ] {
        assert!(line.contains(part), "{part} missing in {line}");
    }
    // Without one (or with one that is not a sane token) the server makes one.
    let answer = server.post(None).await;
    let made = answer.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made.len(), 32, "{made}");
    server.line_with(&made).await;
    let answer = server.post(Some("bad id\twith spaces")).await;
    let replaced = answer.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(replaced.len(), 32, "{replaced}");
    server.child.kill().await.unwrap();
}

#[tokio::test]
async fn json_access_lines_carry_the_fields() {
    let mut server = serve_logging("json").await;
    server.post(Some("json-request-7")).await;
    let line = server.line_with("json-request-7").await;
    let entry: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["level"], "INFO", "{entry}");
    let fields = &entry["fields"];
    assert_eq!(fields["status"], 200, "{entry}");
    assert_eq!(fields["method"], "POST", "{entry}");
    assert_eq!(fields["operation"], "Ping", "{entry}");
    assert_eq!(fields["request_id"], "json-request-7", "{entry}");
    // The ids of the request's span, though this server exports no traces.
    let hex = |value: &Value, digits: usize| {
        value.as_str().is_some_and(|id| {
            id.len() == digits
                && id.bytes().all(|b| b.is_ascii_hexdigit())
                && id != "0".repeat(digits)
        })
    };
    assert!(hex(&entry["trace_id"], 32), "{entry}");
    assert!(hex(&entry["span_id"], 16), "{entry}");
    server.child.kill().await.unwrap();
}
