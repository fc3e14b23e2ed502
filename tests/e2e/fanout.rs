//! Several API nodes when things fail: a writer's node killed at any moment, Redis going away
//! and coming back. Multi-node means PostgreSQL (SQLite is one process's database).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use codecrafter_tests::{PrivateRedis, TestApp};
use serde_json::json;

use crate::documents::{APPLY, Peer, server_files, team};

fn shared_redis(config: &mut api::Config) {
    config.redis.url = Some(secrecy::SecretString::from("redis://127.0.0.1:6379"));
    config.redis.channel = format!("cc-test-{}", uuid::Uuid::new_v4().simple());
    config.workers.in_process = Some(false);
}

/// Not a test: an API node in a process of its own (`codecrafter serve`, as `main` runs it,
/// configured from the environment), so that a test can kill it with SIGKILL. It prints the
/// address it listens on.
#[tokio::test]
#[ignore = "the entry point of the server processes started by other tests"]
async fn server_process() {
    if std::env::var_os("CODECRAFTER_TEST_SERVER").is_none() {
        return;
    }
    use clap::Parser;
    let cli = api::Cli::try_parse_from(["codecrafter", "serve"]).unwrap();
    let app = api::Application::build(&cli.config).await.unwrap();
    println!("listening on {}", app.local_addr().unwrap());
    app.run_until(std::future::pending()).await.unwrap();
}

/// An API node in its own process, on `app`'s database and Redis.
struct NodeProcess {
    child: tokio::process::Child,
    addr: SocketAddr,
    _data_dir: tempfile::TempDir,
}

impl NodeProcess {
    async fn start(app: &TestApp) -> NodeProcess {
        use secrecy::ExposeSecret;
        let config = &app.config;
        let data_dir = tempfile::tempdir().unwrap();
        let (child, addr) = codecrafter_tests::spawn_server_process(
            "fanout::server_process",
            data_dir.path(),
            |command| {
                command
                    .env(
                        "DATABASE_URL",
                        config.database.url.as_ref().unwrap().expose_secret(),
                    )
                    .env(
                        "JWT_SECRET",
                        config.auth.jwt_secret.as_ref().unwrap().expose_secret(),
                    )
                    .env(
                        "REDIS_URL",
                        config.redis.url.as_ref().unwrap().expose_secret(),
                    )
                    .env("REDIS_CHANNEL", &config.redis.channel)
                    .env("IN_PROCESS_WORKERS", "false")
                    .env("DATABASE_MAX_CONNECTIONS", "2")
                    // The edits come faster than a person's (as for every test server).
                    .env("RATE_LIMIT_PER_SECOND", "10000")
                    .env("RATE_LIMIT_BURST", "100000")
                    .env("RATE_LIMIT_AUTH_BURST", "100000")
                    .env("RATE_LIMIT_WRITES_BURST", "100000")
                    .env("RATE_LIMIT_UPDATES_BURST", "100000")
                    .env("RUST_LOG", "warn");
            },
        )
        .await;
        NodeProcess {
            child,
            addr,
            _data_dir: data_dir,
        }
    }

    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// Whether `text` holds every one of `marks`.
fn holds_all(text: &str, marks: &[String]) -> bool {
    marks.iter().all(|mark| text.contains(mark.as_str()))
}

/// The writer's node is killed with SIGKILL at a random moment while it answers edits, over
/// and over: every edit it acknowledged reaches the subscribers of the other node and that
/// node's `files` within a few seconds (it is handed to Redis before the answer; what Redis
/// never got is found by the other node's head check against the database).
#[tokio::test]
async fn acknowledged_edits_survive_the_writers_node_being_killed() {
    codecrafter_tests::run_with(
        codecrafter_tests::Backend::Postgres,
        shared_redis,
        |node_b| async move {
            let team = team(&node_b).await;
            node_b.create_file(&team.owner, &team.project, "a.py").await;
            let mut observer = Peer::join(&node_b, &team.editor, &team.project, 7).await;
            let mut acknowledged: Vec<String> = Vec::new();
            let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
            let mut random = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            let started = Instant::now();
            // The next writer's node starts while the current one is in use.
            let mut spare = tokio::spawn(NodeProcess::start_owned(node_b.clone()));
            let cycles = 25;
            for cycle in 0..cycles {
                let node_a = spare.await.unwrap();
                spare = tokio::spawn(NodeProcess::start_owned(node_b.clone()));
                let on_a = node_b.at(node_a.addr);
                let mut writer =
                    Peer::join(&on_a, &team.owner, &team.project, 1000 + cycle).await;
                // Edits as fast as answers come, until the node dies under them.
                let kill_after = Duration::from_millis(50 + random() % 300);
                let project = team.project.clone();
                let writing = async {
                    let mut acked = Vec::new();
                    for n in 0.. {
                        let mark = format!("<{cycle}:{n}>");
                        let before = writer.doc.oplog_vv();
                        let text = writer.text("a.py");
                        text.insert(text.len_unicode(), &mark).unwrap();
                        writer.doc.commit();
                        let update = writer.doc.export(loro::ExportMode::updates(&before)).unwrap();
                        let answer = writer
                            .ws
                            .try_request(
                                APPLY,
                                json!({ "p": project, "u": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, update), "c": writer.name }),
                            )
                            .await;
                        match answer {
                            Some(answer) if answer.get("errors").is_none() => acked.push(mark),
                            Some(answer) => panic!("edit refused: {answer}"),
                            None => break,
                        }
                    }
                    acked
                };
                let killing = async {
                    tokio::time::sleep(kill_after).await;
                    node_a.kill().await;
                };
                let (acked, ()) = tokio::join!(writing, killing);
                acknowledged.extend(acked);
                // Every acknowledged edit reaches node B's subscriber and node B's files.
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    let seen = observer.text("a.py").to_string();
                    if holds_all(&seen, &acknowledged) {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "cycle {cycle}: node B's subscriber lacks acknowledged edits {:?}",
                        acknowledged
                            .iter()
                            .filter(|m| !seen.contains(m.as_str()))
                            .collect::<Vec<_>>()
                    );
                    if !observer.ws.is_quiet(&observer.sub, Duration::from_millis(50)).await {
                        let event = observer.ws.next(&observer.sub).await;
                        observer.import(&event);
                    }
                }
                let files = server_files(&node_b, &team.owner.access, &team.project).await;
                assert!(
                    holds_all(files["a.py"].as_str().unwrap(), &acknowledged),
                    "cycle {cycle}: node B's files lack acknowledged edits"
                );
            }
            spare.await.unwrap().kill().await;
            // Edits stored but never answered (their node died in between) reach node B too:
            // it ends holding what a node loading from the database holds.
            let fresh = node_b.spawn_node().await;
            let stored = server_files(&fresh, &team.owner.access, &team.project).await;
            codecrafter_tests::eventually(Duration::from_secs(5), async || {
                server_files(&node_b, &team.owner.access, &team.project).await == stored
            })
            .await;
            eprintln!(
                "{cycles} kills, {} acknowledged edits, {:.1} s",
                acknowledged.len(),
                started.elapsed().as_secs_f64()
            );
            assert!(
                acknowledged.len() >= cycles as usize / 2,
                "too few edits got through to test anything"
            );
        },
    )
    .await;
}

