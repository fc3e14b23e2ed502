//! SIGTERM, as an orchestrator sends it: a server process stops accepting, finishes the
//! request in flight, completes its subscriptions, closes its sockets with 1001, and exits 0.

use std::time::Duration;

use codecrafter_tests::serde_json::json;
use codecrafter_tests::ws::{Event, WsClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Not a test: a server that stops on SIGTERM, as `main` does.
#[tokio::test]
#[ignore = "started by sigterm_drains_requests_and_sockets"]
async fn sigterm_server_process() {
    if std::env::var_os("CODECRAFTER_TEST_SERVER").is_none() {
        return;
    }
    use clap::Parser;
    let cli = api::Cli::try_parse_from(["codecrafter"]).unwrap();
    let app = api::Application::build(&cli.config).await.unwrap();
    println!("listening on {}", app.local_addr().unwrap());
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    app.run_until(async move {
        terminate.recv().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn sigterm_drains_requests_and_sockets() {
    codecrafter_tests::run(codecrafter_tests::Backend::Sqlite, |app| async move {
        let data_dir = tempfile::tempdir().unwrap();
        let (mut child, addr) = codecrafter_tests::spawn_server_process(
            "shutdown::sigterm_server_process",
            data_dir.path(),
            |command| {
                command.env("RUST_LOG", "warn");
            },
        )
        .await;
        let node = app.at(addr);
        let owner = node.sign_up("owner").await;
        let project = node.create_project(&owner, "stopping", false).await;
        let mut follower = WsClient::connect(&node, Some(&owner.access)).await;
        let sub = follower
            .subscribe(
                "subscription($p: ID!) { projectEvents(projectId: $p) { __typename } }",
                json!({ "p": project }),
            )
            .await;
        assert!(follower.is_quiet(&sub, Duration::from_millis(200)).await);

        // A request in flight: its headers are in, its body is still coming. With
        // `expect: 100-continue` the server says so once the handler reads the body.
        let body = json!({ "query": "{ __typename }" }).to_string();
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /graphql HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut interim = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), async {
            while !interim.ends_with(b"\r\n\r\n") {
                interim.push(tcp.read_u8().await.unwrap());
            }
        })
        .await
        .expect("the handler reads the body");
        assert!(interim.starts_with(b"HTTP/1.1 100"), "{}", String::from_utf8_lossy(&interim));
        tcp.write_all(&body.as_bytes()[..5]).await.unwrap();

        let pid = child.id().unwrap().to_string();
        let signalled = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
        assert!(signalled.success());
        // The subscription is completed and the socket closed as going away: the server is
        // stopping.
        assert_eq!(follower.close_code().await, Some(1001));
        assert!(follower.received(&sub).iter().any(|e| matches!(e, Event::Complete)));

        // The request in flight is still answered.
        tcp.write_all(&body.as_bytes()[5..]).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut answer))
            .await
            .expect("the request in flight is answered")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"__typename\":\"Query\""), "{answer}");
        // No new connection is accepted, and the process ends cleanly.
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("the server exits after SIGTERM")
            .unwrap();
        assert!(status.success(), "{status}");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    })
    .await;
}
