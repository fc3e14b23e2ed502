//! The servers under test and how the bench talks to them: `codecrafter serve` as a child
//! process, GraphQL over HTTP and graphql-ws, and what /proc says of the process.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A running `codecrafter serve`, killed when dropped.
pub struct Server {
    child: tokio::process::Child,
    pub pid: u32,
    pub port: u16,
    http: reqwest::Client,
    // Kept until the server is gone.
    _data: tempfile::TempDir,
}

impl Server {
    /// `binary serve` on a free port with a fresh data directory, budgets lifted far past a
    /// person's pace (one account from one address does everything), with `env` on top.
    /// `DATABASE_URL`, `JWT_SECRET`, `REDIS_URL` and `REDIS_CHANNEL` pass through, to measure
    /// a production-shaped node (nodes sharing them are one deployment).
    pub async fn start(binary: &str, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.port()
        };
        // BENCH_SERVER_CPU=0: the server pinned to that CPU (taskset execs it: same pid), so
        // that the load generator, pinned elsewhere, does not compete with it.
        let mut command = match std::env::var("BENCH_SERVER_CPU") {
            Ok(cpu) => {
                let mut taskset = tokio::process::Command::new("taskset");
                taskset.args(["-c", &cpu, binary]);
                taskset
            }
            Err(_) => tokio::process::Command::new(binary),
        };
        command
            .arg("serve")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("CODECRAFTER_DATA_DIR", data.path())
            .env("RUST_LOG", "warn")
            .env("IN_PROCESS_WORKERS", "false")
            .env("RATE_LIMIT_PER_SECOND", "1000000")
            .env("RATE_LIMIT_BURST", "1000000")
            .env("RATE_LIMIT_WRITES_PER_MINUTE", "1000000")
            .env("RATE_LIMIT_WRITES_BURST", "1000000")
            .env("RATE_LIMIT_UPDATES_PER_SECOND", "1000000")
            .env("RATE_LIMIT_UPDATES_BURST", "1000000")
            .env("MAX_CONNECTIONS_PER_IP", "100000");
        for name in ["DATABASE_URL", "JWT_SECRET", "REDIS_URL", "REDIS_CHANNEL"] {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        // The allocator's settings too: memory figures are differences of RSS, honest only
        // with MIMALLOC_PURGE_DELAY=0 (mimalloc otherwise keeps freed memory resident, such
        // as a sign-up's, and what is measured afterwards reuses it).
        for (name, value) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("MIMALLOC_") {
                command.env(name, value);
            }
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {binary}"))?;
        let pid = child.id().context("server pid")?;
        let server = Self {
            child,
            pid,
            port,
            http: reqwest::Client::new(),
            _data: data,
        };
        for _ in 0..200 {
            let health = server.http.get(server.url("/healthz")).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the server did not start")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// One GraphQL operation over HTTP; its `data`, or an error with the answer.
    pub async fn gql(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer: Value = request.send().await?.json().await?;
        anyhow::ensure!(answer.get("errors").is_none(), "{answer}");
        Ok(answer["data"].clone())
    }

    /// A new account's access token.
    pub async fn sign_up(&self, name: &str) -> anyhow::Result<String> {
        let signed = self
            .gql(
                None,
                "mutation($u: String!, $e: String!) { signUp(input: {username: $u, email: $e, password: \"bench-password\"}) { accessToken } }",
                json!({ "u": name, "e": format!("{name}@example.com") }),
            )
            .await?;
        Ok(signed["signUp"]["accessToken"]
            .as_str()
            .context("token")?
            .to_owned())
    }

    /// A new project's id.
    pub async fn create_project(&self, token: &str, title: &str) -> anyhow::Result<String> {
        let created = self
            .gql(
                Some(token),
                "mutation($t: String!) { createProject(input: {title: $t}) { id } }",
                json!({ "t": title }),
            )
            .await?;
        Ok(created["createProject"]["id"]
            .as_str()
            .context("project")?
            .to_owned())
    }

    /// A file of `content` at `path` in the project.
    pub async fn create_file(
        &self,
        token: &str,
        project: &str,
        path: &str,
        content: &str,
    ) -> anyhow::Result<()> {
        self.gql(
            Some(token),
            "mutation($p: ID!, $path: String!, $c: String!) { createFile(projectId: $p, path: $path, content: $c) { size } }",
            json!({ "p": project, "path": path, "c": content }),
        )
        .await?;
        Ok(())
    }

    /// A graphql-ws connection, acknowledged.
    pub async fn connect(&self, token: &str) -> anyhow::Result<Socket> {
        let mut request = format!("ws://127.0.0.1:{}/graphql", self.port).into_client_request()?;
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

    /// utime + stime of the server, from /proc.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("stat")?
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        Ok(Duration::from_millis(ticks * 10))
    }

    /// The server's resident memory, from /proc.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
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

    pub async fn stop(mut self) {
        self.child.kill().await.ok();
    }
}

/// The next `next` payload of operation `id` on `socket` (answering pings on the way,
/// skipping other operations' messages).
pub async fn next_of(socket: &mut Socket, id: &str) -> anyhow::Result<Value> {
    loop {
        let (of, payload) = next_message(socket).await?;
        if of == id {
            return Ok(payload);
        }
    }
}

/// The next `next` message on `socket`: its operation id and payload (answering pings on
/// the way; an operation's `error` is an error).
pub async fn next_message(socket: &mut Socket) -> anyhow::Result<(String, Value)> {
    loop {
        let Some(frame) = socket.next().await else {
            bail!("socket closed")
        };
        if let Message::Text(text) = frame? {
            let mut message: Value = serde_json::from_str(&text)?;
            let id = message["id"].as_str().unwrap_or_default().to_owned();
            match message["type"].as_str() {
                Some("ping") => {
                    socket
                        .send(Message::text(json!({ "type": "pong" }).to_string()))
                        .await?;
                }
                Some("next") => return Ok((id, message["payload"].take())),
                Some("error") => bail!("operation {id} refused: {}", message["payload"]),
                _ => {}
            }
        }
    }
}

/// A subscribe message of operation `id`.
pub fn subscribe(id: &str, query: &str, variables: Value) -> Message {
    let message = json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } });
    Message::text(message.to_string())
}

/// The value at `p` (0..=1) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
