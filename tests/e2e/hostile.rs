//! Hostile and careless clients: documents that ask for unbounded work, connections that
//! never finish or never read, protocol misuse, and updates outside `files`. Each must be
//! refused with a clear error, change nothing, and leave the server serving everyone else.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use codecrafter_tests::ws::{Event, WsClient};
use codecrafter_tests::{Backend, Gql, TestApp, backend_tests, run, run_with};
use loro::{ExportMode, LoroDoc};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const INTROSPECTION: &str = include_str!("introspection.graphql");
const APPLY: &str =
    "mutation($p: ID!, $u: Base64!) { applyUpdate(projectId: $p, update: $u) { seq } }";
const FILES: &str = "query($p: ID!) { files(projectId: $p) { path content } }";
const HEAD: &str = "query($p: ID!) { documentVersion(projectId: $p) { seq versionVector } }";

/// The server still answers an ordinary query.
async fn still_serving(app: &TestApp) {
    let answer = app.gql("{ languages { language } }", json!({})).await;
    assert!(answer.data()["languages"].is_array());
}

fn limit_of(error: &Value) -> &str {
    error["extensions"]["limit"]
        .as_str()
        .unwrap_or_else(|| panic!("no limit in {error}"))
}

async fn post(app: &TestApp, query: &str, variables: Value) -> Gql {
    app.gql(query, variables).await
}

/// POST, GET and WebSocket all refuse `query` for `limit`, before doing any work.
async fn refused_everywhere(app: &TestApp, query: &str, limit: &str) {
    let answer = post(app, query, json!({})).await;
    assert_eq!(
        (answer.code(), limit_of(answer.error())),
        ("BAD_USER_INPUT", limit),
        "POST"
    );
    let get = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", query)])
        .send()
        .await
        .unwrap();
    let answer = Gql::read(get).await;
    assert_eq!(
        (answer.code(), limit_of(answer.error())),
        ("BAD_USER_INPUT", limit),
        "GET"
    );
    let mut ws = WsClient::connect(app, None).await;
    let id = ws.subscribe(query, json!({})).await;
    match ws.next(&id).await {
        Event::Error(errors) => assert_eq!(limit_of(&errors[0]), limit, "WebSocket"),
        other => panic!("expected an error message, got {other:?}"),
    }
}