impl NodeProcess {
    async fn start_owned(app: TestApp) -> NodeProcess {
        Self::start(&app).await
    }
}

/// `/readyz` of `node`: its HTTP status and body.
async fn readiness(node: &TestApp) -> (u16, serde_json::Value) {
    let answer = node.client.get(node.url("/readyz")).send().await.unwrap();
    (answer.status().as_u16(), answer.json().await.unwrap())
}

/// Wait until `/readyz` of `node` says `status`; it answers 200 all along.
async fn wait_until_ready_is(node: &TestApp, status: &str) {
    let body = codecrafter_tests::eventually_some(Duration::from_secs(15), async || {
        let (code, body) = readiness(node).await;
        assert_eq!(
            code, 200,
            "a node with its database is ready, Redis or not: {body}"
        );
        (body["status"] == status).then_some(body)
    })
    .await;
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
/// database, on reconnecting: the periodic head check is off here).
#[tokio::test]
async fn nodes_survive_redis_going_away_and_catch_up_when_it_returns() {
    let mut redis = PrivateRedis::start().await;
    let url = redis.url();
    let private = &mut redis;
    codecrafter_tests::run_with(
        codecrafter_tests::Backend::Postgres,
        |config| {
            shared_redis(config);
            config.redis.url = Some(secrecy::SecretString::from(url));
            config.documents.head_check_ms = 0;
        },
        |node_a| async move {
            let redis = private;
            let node_b = node_a.spawn_node().await;
            let team = team(&node_a).await;
            node_a.create_file(&team.owner, &team.project, "a.py").await;
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

/// Workers on the Redis queue stop when Redis goes away (apalis gives up on a failed poll);
/// they start again and take runs once it is back.
#[tokio::test]
async fn workers_take_runs_again_once_redis_is_back() {
    let mut redis = PrivateRedis::start().await;
    let url = redis.url();
    let private = &mut redis;
    codecrafter_tests::run_with(
        codecrafter_tests::Backend::Postgres,
        |config| {
            shared_redis(config);
            config.redis.url = Some(secrecy::SecretString::from(url));
            config.workers.in_process = Some(true);
        },
        |app| async move {
            let redis = private;
            let owner = app.sign_up("owner").await;
            let project = app.create_project(&owner, "runs", false).await;
            let run = crate::runs::python(&app, &owner, &project, "print(1)").await;
            assert_eq!(run["status"], "SUCCEEDED", "{run}");
            redis.down().await;
            wait_until_ready_is(&app, "degraded").await;
            redis.up().await;
            wait_until_ready_is(&app, "ready").await;
            let run = crate::runs::python(&app, &owner, &project, "print(2)").await;
            assert_eq!(
                (&run["status"], &run["stdout"]),
                (&json!("SUCCEEDED"), &json!("2\n")),
                "{run}"
            );
        },
    )
    .await;
}
