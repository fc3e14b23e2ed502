//! Presence over real WebSockets: who is online, where their cursor is, expiry of silent
//! clients, clients leaving with their socket, access rules, and two nodes sharing presence
//! through Redis.

use codecrafter_tests::ws::{Event, WsClient};
use codecrafter_tests::{Backend, TestApp, TestUser, backend_tests};
use serde_json::{Value, json};

const WATCH: &str = "subscription($p: ID!, $c: String) { presence(projectId: $p, clientId: $c) { user { username } clientId file cursor selection { anchor head } typing color updatedAt } }";
const UPDATE: &str = "mutation($p: ID!, $c: String!, $f: String, $cur: Int, $sel: SelectionInput, $typing: Boolean) { updatePresence(projectId: $p, clientId: $c, file: $f, cursor: $cur, selection: $sel, typing: $typing) }";

/// `updatePresence` over HTTP with `fields` (file, cursor, sel, typing) added to the variables.
async fn update(
    app: &TestApp,
    user: &TestUser,
    project: &str,
    client: &str,
    fields: Value,
) -> codecrafter_tests::Gql {
    let mut variables = json!({ "p": project, "c": client });
    variables
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    app.gql_as(&user.access, UPDATE, variables).await
}

/// The list a presence event carries.
fn list(event: &Event) -> Vec<Value> {
    event.data()["presence"].as_array().unwrap().clone()
}

