//! Several API nodes when things fail: a writer's node killed at any moment, Redis going away
//! and coming back. Multi-node means PostgreSQL (SQLite is one process's database).

use std::time::{Duration, Instant};

use codecrafter_tests::TestApp;
use serde_json::json;

use crate::documents::{Peer, server_files, team};

fn shared_redis(config: &mut api::Config) {
    config.redis_url = Some(secrecy::SecretString::from("redis://127.0.0.1:6379"));
    config.redis_channel = format!("cc-test-{}", uuid::Uuid::new_v4().simple());
    config.in_process_workers = Some(false);
}

/// A Redis server of the test's own, to stop and start again without disturbing the other
/// tests on the shared one.
struct PrivateRedis {
    port: u16,
    server: Option<tokio::process::Child>,
}

impl PrivateRedis {
    async fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = PrivateRedis { port, server: None };
        redis.up().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn up(&mut self) {
        let server = tokio::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed");
        self.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers().await {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn answers(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut socket) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut answer = [0; 7];
        socket.write_all(b"PING\r\n").await.is_ok()
            && socket.read_exact(&mut answer).await.is_ok()
            && &answer == b"+PONG\r\n"
    }

    async fn down(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.start_kill().unwrap();
            server.wait().await.unwrap();
        }
    }
}

/// `/readyz` of `node`: its HTTP status and body.
async fn readiness(node: &TestApp) -> (u16, serde_json::Value) {
    let answer = node.client.get(node.url("/readyz")).send().await.unwrap();
    (answer.status().as_u16(), answer.json().await.unwrap())
}

/// Wait until `/readyz` of `node` says `status`; it answers 200 all along.
async fn wait_until_ready_is(node: &TestApp, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = readiness(node).await;
        assert_eq!(
            code, 200,
            "a node with its database is ready, Redis or not: {body}"
        );
        if body["status"] == status {
            let redis = if status == "degraded" {
                "unreachable"
            } else {
                "ok"
            };
            assert_eq!(
                (&body["database"], &body["redis"]),
                (&json!("ok"), &json!(redis)),
                "{body}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "readiness stays {body}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `writer` appends `mark` to `a.py`.
async fn write(writer: &mut Peer, mark: &str) {
    writer
        .edit(|p| {
            let text = p.text("a.py");
            text.insert(text.len_unicode(), mark).unwrap();
        })
        .await;
}

/// Wait until `peer`'s copy of `a.py` holds `mark`.
async fn wait_for_mark(peer: &mut Peer, mark: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !peer.text("a.py").to_string().contains(mark) {
        assert!(Instant::now() < deadline, "{mark} never arrived");
        if !peer.ws.is_quiet(&peer.sub, Duration::from_millis(50)).await {
            let event = peer.ws.next(&peer.sub).await;
            peer.import(&event);
        }
    }
}

/// Redis going away degrades the nodes instead of stopping them: they stay ready (saying
/// "degraded"), edits go on, a node starts without Redis; once Redis is back every node
/// reconnects, and what was edited meanwhile reaches the other nodes' subscribers (from the
/// database, on reconnecting).
#[tokio::test]
async fn nodes_survive_redis_going_away_and_catch_up_when_it_returns() {
    let mut redis = PrivateRedis::start().await;
    let url = redis.url();
    let private = &mut redis;
    codecrafter_tests::run_with(
        codecrafter_tests::Backend::Postgres,
        |config| {
            shared_redis(config);
            config.redis_url = Some(secrecy::SecretString::from(url));
        },
        |node_a| async move {
            let redis = private;
            let node_b = node_a.spawn_node().await;
            let team = team(&node_a).await;
            node_a
                .gql_as(
                    &team.owner.access,
                    "mutation($p: ID!) { createFile(projectId: $p, path: \"a.py\") { path } }",
                    json!({ "p": team.project }),
                )
                .await
                .data();
            let mut on_b = Peer::join(&node_b, &team.editor, &team.project, 7).await;
            let mut writer = Peer::join(&node_a, &team.owner, &team.project, 8).await;
            wait_until_ready_is(&node_a, "ready").await;

            redis.down().await;
            wait_until_ready_is(&node_a, "degraded").await;
            wait_until_ready_is(&node_b, "degraded").await;
            let answered = Instant::now();
            write(&mut writer, "<while Redis is down>").await;
            assert!(
                answered.elapsed() < Duration::from_secs(1),
                "an edit waits for an absent Redis"
            );
            // A node starts without Redis, and serves what the database holds.
            let node_c = node_a.spawn_node().await;
            wait_until_ready_is(&node_c, "degraded").await;
            let mut on_c = Peer::join(&node_c, &team.editor, &team.project, 9).await;
            assert!(
                on_c.text("a.py")
                    .to_string()
                    .contains("<while Redis is down>")
            );

            redis.up().await;
            for node in [&node_a, &node_b, &node_c] {
                wait_until_ready_is(node, "ready").await;
            }
            // What node B missed arrives, to its subscribers and its files.
            wait_for_mark(&mut on_b, "<while Redis is down>").await;
            let files = server_files(&node_b, &team.owner.access, &team.project).await;
            assert!(
                files["a.py"]
                    .as_str()
                    .unwrap()
                    .contains("<while Redis is down>"),
                "{files}"
            );
            // Node C, started without Redis, is connected now: live edits reach it.
            write(&mut writer, "<Redis is back>").await;
            wait_for_mark(&mut on_c, "<Redis is back>").await;
            wait_for_mark(&mut on_b, "<Redis is back>").await;
        },
    )
    .await;
    redis.down().await;
}