#[tokio::test]
async fn deep_values_and_fragment_bombs_are_refused_before_any_work() {
    run(Backend::Sqlite, |app| async move {
        let deep = format!("{{ projects(first: 1, after: {}1{}) {{ totalCount }} }}", "[".repeat(1500), "]".repeat(1500));
        refused_everywhere(&app, &deep, "nesting").await;
        let objects = format!("{{ projects(first: 1, after: {}1{}) {{ totalCount }} }}", "{a: ".repeat(1500), "}".repeat(1500));
        refused_everywhere(&app, &objects, "nesting").await;

        let mut bomb = String::from("query { me { ...F24 } }\nfragment F0 on Account { id username }\n");
        for n in 1..=24 {
            bomb.push_str(&format!("fragment F{n} on Account {{ ...F{m} ...F{m} }}\n", m = n - 1));
        }
        refused_everywhere(&app, &bomb, "fields").await;
        let cycle = "{ me { ...A } } fragment A on Account { ...B } fragment B on Account { ...A }";
        refused_everywhere(&app, cycle, "fragmentCycle").await;

        let aliases: String = (0..=100).map(|n| format!("a{n}: languages {{ name }} ")).collect();
        refused_everywhere(&app, &format!("{{ {aliases} }}"), "aliases").await;
        let directives = "@include(if: true) ".repeat(51);
        refused_everywhere(&app, &format!("{{ languages {directives} {{ name }} }}"), "directives").await;
        refused_everywhere(&app, &format!("{{ languages {{ {} }} }}", "name ".repeat(10_001)), "tokens").await;
        let deep_selection = format!("{{ {}name{} }}", "a { ".repeat(13), " }".repeat(13));
        refused_everywhere(&app, &deep_selection, "depth").await;

        // Variables: nesting and size, checked without recursion.
        let mut nested = json!(1);
        for _ in 0..20 {
            nested = json!([nested]);
        }
        let answer = post(&app, "query($v: [String]) { languages { language } }", json!({ "v": nested })).await;
        assert_eq!(limit_of(answer.error()), "variableNesting");
        let huge = "x".repeat(1_500_000);
        let answer = app
            .client
            .post(app.url("/graphql"))
            .json(&json!({ "query": "query($v: String) { languages { language } }", "variables": { "v": huge } }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 413, "the body limit comes first");
        // Far deeper than serde's own limit: a plain refusal, not a crash.
        let raw = format!("{{\"query\":\"{{ languages {{ name }} }}\",\"variables\":{{\"v\":{}1{}}}}}", "[".repeat(5000), "]".repeat(5000));
        let answer = app.client.post(app.url("/graphql")).header("content-type", "application/json").body(raw).send().await.unwrap();
        assert_eq!(answer.status(), 400);
        still_serving(&app).await;
    })
    .await;
}

#[tokio::test]
async fn standard_introspection_is_answered_and_can_be_turned_off() {
    run(Backend::Sqlite, |app| async move {
        let answer = post(&app, INTROSPECTION, json!({})).await;
        let schema = &answer.data()["__schema"];
        assert_eq!(schema["queryType"]["name"], "Query");
        assert_eq!(schema["subscriptionType"]["name"], "Subscription");
        assert_eq!(schema["description"], schema::SCHEMA_DESCRIPTION);
        let types = schema["types"].as_array().unwrap();
        assert!(
            types.iter().any(|t| t["name"] == "Project"
                && t["description"].as_str().is_some_and(|d| !d.is_empty()))
        );
        let mut ws = WsClient::connect(&app, None).await;
        let over_ws = ws.request(INTROSPECTION, json!({})).await;
        assert_eq!(
            over_ws["data"]["__schema"]["queryType"]["name"], "Query",
            "{over_ws}"
        );
        // Introspection's own rule still refuses a fan-out across the whole schema.
        let fan_out =
            "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }";
        assert_eq!(
            limit_of(post(&app, fan_out, json!({})).await.error()),
            "introspectionLists"
        );

        let closed = app.restart_with(|c| c.server.introspection = false).await;
        let answer = post(&closed, INTROSPECTION, json!({})).await;
        assert_eq!(answer.code(), "BAD_USER_INPUT", "{}", answer.body);
        still_serving(&closed).await;
    })
    .await;
}

#[tokio::test]
async fn graphql_ws_misuse_closes_with_the_protocol_codes() {
    run_with(
        Backend::Sqlite,
        |c| {
                c.connections.ws_init_timeout_secs = 1;
                c.connections.ws_ping_interval_secs = 1;
        },
        |app| async move {
        // No connection_init in time: 4408.
        let mut late = WsClient::open(&app).await;
        assert_eq!(late.close_code().await, Some(4408));
        // subscribe before connection_init: 4401.
        let mut eager = WsClient::open(&app).await;
        eager.send(json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ languages { language } }" } })).await;
        assert_eq!(eager.close_code().await, Some(4401));
        // A second connection_init: 4429.
        let mut twice = WsClient::connect(&app, None).await;
        twice.send(json!({ "type": "connection_init" })).await;
        assert_eq!(twice.close_code().await, Some(4429));
        // Not JSON, or not a protocol message: 4400.
        let mut garbage = WsClient::connect(&app, None).await;
        garbage.send(json!({ "type": "nonsense" })).await;
        assert_eq!(garbage.close_code().await, Some(4400));

        // An id already in use: 4409.
        let owner = app.sign_up("owner").await;
        let project = app.create_project(&owner, "ws", false).await;
        let mut dup = WsClient::connect(&app, Some(&owner.access)).await;
        let events = "subscription($p: ID!) { projectEvents(projectId: $p) { __typename } }";
        let payload = json!({ "query": events, "variables": { "p": project } });
        dup.send(json!({ "id": "same", "type": "subscribe", "payload": payload })).await;
        dup.send(json!({ "id": "same", "type": "subscribe", "payload": payload })).await;
        assert_eq!(dup.close_code().await, Some(4409));

        // A subscription that fails validation gets an `error` message, and the socket stays.
        let mut ws = WsClient::connect(&app, Some(&owner.access)).await;
        let id = ws.subscribe("subscription { noSuchField }", json!({})).await;
        assert!(matches!(ws.next(&id).await, Event::Error(_)));
        let answer = ws.request("{ me { username } }", json!({})).await;
        assert_eq!(answer["data"]["me"]["username"], "owner");

        // The server pings; a socket that answers nothing is closed.
        let mut silent = WsClient::connect(&app, None).await;
        assert_eq!(silent.close_code().await, Some(3008));

        // A server shutdown completes the operations, then closes with 1001.
        let mut follower = WsClient::connect(&app, Some(&owner.access)).await;
        let sub = follower.subscribe(events, json!({ "p": project })).await;
        assert!(follower.is_quiet(&sub, Duration::from_millis(200)).await);
        let stopping = tokio::spawn({
            let app = app.clone();
            async move { app.restart().await }
        });
        assert_eq!(follower.close_code().await, Some(1001));
        assert!(follower.received(&sub).iter().any(|e| matches!(e, Event::Complete)));
        let restarted = stopping.await.unwrap();
        still_serving(&restarted).await;
    })
    .await;
}

#[tokio::test]
async fn a_bad_token_at_connection_init_closes_with_4403() {
    run(Backend::Sqlite, |app| async move {
        let mut forged = WsClient::open(&app).await;
        forged.send(json!({ "type": "connection_init", "payload": { "authorization": "Bearer forged" } })).await;
        assert_eq!(forged.close_code().await, Some(4403));
        let expired = app.restart_with(|c| c.auth.access_token_ttl_secs = 0).await;
        let user = expired.sign_up("brief").await;
        let mut late = WsClient::open(&expired).await;
        late.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", user.access) } })).await;
        assert_eq!(late.close_code().await, Some(4403));
    })
    .await;
}

#[tokio::test]
async fn malformed_websocket_handshakes_are_refused_with_a_reason() {
    run(Backend::Sqlite, |app| async move {
        let good = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-protocol", "graphql-transport-ws"),
        ];
        // Each a well-formed request with one part wrong or missing: the status, and the header
        // changed (`None`: left out).
        let cases: [(u16, &str, Option<&str>); 9] = [
            (400, "sec-websocket-protocol", None),
            (400, "sec-websocket-protocol", Some("graphql-ws")),
            (400, "connection", Some("keep-alive")),
            (426, "sec-websocket-version", Some("8")),
            (426, "sec-websocket-version", None),
            (400, "sec-websocket-key", None),
            (400, "sec-websocket-key", Some("c2hvcnQ=")),
            (400, "sec-websocket-key", Some("dGhlIHNhbXBsZSBub25jZQ")),
            (400, "sec-websocket-key", Some("!!!!!!!!!!!!!!!!!!!!!!==")),
        ];
        for (status, changed, value) in cases {
            let mut request = app.client.get(app.url("/graphql"));
            for (name, good_value) in good {
                match (name == changed, value) {
                    (false, _) => request = request.header(name, good_value),
                    (true, Some(value)) => request = request.header(name, value),
                    (true, None) => {}
                }
            }
            let response = request.send().await.unwrap();
            let case = format!("{changed}: {value:?}");
            assert_eq!(response.status().as_u16(), status, "{case}");
            if status == 426 {
                assert_eq!(response.headers()["sec-websocket-version"], "13", "{case}");
            }
            let answer = Gql::read(response).await;
            assert_eq!(answer.code(), "BAD_USER_INPUT", "{case}");
        }
        // The well-formed one is answered as RFC 6455 says (its example key and answer).
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        let mut head = String::from("GET /graphql HTTP/1.1\r\nHost: x\r\n");
        for (name, value) in good {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            tcp.read_exact(&mut byte).await.unwrap();
            answer.push(byte[0]);
        }
        let answer = String::from_utf8(answer).unwrap().to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 101"), "{answer}");
        assert!(
            answer.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
            "{answer}"
        );
        assert!(
            answer.contains("sec-websocket-protocol: graphql-transport-ws\r\n"),
            "{answer}"
        );
        still_serving(&app).await;
    })
    .await;
}