/// The client ids in a list, sorted.
fn clients(list: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = list
        .iter()
        .map(|e| e["clientId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn entry<'a>(list: &'a [Value], client: &str) -> &'a Value {
    list.iter()
        .find(|e| e["clientId"] == client)
        .unwrap_or_else(|| panic!("{client} is not in {list:?}"))
}

/// Read lists from `sub` until one satisfies `done`; returns it. Each list must be well
/// formed. Panics (after the client's wait) when none comes.
async fn wait_for(ws: &mut WsClient, sub: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    loop {
        let event = ws.next(sub).await;
        let list = list(&event);
        for e in &list {
            let color = e["color"].as_str().unwrap();
            assert!(
                color.len() == 7
                    && color.starts_with('#')
                    && color[1..].chars().all(|c| c.is_ascii_hexdigit()),
                "{color}"
            );
            assert!(e["updatedAt"].is_string());
        }
        if done(&list) {
            return list;
        }
    }
}

fn has(ids: &[&str]) -> impl Fn(&[Value]) -> bool {
    let mut wanted: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    wanted.sort();
    move |list| clients(list) == wanted
}

backend_tests! {
    async fn two_clients_see_each_other(app) {
        let ann = app.sign_up("ann").await;
        let bob = app.sign_up("bob").await;
        let project = app.create_project(&ann, "Here", false).await;
        app.add_member(&ann, &project, &bob, "VIEWER").await;

        let mut ann_ws = WsClient::connect(&app, Some(&ann.access)).await;
        let ann_sub = ann_ws.subscribe(WATCH, json!({ "p": project, "c": "ann-tab" })).await;
        assert_eq!(list(&ann_ws.next(&ann_sub).await), Vec::<Value>::new());
        let mut bob_ws = WsClient::connect(&app, Some(&bob.access)).await;
        let bob_sub = bob_ws.subscribe(WATCH, json!({ "p": project, "c": "bob-tab" })).await;
        bob_ws.next(&bob_sub).await;

        // Over the same socket, as an editor would.
        let answer = ann_ws
            .request(UPDATE, json!({ "p": project, "c": "ann-tab", "f": "src/main.py", "cur": 7, "sel": { "anchor": 3, "head": 7 }, "typing": true }))
            .await;
        assert_eq!(answer["data"]["updatePresence"], true, "{answer}");
        let answer = bob_ws.request(UPDATE, json!({ "p": project, "c": "bob-tab", "f": "README.md", "cur": 0 })).await;
        assert_eq!(answer["data"]["updatePresence"], true, "{answer}");

        let seen_by_ann = wait_for(&mut ann_ws, &ann_sub, has(&["ann-tab", "bob-tab"])).await;
        let seen_by_bob = wait_for(&mut bob_ws, &bob_sub, has(&["ann-tab", "bob-tab"])).await;
        assert_eq!(seen_by_ann, seen_by_bob);
        let ann_entry = entry(&seen_by_ann, "ann-tab");
        assert_eq!(ann_entry["user"]["username"], "ann");
        assert_eq!(ann_entry["file"], "src/main.py");
        assert_eq!(ann_entry["cursor"], 7);
        assert_eq!(ann_entry["selection"], json!({ "anchor": 3, "head": 7 }));
        assert_eq!(ann_entry["typing"], true);
        let bob_entry = entry(&seen_by_ann, "bob-tab");
        assert_eq!(bob_entry["user"]["username"], "bob");
        assert_eq!(bob_entry["file"], "README.md");
        assert_eq!(bob_entry["cursor"], 0);
        assert_eq!(bob_entry["selection"], Value::Null);
        assert_eq!(bob_entry["typing"], false);

        // A second tab of Ann's has Ann's colour.
        update(&app, &ann, &project, "ann-tab-2", json!({})).await.data();
        let three = wait_for(&mut bob_ws, &bob_sub, has(&["ann-tab", "ann-tab-2", "bob-tab"])).await;
        assert_eq!(entry(&three, "ann-tab-2")["color"], entry(&three, "ann-tab")["color"]);
        assert_eq!(entry(&three, "ann-tab-2")["file"], Value::Null);

        // Moves reach the others.
        update(&app, &bob, &project, "bob-tab", json!({ "f": "README.md", "cur": 12 })).await.data();
        let moved = wait_for(&mut ann_ws, &ann_sub, |l| l.len() == 3 && entry(l, "bob-tab")["cursor"] == 12).await;
        assert_eq!(entry(&moved, "bob-tab")["file"], "README.md");

        // Completing a subscription that named its client takes that client away.
        bob_ws.complete(&bob_sub).await;
        wait_for(&mut ann_ws, &ann_sub, has(&["ann-tab", "ann-tab-2"])).await;
    }

    async fn a_closed_websocket_removes_its_client(app) {
        let ann = app.sign_up("ann").await;
        let bob = app.sign_up("bob").await;
        let project = app.create_project(&ann, "Here", true).await;
        app.add_member(&ann, &project, &bob, "EDITOR").await;

        // Ann only watches: no client id, no entry.
        let mut ann_ws = WsClient::connect(&app, Some(&ann.access)).await;
        let ann_sub = ann_ws.subscribe(WATCH, json!({ "p": project })).await;
        ann_ws.next(&ann_sub).await;

        let mut bob_ws = WsClient::connect(&app, Some(&bob.access)).await;
        let bob_sub = bob_ws.subscribe(WATCH, json!({ "p": project, "c": "bob-tab" })).await;
        bob_ws.next(&bob_sub).await;
        let answer = bob_ws.request(UPDATE, json!({ "p": project, "c": "bob-tab", "f": "a.py", "cur": 1 })).await;
        assert_eq!(answer["data"]["updatePresence"], true, "{answer}");
        // Another client of Bob's, sending over HTTP: it must stay.
        update(&app, &bob, &project, "bob-cli", json!({ "f": "b.py" })).await.data();
        wait_for(&mut ann_ws, &ann_sub, has(&["bob-cli", "bob-tab"])).await;

        // The socket goes away without a word (the TTL is 30 s, beyond the client's wait).
        drop(bob_ws);
        let after = wait_for(&mut ann_ws, &ann_sub, |l| clients(l) != ["bob-cli", "bob-tab"]).await;
        assert_eq!(clients(&after), ["bob-cli"]);
    }

    async fn silent_clients_expire_after_the_ttl(app) {
        let app = app.restart_with(|config| config.presence.ttl_secs = 1).await;
        let ann = app.sign_up("ann").await;
        let bob = app.sign_up("bob").await;
        let project = app.create_project(&ann, "Here", false).await;
        app.add_member(&ann, &project, &bob, "EDITOR").await;

        let mut ann_ws = WsClient::connect(&app, Some(&ann.access)).await;
        let ann_sub = ann_ws.subscribe(WATCH, json!({ "p": project })).await;
        ann_ws.next(&ann_sub).await;

        // One client of Bob's keeps heart-beating (ten times per TTL); another goes silent.
        let heartbeat = {
            let (app, bob, project) = (app.clone(), bob.clone(), project.clone());
            tokio::spawn(async move {
                loop {
                    update(&app, &bob, &project, "steady", json!({ "f": "a.py", "cur": 4 })).await.data();
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            })
        };
        update(&app, &bob, &project, "silent", json!({ "f": "b.py" })).await.data();
        wait_for(&mut ann_ws, &ann_sub, has(&["silent", "steady"])).await;
        let after = wait_for(&mut ann_ws, &ann_sub, |l| !clients(l).contains(&"silent".to_owned())).await;
        assert_eq!(clients(&after), ["steady"]);
        assert_eq!(entry(&after, "steady")["cursor"], 4);

        // Once it stops, the steady one goes too.
        heartbeat.abort();
        let _ = heartbeat.await;
        wait_for(&mut ann_ws, &ann_sub, |l| l.is_empty()).await;
    }

    async fn presence_is_for_members_and_readers(app) {
        let ann = app.sign_up("ann").await;
        let vic = app.sign_up("vic").await;
        let stranger = app.sign_up("stranger").await;
        let private = app.create_project(&ann, "Here", false).await;
        let public = app.create_project(&ann, "Here", true).await;
        app.add_member(&ann, &private, &vic, "VIEWER").await;
        app.add_member(&ann, &public, &vic, "VIEWER").await;

        update(&app, &stranger, &private, "s", json!({})).await.assert_error("NOT_FOUND", None);
        update(&app, &stranger, &public, "s", json!({})).await.assert_error("FORBIDDEN", None);
        app.gql(UPDATE, json!({ "p": public, "c": "anon" })).await.assert_error("UNAUTHENTICATED", None);

        // Bad arguments.
        let long_id = "c".repeat(65);
        let cases = [
            ("", json!({}), "clientId"),
            (long_id.as_str(), json!({}), "clientId"),
            ("c", json!({ "f": "../etc/passwd" }), "file"),
            ("c", json!({ "f": "a.py", "cur": -1 }), "cursor"),
            ("c", json!({ "f": "a.py", "sel": { "anchor": 0, "head": -2 } }), "selection.head"),
            ("c", json!({ "cur": 3 }), "file"),
        ];
        for (client, fields, field) in cases {
            update(&app, &vic, &public, client, fields).await.assert_error("BAD_USER_INPUT", Some(field));
        }

        // Watching needs read access: a stranger may watch a public project, not a private one.
        let mut stranger_ws = WsClient::connect(&app, Some(&stranger.access)).await;
        let refused = stranger_ws.subscribe(WATCH, json!({ "p": private })).await;
        assert_eq!(stranger_ws.next(&refused).await.code(), "NOT_FOUND");
        let too_long = stranger_ws.subscribe(WATCH, json!({ "p": public, "c": "c".repeat(65) })).await;
        assert_eq!(stranger_ws.next(&too_long).await.code(), "BAD_USER_INPUT");
        let watching = stranger_ws.subscribe(WATCH, json!({ "p": public })).await;
        assert_eq!(list(&stranger_ws.next(&watching).await), Vec::<Value>::new());

        // A viewer is a member: present, and seen by the stranger watching.
        update(&app, &vic, &public, "vic-tab", json!({ "f": "x.py", "typing": true })).await.data();
        let seen = wait_for(&mut stranger_ws, &watching, has(&["vic-tab"])).await;
        assert_eq!(seen[0]["user"]["username"], "vic");
        assert_eq!(seen[0]["typing"], true);
    }

    async fn removed_members_leave_presence_and_lose_their_subscription(app) {
        let ann = app.sign_up("ann").await;
        let bob = app.sign_up("bob").await;
        let project = app.create_project(&ann, "Here", false).await;
        app.add_member(&ann, &project, &bob, "EDITOR").await;

        let mut ann_ws = WsClient::connect(&app, Some(&ann.access)).await;
        let ann_sub = ann_ws.subscribe(WATCH, json!({ "p": project, "c": "ann-tab" })).await;
        ann_ws.next(&ann_sub).await;
        let mut bob_ws = WsClient::connect(&app, Some(&bob.access)).await;
        let bob_sub = bob_ws.subscribe(WATCH, json!({ "p": project })).await;
        bob_ws.next(&bob_sub).await;
        update(&app, &ann, &project, "ann-tab", json!({})).await.data();
        // Bob's HTTP-only client would otherwise live on until the TTL.
        update(&app, &bob, &project, "bob-cli", json!({})).await.data();
        wait_for(&mut ann_ws, &ann_sub, has(&["ann-tab", "bob-cli"])).await;
        wait_for(&mut bob_ws, &bob_sub, has(&["ann-tab", "bob-cli"])).await;

        app.gql_as(
            &ann.access,
            "mutation($p: ID!, $u: ID!) { removeMember(projectId: $p, userId: $u) { id } }",
            json!({ "p": project, "u": bob.id }),
        )
        .await
        .data();
        wait_for(&mut ann_ws, &ann_sub, has(&["ann-tab"])).await;
        loop {
            match bob_ws.next(&bob_sub).await {
                Event::Next(payload) if payload.get("errors").is_none() => continue,
                ended => {
                    assert_eq!(ended.code(), "FORBIDDEN");
                    break;
                }
            }
        }
        assert!(matches!(bob_ws.next(&bob_sub).await, Event::Complete));
        update(&app, &bob, &project, "bob-cli", json!({})).await.assert_error("NOT_FOUND", None);
    }
}

/// Two API nodes sharing PostgreSQL and Redis: a client on one node sees a client on the
/// other, and sees it go when its socket closes there.
#[tokio::test]
async fn presence_crosses_nodes() {
    codecrafter_tests::run(Backend::Postgres, |app| async move {
        let app = app
            .restart_with(|config| {
                config.redis.url = Some(secrecy::SecretString::from("redis://127.0.0.1:6379"));
                config.redis.channel = format!("cc-test-{}", uuid::Uuid::new_v4());
            })
            .await;
        let node_b = app.spawn_node().await;
        let ann = app.sign_up("ann").await;
        let bob = app.sign_up("bob").await;
        let project = app.create_project(&ann, "Here", false).await;
        app.add_member(&ann, &project, &bob, "EDITOR").await;

        let mut ann_ws = WsClient::connect(&app, Some(&ann.access)).await;
        let ann_sub = ann_ws
            .subscribe(WATCH, json!({ "p": project, "c": "ann-tab" }))
            .await;
        ann_ws.next(&ann_sub).await;
        let mut bob_ws = WsClient::connect(&node_b, Some(&bob.access)).await;
        let bob_sub = bob_ws
            .subscribe(WATCH, json!({ "p": project, "c": "bob-tab" }))
            .await;
        bob_ws.next(&bob_sub).await;

        update(
            &app,
            &ann,
            &project,
            "ann-tab",
            json!({ "f": "a.py", "cur": 1 }),
        )
        .await
        .data();
        update(
            &node_b,
            &bob,
            &project,
            "bob-tab",
            json!({ "f": "b.py", "cur": 2 }),
        )
        .await
        .data();
        let on_a = wait_for(&mut ann_ws, &ann_sub, has(&["ann-tab", "bob-tab"])).await;
        let on_b = wait_for(&mut bob_ws, &bob_sub, has(&["ann-tab", "bob-tab"])).await;
        assert_eq!(on_a, on_b);
        assert_eq!(entry(&on_a, "bob-tab")["cursor"], 2);

        drop(bob_ws);
        wait_for(&mut ann_ws, &ann_sub, has(&["ann-tab"])).await;

        // A node nobody on it was watching from learns at once who is already there.
        let node_c = app.spawn_node().await;
        let mut late_ws = WsClient::connect(&node_c, Some(&bob.access)).await;
        let late_sub = late_ws.subscribe(WATCH, json!({ "p": project })).await;
        let seen = wait_for(&mut late_ws, &late_sub, has(&["ann-tab"])).await;
        assert_eq!(entry(&seen, "ann-tab")["file"], "a.py");
    })
    .await;
}