/// Read what the server sends on a raw TCP connection until it closes it (or `within`).
async fn read_until_closed(tcp: &mut TcpStream, within: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 4096];
        loop {
            match tcp.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn slow_and_surplus_connections_are_reclaimed_or_refused() {
    run_with(
        Backend::Sqlite,
        |c| {
            c.connections.header_read_timeout_secs = 1;
            c.connections.max_connections_per_ip = 4;
        },
        |app| async move {
            // Headers never finished: the connection is closed.
            let mut slow = TcpStream::connect(app.addr).await.unwrap();
            slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            assert!(
                read_until_closed(&mut slow, Duration::from_secs(10))
                    .await
                    .is_some(),
                "closed by the server"
            );
            // Nothing sent at all: closed too.
            let mut mute = TcpStream::connect(app.addr).await.unwrap();
            assert!(
                read_until_closed(&mut mute, Duration::from_secs(10))
                    .await
                    .is_some()
            );

            // A fifth connection from one address is refused in words, with Retry-After.
            let mut held = Vec::new();
            for _ in 0..4 {
                let mut tcp = TcpStream::connect(app.addr).await.unwrap();
                // Keep them busy: a request that is answered, on a kept-alive connection.
                tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await
                    .unwrap();
                let mut buffer = [0u8; 512];
                let n = tcp.read(&mut buffer).await.unwrap();
                assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
                held.push(tcp);
            }
            let mut surplus = TcpStream::connect(app.addr).await.unwrap();
            let refusal = read_until_closed(&mut surplus, Duration::from_secs(5))
                .await
                .unwrap();
            assert!(refusal.starts_with("HTTP/1.1 429"), "{refusal}");
            assert!(
                refusal.to_ascii_lowercase().contains("retry-after: 1"),
                "{refusal}"
            );
            assert!(refusal.contains("RATE_LIMITED"), "{refusal}");
            // Their kept-alive connections idle out (header timeout), and room comes back.
            drop(held);
            codecrafter_tests::eventually(Duration::from_secs(10), || async {
                app.client
                    .get(app.url("/healthz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            })
            .await;

            let full = app
                .restart_with(|c| c.connections.max_connections = 2)
                .await;
            let _a = TcpStream::connect(full.addr).await.unwrap();
            let _b = TcpStream::connect(full.addr).await.unwrap();
            let mut third = TcpStream::connect(full.addr).await.unwrap();
            let refusal = read_until_closed(&mut third, Duration::from_secs(5))
                .await
                .unwrap();
            assert!(refusal.starts_with("HTTP/1.1 503"), "{refusal}");
        },
    )
    .await;
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_closed_and_freed() {
    run_with(
        Backend::Sqlite,
        |c| c.connections.ws_stall_timeout_secs = 1,
        |app| async move {
            let owner = app.sign_up("owner").await;
            let project = app.create_project(&owner, "stall", false).await;
            let connections = || {
                app.services
                    .metrics
                    .websocket_connections
                    .load(std::sync::atomic::Ordering::Relaxed)
            };
            let mut reader = WsClient::connect(&app, Some(&owner.access)).await;
            let sub = reader
                .subscribe(
                    "subscription($p: ID!) { documentUpdates(projectId: $p) { update } }",
                    json!({ "p": project }),
                )
                .await;
            assert!(matches!(reader.next(&sub).await, Event::Next(_)));
            assert_eq!(connections(), 1);
            // The reader stops reading; edits of 500 KB each pile up far past the socket buffers.
            let doc = LoroDoc::new();
            let text = doc
                .get_map("files")
                .ensure_mergeable_text("big.txt")
                .unwrap();
            let chunk = "x".repeat(500_000);
            let mut sent = loro::VersionVector::default();
            for n in 0..40 {
                text.delete(0, text.len_unicode()).unwrap();
                text.insert(0, &format!("{n}{chunk}")).unwrap();
                doc.commit();
                let update = doc.export(ExportMode::updates(&sent)).unwrap();
                sent = doc.oplog_vv();
                app.gql_as(
                    &owner.access,
                    APPLY,
                    json!({ "p": project, "u": STANDARD.encode(update) }),
                )
                .await
                .data();
                if connections() == 0 {
                    break;
                }
            }
            codecrafter_tests::eventually(Duration::from_secs(15), || async { connections() == 0 })
                .await;
            drop(reader);
            still_serving(&app).await;
        },
    )
    .await;
}

#[tokio::test]
async fn http_answers_follow_graphql_over_http() {
    run(Backend::Sqlite, |app| async move {
        let ask = |accept: &'static str, query: &'static str| {
            let request = app
                .client
                .post(app.url("/graphql"))
                .json(&json!({ "query": query }));
            async move { request.header("accept", accept).send().await.unwrap() }
        };
        // A document that does not parse or validate: 400 under the GraphQL media type…
        for query in ["{ languages {", "{ noSuchField }"] {
            let answer = ask("application/graphql-response+json", query).await;
            assert_eq!(answer.status(), 400);
            assert_eq!(
                answer.headers()["content-type"],
                "application/graphql-response+json"
            );
            let body: Value = answer.json().await.unwrap();
            assert!(
                body.get("data").is_none() && body["errors"].is_array(),
                "{body}"
            );
            // …and 200 for a client that accepts only application/json.
            let answer = ask("application/json", query).await;
            assert_eq!(answer.status(), 200);
            assert_eq!(answer.headers()["content-type"], "application/json");
        }
        let fine = ask("application/json", "{ languages { language } }").await;
        assert_eq!(
            (
                fine.status().as_u16(),
                fine.headers()["content-type"].to_str().unwrap()
            ),
            (200, "application/json")
        );

        // A non-null root field that fails nulls `data`, as the spec requires.
        let answer = post(
            &app,
            "{ languages { language } me { username } }",
            json!({}),
        )
        .await;
        assert_eq!(answer.body["data"], Value::Null, "{}", answer.body);
        assert_eq!(answer.code(), "UNAUTHENTICATED", "{}", answer.body);

        // Methods: a mutation over GET, and a method /graphql does not serve, both say what is allowed.
        let get = app
            .client
            .get(app.url("/graphql"))
            .query(&[("query", "mutation { signOut }")])
            .send()
            .await
            .unwrap();
        assert_eq!(get.status(), 405);
        assert_eq!(get.headers()["allow"], "POST");
        let put = app.client.put(app.url("/graphql")).send().await.unwrap();
        assert_eq!(put.status(), 405);
        assert!(put.headers()["allow"].to_str().unwrap().contains("POST"));
    })
    .await;
}

backend_tests! {
    async fn updates_may_touch_only_the_files_map(app) {
        let owner = app.sign_up("owner").await;
        let project = app.create_project(&owner, "roots", false).await;
        app.create_file(&owner, &project, "a.py").await;
        let files_before = app.gql_as(&owner.access, FILES, json!({ "p": project })).await.data().clone();
        let updates_before = app.gql_as(&owner.access, "query($p: ID!) { documentVersion(projectId: $p) { seq } }", json!({ "p": project })).await;

        type Make = fn(&LoroDoc);
        let attacks: [(&str, Make); 5] = [
            ("a root text named files", |doc| doc.get_text("files").insert(0, "hidden").unwrap()),
            ("a root map of another name", |doc| doc.get_map("other").insert("k", 1).unwrap()),
            ("a root list", |doc| doc.get_list("files").push(1).unwrap()),
            ("a root tree", |doc| { doc.get_tree("t").create(None).unwrap(); }),
            ("a movable list beside a valid file", |doc| { doc.get_map("files").ensure_mergeable_text("ok.py").unwrap().insert(0, "x").unwrap(); doc.get_movable_list("m").push(1).unwrap(); }),
        ];
        for (what, make) in attacks {
            let doc = LoroDoc::new();
            make(&doc);
            doc.commit();
            let update = doc.export(ExportMode::all_updates()).unwrap();
            let answer = app.gql_as(&owner.access, APPLY, json!({ "p": project, "u": STANDARD.encode(update) })).await;
            assert_eq!(answer.code(), "BAD_USER_INPUT", "{what}: {}", answer.body);
        }
        assert_eq!(app.gql_as(&owner.access, FILES, json!({ "p": project })).await.data(), &files_before);
        let updates_after = app.gql_as(&owner.access, "query($p: ID!) { documentVersion(projectId: $p) { seq } }", json!({ "p": project })).await;
        assert_eq!(updates_after.body, updates_before.body, "nothing was stored");
        // A late subscriber's catch-up holds nothing of them.
        let mut ws = WsClient::connect(&app, Some(&owner.access)).await;
        let sub = ws.subscribe("subscription($p: ID!) { documentUpdates(projectId: $p) { update } }", json!({ "p": project })).await;
        let first = ws.next(&sub).await;
        let doc = LoroDoc::new();
        doc.import(&STANDARD.decode(first.data()["documentUpdates"]["update"].as_str().unwrap()).unwrap()).unwrap();
        let roots = doc.get_deep_value().into_map().unwrap();
        assert_eq!(roots.keys().cloned().collect::<Vec<_>>(), vec!["files".to_string()]);
        assert!(doc.get_text("files").is_empty());
    }
}

/// A small deterministic generator (xorshift64*), so a failing storm can be replayed from
/// its seed; the tests crate needs nothing more random than this.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Between 1 and `max` bytes.
    fn some_bytes(&mut self, max: u64) -> Vec<u8> {
        let n = 1 + self.below(max) as usize;
        self.bytes(n)
    }
}

const TABLES: &[&str] = &[
    "users",
    "refresh_tokens",
    "projects",
    "project_members",
    "document_updates",
    "versions",
    "messages",
    "runs",
    "invites",
];

backend_tests! {
    async fn a_storm_of_malformed_requests_changes_nothing(app) {
        let owner = app.sign_up("owner").await;
        let project = app.create_project(&owner, "target", false).await;
        app.gql_as(&owner.access, "mutation($p: ID!) { createFile(projectId: $p, path: \"main.py\", content: \"print(1)\") { path } }", json!({ "p": project })).await.data();
        let files_before = app.gql_as(&owner.access, FILES, json!({ "p": project })).await.data().clone();
        let head_before = app.gql_as(&owner.access, HEAD, json!({ "p": project })).await.data().clone();
        // Bit-flipped updates may still be valid Loro updates: they go to a scratch project,
        // whose document must stay a well-formed project document whatever they do.
        let scratch = app.create_project(&owner, "scratch", false).await;
        let mut counts_before = Vec::new();
        for table in TABLES {
            counts_before.push(app.count(table).await);
        }
        // Real updates to corrupt: one valid edit, and a snapshot.
        let doc = LoroDoc::new();
        doc.get_map("files").ensure_mergeable_text("other.py").unwrap().insert(0, "x = 1").unwrap();
        doc.commit();
        let valid = doc.export(ExportMode::all_updates()).unwrap();
        let snapshot = doc.export(ExportMode::Snapshot).unwrap();

        let seed = 0x00C0_DEC0_FFEE_u64;
        let slowest = std::sync::Arc::new(std::sync::Mutex::new(Duration::ZERO));
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..8u64 {
            let (app, token, project, scratch, valid, snapshot, slowest) = (app.clone(), owner.access.clone(), project.clone(), scratch.clone(), valid.clone(), snapshot.clone(), slowest.clone());
            tasks.spawn(async move {
                let mut dice = Dice(seed ^ (worker + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                for _ in 0..300 {
                    let started = std::time::Instant::now();
                    let kind = dice.below(10);
                    let request = match kind {
                        0 => {
                            let depth = 33 + dice.below(3000) as usize;
                            json!({ "query": format!("{{ projects(after: {}1{}) {{ totalCount }} }}", "[".repeat(depth), "]".repeat(depth)) })
                        }
                        1 => {
                            let n = 10 + dice.below(20);
                            let mut q = String::from("{ me { ...F0 } } fragment Z on Account { id }\n");
                            for i in 0..n {
                                q.push_str(&format!("fragment F{i} on Account {{ ...F{j} ...F{j} }}\n", j = i + 1));
                            }
                            q.push_str(&format!("fragment F{n} on Account {{ ...Z }}"));
                            json!({ "query": q })
                        }
                        2 => json!({ "query": "query($s: String!) { user(username: $s) { id } }", "variables": { "s": "é".repeat(50_000 + dice.below(100_000) as usize) } }),
                        3 => json!({ "query": APPLY, "variables": { "p": project, "u": String::from_utf8_lossy(&dice.bytes(64)).to_string() } }),
                        4 => json!({ "query": APPLY, "variables": { "p": project, "u": STANDARD.encode(dice.some_bytes(2048)) } }),
                        5 => {
                            let mut flipped = valid.clone();
                            for _ in 0..1 + dice.below(8) {
                                let at = dice.below(flipped.len() as u64) as usize;
                                flipped[at] ^= 1 << dice.below(8);
                            }
                            json!({ "query": APPLY, "variables": { "p": scratch, "u": STANDARD.encode(flipped) } })
                        }
                        6 => json!({ "query": APPLY, "variables": { "p": project, "u": STANDARD.encode(&snapshot) } }),
                        7 => json!({ "query": "{ me { id } }" }),
                        8 => json!({ "query": String::from_utf8_lossy(&dice.some_bytes(512)).to_string() }),
                        _ => json!({ "query": format!("{{ {} }}", "a: me { id } ".repeat(1 + dice.below(300) as usize)) }),
                    };
                    let mut post = app.client.post(app.url("/graphql"));
                    post = match kind {
                        // A forged token, or one signed with another key.
                        7 => post.bearer_auth(format!("eyJhbGciOiJIUzI1NiJ9.{}.{}", STANDARD.encode(dice.bytes(40)), STANDARD.encode(dice.bytes(32)))),
                        _ => post.bearer_auth(&token),
                    };
                    let response = if kind == 8 && dice.below(2) == 0 {
                        // Not even JSON.
                        post.header("content-type", "application/json").body(dice.some_bytes(256)).send().await
                    } else {
                        post.json(&request).send().await
                    };
                    let response = response.expect("the server answers every request");
                    let status = response.status().as_u16();
                    assert!(status < 500, "HTTP {status} for a kind {kind} request");
                    let body = response.text().await.unwrap();
                    if status == 200 {
                        let body: Value = serde_json::from_str(&body).unwrap();
                        if let Some(errors) = body["errors"].as_array() {
                            assert!(errors.iter().all(|e| e["extensions"]["code"].is_string()), "{body}");
                            assert!(!body.to_string().to_lowercase().contains("sqlx"), "{body}");
                        }
                    }
                    let took = started.elapsed();
                    let mut slowest = slowest.lock().unwrap();
                    *slowest = (*slowest).max(took);
                }
            });
        }
        // Garbage on WebSockets alongside: each socket is closed, the server stays.
        let mut dice = Dice(seed);
        for _ in 0..150 {
            let mut ws = WsClient::connect(&app, None).await;
            match dice.below(3) {
                0 => {
                    ws.send_frame(tokio_tungstenite::tungstenite::Message::Binary(dice.some_bytes(300).into())).await;
                    assert_eq!(ws.close_code().await, Some(4400));
                }
                1 => {
                    let text = String::from_utf8_lossy(&dice.some_bytes(300)).to_string();
                    ws.send_frame(tokio_tungstenite::tungstenite::Message::text(text)).await;
                    assert_eq!(ws.close_code().await, Some(4400));
                }
                _ => {
                    let depth = dice.below(5000) as usize;
                    let id = ws.subscribe(&format!("{{ projects(after: {}) {{ totalCount }} }}", "[".repeat(depth)), json!({})).await;
                    assert!(matches!(ws.next(&id).await, Event::Error(_)));
                }
            }
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let slowest = *slowest.lock().unwrap();
        assert!(slowest < Duration::from_secs(5), "the slowest answer took {slowest:?}");

        assert_eq!(app.gql_as(&owner.access, FILES, json!({ "p": project })).await.data(), &files_before);
        assert_eq!(app.gql_as(&owner.access, HEAD, json!({ "p": project })).await.data(), &head_before);
        for (table, before) in TABLES.iter().zip(counts_before) {
            if *table != "document_updates" {
                assert_eq!(app.count(table).await, before, "rows in {table}");
            }
        }
        // The scratch document loads (again, from the database) and holds only texts.
        let app = app.restart().await;
        let scratch_files = app.gql_as(&owner.access, FILES, json!({ "p": scratch })).await;
        assert!(scratch_files.data()["files"].as_array().unwrap().iter().all(|f| f["content"].is_string()));
        still_serving(&app).await;
    }
}

#[tokio::test]
async fn slow_queries_and_slow_requests_are_cut_off() {
    run(Backend::Sqlite, |app| async move {
        // A query that runs longer than QUERY_TIMEOUT_MS is stopped with a clear refusal
        // (90 reads of the database, one after the other on SQLite's one connection).
        let quick = app.restart_with(|c| c.connections.query_timeout_ms = 1).await;
        let reads: String = (0..90).map(|n| format!("p{n}: projects(first: 5) {{ totalCount }} ")).collect();
        let answer = post(&quick, &format!("{{ {reads} }}"), json!({})).await;
        assert_eq!((answer.code(), limit_of(answer.error())), ("BAD_USER_INPUT", "timeout"), "{}", answer.body);

        // A body that never finishes arriving: 408 within the request timeout, in words.
        let slow = app.restart_with(|c| c.connections.request_timeout_secs = 1).await;
        let mut tcp = TcpStream::connect(slow.addr).await.unwrap();
        tcp.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"query\":")
            .await
            .unwrap();
        let answer = read_until_closed(&mut tcp, Duration::from_secs(10)).await.unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("BAD_USER_INPUT"), "{answer}");
        still_serving(&slow).await;
    })
    .await;
}
