//! Documents: Loro updates over graphql-ws, files, durability, catch-up, versions and forks.
//! The clients are real Loro documents of their own, talking over real WebSockets.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use codecrafter_tests::ws::{Event, WsClient};
use codecrafter_tests::{TestApp, TestUser, backend_tests};
use loro::{ExportMode, LoroDoc, LoroText, VersionVector};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub(crate) const APPLY: &str = "mutation($p: ID!, $u: Base64!, $c: String) { applyUpdate(projectId: $p, update: $u, clientId: $c) { seq versionVector } }";
const SUBSCRIBE: &str = "subscription($p: ID!, $since: VersionVector) { documentUpdates(projectId: $p, since: $since) { update seq catchUp versionVector clientId author { username } } }";
/// What an editor selects: the update's own fields, which subscribers share one rendering of
/// (`SUBSCRIBE`, with the author, is executed for each subscriber).
const LIVE: &str = "subscription($p: ID!, $since: VersionVector) { documentUpdates(projectId: $p, since: $since) { update seq catchUp versionVector clientId } }";
const FILES: &str = "query($p: ID!) { files(projectId: $p) { path content size } }";

/// An owner, an editor and a viewer of a new private project.
pub(crate) struct Team {
    pub(crate) owner: TestUser,
    pub(crate) editor: TestUser,
    pub(crate) viewer: TestUser,
    pub(crate) project: String,
}

pub(crate) async fn team(app: &TestApp) -> Team {
    let owner = app.sign_up("owner").await;
    let editor = app.sign_up("editor").await;
    let viewer = app.sign_up("viewer").await;
    let project = app.create_project(&owner, "Live", false).await;
    app.add_member(&owner, &project, &editor, "EDITOR").await;
    app.add_member(&owner, &project, &viewer, "VIEWER").await;
    Team {
        owner,
        editor,
        viewer,
        project,
    }
}

/// A client: its own Loro document, following the project over a WebSocket.
pub(crate) struct Peer {
    pub(crate) doc: LoroDoc,
    pub(crate) ws: WsClient,
    pub(crate) sub: String,
    pub(crate) name: String,
    pub(crate) project: String,
}

impl Peer {
    pub(crate) async fn join(app: &TestApp, user: &TestUser, project: &str, peer_id: u64) -> Peer {
        Self::join_selecting(LIVE, app, user, project, peer_id).await
    }

    /// [`Peer::join`] with a subscription of its own.
    async fn join_selecting(
        subscription: &str,
        app: &TestApp,
        user: &TestUser,
        project: &str,
        peer_id: u64,
    ) -> Peer {
        let doc = LoroDoc::new();
        doc.set_peer_id(peer_id).unwrap();
        Self::follow(subscription, app, user, project, doc, None).await
    }

    /// Subscribe, sending `since` (the document's version) when given; imports the catch-up.
    async fn follow(
        subscription: &str,
        app: &TestApp,
        user: &TestUser,
        project: &str,
        doc: LoroDoc,
        since: Option<&VersionVector>,
    ) -> Peer {
        let mut ws = WsClient::connect(app, Some(&user.access)).await;
        let since = since.map(|vv| STANDARD.encode(vv.encode()));
        let sub = ws
            .subscribe(subscription, json!({ "p": project, "since": since }))
            .await;
        let mut peer = Peer {
            doc,
            ws,
            sub,
            name: format!("{}-{}", user.username, rand_suffix()),
            project: project.to_owned(),
        };
        let first = peer.ws.next(&peer.sub).await;
        assert_eq!(first.data()["documentUpdates"]["catchUp"], true);
        peer.import(&first);
        peer
    }

    pub(crate) fn import(&self, event: &Event) -> Value {
        let update = event.data()["documentUpdates"].clone();
        let bytes = STANDARD.decode(update["update"].as_str().unwrap()).unwrap();
        let status = self.doc.import(&bytes).unwrap();
        assert!(
            status.pending.is_none(),
            "the server sent an update out of order"
        );
        update
    }

    /// The text of `path`; a new file is created mergeable, so that two clients creating
    /// the same path at once end up with one file holding both their edits.
    pub(crate) fn text(&self, path: &str) -> LoroText {
        text_of(&self.doc, path).unwrap_or_else(|| {
            self.doc
                .get_map("files")
                .ensure_mergeable_text(path)
                .unwrap()
        })
    }

    /// Make a local edit and send it over the socket; returns the server's answer.
    pub(crate) async fn edit(&mut self, change: impl FnOnce(&Self)) -> Value {
        let before = self.doc.oplog_vv();
        change(self);
        self.doc.commit();
        let update = self.doc.export(ExportMode::updates(&before)).unwrap();
        let answer = self.send(&update).await;
        assert!(answer.get("errors").is_none(), "{answer}");
        answer["data"]["applyUpdate"].clone()
    }

    /// Send `update` with `applyUpdate` over the socket; returns the server's answer.
    async fn send(&mut self, update: &[u8]) -> Value {
        let variables = json!({ "p": self.project, "u": STANDARD.encode(update), "c": self.name });
        self.ws.request(APPLY, variables).await
    }

    /// Take updates until the document holds `target` (a server's version vector).
    async fn sync_to(&mut self, target: &VersionVector) {
        while !self.doc.oplog_vv().includes_vv(target) {
            let event = self.ws.next(&self.sub).await;
            self.import(&event);
        }
    }

    fn files(&self) -> Value {
        let mut files = serde_json::Map::new();
        self.doc.get_map("files").for_each(|path, value| {
            if let loro::ValueOrContainer::Container(loro::Container::Text(text)) = value {
                files.insert(path.to_owned(), json!(text.to_string()));
            }
        });
        Value::Object(files)
    }
}

fn text_of(doc: &LoroDoc, path: &str) -> Option<LoroText> {
    match doc.get_map("files").get(path) {
        Some(loro::ValueOrContainer::Container(loro::Container::Text(text))) => Some(text),
        _ => None,
    }
}

fn rand_suffix() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

fn decode_vv(encoded: &Value) -> VersionVector {
    VersionVector::decode(&STANDARD.decode(encoded.as_str().unwrap()).unwrap()).unwrap()
}

/// The server's files as `{ path: content }`.
pub(crate) async fn server_files(app: &TestApp, token: &str, project: &str) -> Value {
    let answer = app.gql_as(token, FILES, json!({ "p": project })).await;
    let mut files = serde_json::Map::new();
    for file in answer.data()["files"].as_array().unwrap() {
        files.insert(
            file["path"].as_str().unwrap().to_owned(),
            file["content"].clone(),
        );
    }
    Value::Object(files)
}

async fn head(app: &TestApp, token: &str, project: &str) -> VersionVector {
    let answer = app
        .gql_as(
            token,
            "query($p: ID!) { documentVersion(projectId: $p) { versionVector } }",
            json!({ "p": project }),
        )
        .await;
    decode_vv(&answer.data()["documentVersion"]["versionVector"])
}

/// An update made by a fresh Loro peer that creates `path` with `content`.
fn new_file_update(path: &str, content: &str) -> Vec<u8> {
    let doc = LoroDoc::new();
    doc.get_map("files")
        .insert_container(path, LoroText::new())
        .unwrap()
        .insert(0, content)
        .unwrap();
    doc.commit();
    doc.export(ExportMode::all_updates()).unwrap()
}

async fn apply_http(
    app: &TestApp,
    token: &str,
    project: &str,
    update: &[u8],
) -> codecrafter_tests::Gql {
    app.gql_as(
        token,
        APPLY,
        json!({ "p": project, "u": STANDARD.encode(update), "c": "http" }),
    )
    .await
}

/// Send an edit inserting `text` at the start of `a.py` that the server must refuse; returns
/// the error's code and takes the edit back out of the peer's document.
async fn try_edit(peer: &mut Peer, text: &str) -> String {
    let before = peer.doc.oplog_vv();
    let doc = peer.doc.fork();
    doc.get_map("files")
        .ensure_mergeable_text("a.py")
        .unwrap()
        .insert(0, text)
        .unwrap();
    doc.commit();
    let update = doc.export(ExportMode::updates(&before)).unwrap();
    let answer = peer.send(&update).await;
    assert!(answer["data"].is_null(), "{answer}");
    answer["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Everything the database holds for a project's document, base64: snapshot, then the log.
async fn stored_blobs(app: &TestApp, project: &str) -> Vec<String> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let id = uuid::Uuid::parse_str(project).unwrap();
    let mut blobs = Vec::new();
    let document = entity::document::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    if let Some(snapshot) = document.snapshot {
        blobs.push(STANDARD.encode(snapshot));
    }
    let updates = entity::document_update::Entity::find()
        .filter(entity::document_update::Column::ProjectId.eq(id))
        .order_by_asc(entity::document_update::Column::Seq)
        .all(&app.db)
        .await
        .unwrap();
    blobs.extend(updates.into_iter().map(|u| STANDARD.encode(u.data)));
    blobs
}

/// Ask the Python `loro` package (an independent implementation) to do something.
async fn python_peer(request: Value) -> Value {
    use tokio::io::AsyncWriteExt;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/loro_peer.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (see the README: tests need `pip install loro`)");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(request.to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "the Python Loro peer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

backend_tests! {
    async fn another_loro_implementation_reads_and_writes_the_same_document(app) {
        let app = app.restart_with(|c| c.documents.compact_after_updates = 2).await;
        let team = team(&app).await;
        let mut alice = Peer::join(&app, &team.owner, &team.project, 71).await;
        alice.edit(|p| p.text("main.py").insert(0, "hello from rust").unwrap()).await;
        alice.edit(|p| p.text("notes.md").insert(0, "# notes").unwrap()).await;
        alice.edit(|p| p.text("notes.md").insert(7, "!").unwrap()).await;
        // What is stored (a snapshot after compaction, plus the log) reads the same in Python.
        let stored = stored_blobs(&app, &team.project).await;
        let read = python_peer(json!({ "op": "read", "blobs": stored })).await;
        assert_eq!(read["pending"], false);
        assert_eq!(read["files"], server_files(&app, &team.owner.access, &team.project).await);
        assert_eq!(read["files"], json!({ "main.py": "hello from rust", "notes.md": "# notes!" }));
        // An edit made in Python is accepted and reaches the Rust client.
        let edited = python_peer(json!({
            "op": "edit",
            "blobs": stored_blobs(&app, &team.project).await,
            "peer": 4242,
            "path": "main.py",
            "append": " and python",
        }))
        .await;
        let update = STANDARD.decode(edited["update"].as_str().unwrap()).unwrap();
        apply_http(&app, &team.editor.access, &team.project, &update).await.data();
        let target = head(&app, &team.owner.access, &team.project).await;
        alice.sync_to(&target).await;
        assert_eq!(alice.text("main.py").to_string(), "hello from rust and python");
        assert_eq!(alice.files(), edited["files"]);
    }

    async fn edits_reach_every_client_with_author_and_client_id(app) {
        let team = team(&app).await;
        let mut alice = Peer::join_selecting(SUBSCRIBE, &app, &team.owner, &team.project, 1).await;
        let mut bob = Peer::join_selecting(SUBSCRIBE, &app, &team.editor, &team.project, 2).await;
        let mut viewer = Peer::join_selecting(SUBSCRIBE, &app, &team.viewer, &team.project, 3).await;

        let answer = alice.edit(|p| p.text("main.py").insert(0, "print('hi')\n").unwrap()).await;
        assert_eq!(answer["seq"], 1);
        // Every subscriber, the author included, gets it with who sent it.
        for peer in [&mut alice, &mut bob, &mut viewer] {
            let event = peer.ws.next(&peer.sub).await;
            let update = peer.import(&event);
            assert_eq!(update["catchUp"], false);
            assert_eq!(update["seq"], 1);
            assert_eq!(update["author"]["username"], "owner");
            assert!(update["clientId"].as_str().unwrap().starts_with("owner-"));
        }
        bob.edit(|p| p.text("main.py").insert(0, "# by bob\n").unwrap()).await;
        let target = head(&app, &team.owner.access, &team.project).await;
        for peer in [&mut alice, &mut bob, &mut viewer] {
            peer.sync_to(&target).await;
            assert_eq!(peer.text("main.py").to_string(), "# by bob\nprint('hi')\n");
        }
        assert_eq!(
            server_files(&app, &team.viewer.access, &team.project).await,
            json!({ "main.py": "# by bob\nprint('hi')\n" })
        );
    }

    async fn editing_moves_a_project_up_the_list(app) {
        let team = team(&app).await;
        let other = app
            .gql_as(&team.owner.access, "mutation { createProject(input: {title: \"Newer\"}) { id } }", json!({}))
            .await;
        other.data();
        const MINE: &str = "{ projects(filter: {mine: true}, first: 10) { nodes { title } } }";
        let before = app.gql_as(&team.owner.access, MINE, json!({})).await;
        assert_eq!(before.data()["projects"]["nodes"][0]["title"], "Newer");
        apply_http(&app, &team.editor.access, &team.project, &new_file_update("a.py", "x")).await.data();
        let after = app.gql_as(&team.owner.access, MINE, json!({})).await;
        assert_eq!(after.data()["projects"]["nodes"][0]["title"], "Live");
    }

    async fn viewers_and_outsiders_cannot_write(app) {
        let team = team(&app).await;
        let stranger = app.sign_up("stranger").await;
        let update = new_file_update("x.py", "x");
        apply_http(&app, &team.viewer.access, &team.project, &update).await.assert_error("FORBIDDEN", None);
        apply_http(&app, &stranger.access, &team.project, &update).await.assert_error("NOT_FOUND", None);
        let anonymous = app.gql(APPLY, json!({ "p": team.project, "u": STANDARD.encode(&update) })).await;
        anonymous.assert_error("UNAUTHENTICATED", None);
        // Nor through the file operations, nor over the socket.
        let create = app
            .gql_as(
                &team.viewer.access,
                "mutation($p: ID!) { createFile(projectId: $p, path: \"a.py\") { path } }",
                json!({ "p": team.project }),
            )
            .await;
        create.assert_error("FORBIDDEN", None);
        let mut ws = WsClient::connect(&app, Some(&team.viewer.access)).await;
        let answer = ws.request(APPLY, json!({ "p": team.project, "u": STANDARD.encode(&update) })).await;
        assert_eq!(answer["errors"][0]["extensions"]["code"], "FORBIDDEN");
        assert_eq!(app.count("document_updates").await, 0);
        assert_eq!(server_files(&app, &team.owner.access, &team.project).await, json!({}));
    }

    async fn edit_rights_end_with_the_role_at_once(app) {
        // An edit skips the permission check for a moment after one passed (see
        // Documents::edit_granted); a change of role or membership voids that at once.
        let team = team(&app).await;
        let mut editor = Peer::join(&app, &team.editor, &team.project, 62).await;
        editor.edit(|p| p.text("a.py").insert(0, "a").unwrap()).await;
        let owner_sets = |query: &'static str, role: Option<&'static str>| {
            let (app, team) = (&app, &team);
            async move {
                app.gql_as(&team.owner.access, query, json!({ "p": team.project, "u": team.editor.id, "r": role }))
                    .await
                    .data();
            }
        };
        let set_role = "mutation($p: ID!, $u: ID!, $r: ProjectRole!) { setMemberRole(projectId: $p, userId: $u, role: $r) { role } }";
        owner_sets(set_role, Some("VIEWER")).await;
        assert_eq!(try_edit(&mut editor, "b").await, "FORBIDDEN");
        owner_sets(set_role, Some("EDITOR")).await;
        editor.edit(|p| p.text("a.py").insert(0, "c").unwrap()).await;
        owner_sets("mutation($p: ID!, $u: ID!) { removeMember(projectId: $p, userId: $u) { id } }", None).await;
        assert_eq!(try_edit(&mut editor, "d").await, "NOT_FOUND");
        // Over HTTP too, and only the two edits made while allowed are stored.
        apply_http(&app, &team.editor.access, &team.project, &new_file_update("x.py", "x")).await.assert_error("NOT_FOUND", None);
        assert_eq!(app.count("document_updates").await, 2);
        assert_eq!(server_files(&app, &team.owner.access, &team.project).await, json!({ "a.py": "ca" }));
    }

    async fn bad_updates_are_refused_and_change_nothing(app) {
        let team = team(&app).await;
        let token = &team.editor.access;
        let good = new_file_update("main.py", "ok");
        apply_http(&app, token, &team.project, &good).await.data();
        let before = server_files(&app, token, &team.project).await;

        // Not base64, not Loro.
        let answer = app.gql_as(token, APPLY, json!({ "p": team.project, "u": "***" })).await;
        answer.assert_error("BAD_USER_INPUT", None);
        apply_http(&app, token, &team.project, b"definitely not loro").await.assert_error("BAD_USER_INPUT", Some("update"));
        // A snapshot instead of an update.
        let doc = LoroDoc::new();
        doc.get_map("files").insert_container("s.py", LoroText::new()).unwrap().insert(0, "s").unwrap();
        let snapshot = doc.export(ExportMode::Snapshot).unwrap();
        apply_http(&app, token, &team.project, &snapshot).await.assert_error("BAD_USER_INPUT", Some("update"));
        // Containers outside `files`, and bad paths.
        let doc = LoroDoc::new();
        doc.get_text("elsewhere").insert(0, "x").unwrap();
        doc.commit();
        let outside = doc.export(ExportMode::all_updates()).unwrap();
        apply_http(&app, token, &team.project, &outside).await.assert_error("BAD_USER_INPUT", Some("update"));
        for path in ["../etc/passwd", "/abs", "a//b"] {
            apply_http(&app, token, &team.project, &new_file_update(path, "x")).await.assert_error("BAD_USER_INPUT", Some("update"));
        }
        let doc = LoroDoc::new();
        doc.get_map("files").insert("plain", "a value, not a text").unwrap();
        doc.commit();
        let not_text = doc.export(ExportMode::all_updates()).unwrap();
        apply_http(&app, token, &team.project, &not_text).await.assert_error("BAD_USER_INPUT", Some("update"));

        // Out of order: an update built on changes the server never received.
        let doc = LoroDoc::new();
        doc.set_peer_id(77).unwrap();
        let text = doc.get_map("files").insert_container("gap.py", LoroText::new()).unwrap();
        text.insert(0, "first").unwrap();
        doc.commit();
        let after_first = doc.oplog_vv();
        text.insert(5, " second").unwrap();
        doc.commit();
        let second_only = doc.export(ExportMode::updates(&after_first)).unwrap();
        let conflict = apply_http(&app, token, &team.project, &second_only).await;
        conflict.assert_error("CONFLICT", Some("update"));
        let server_vv = decode_vv(&conflict.error()["extensions"]["versionVector"]);
        assert_eq!(server_vv, head(&app, token, &team.project).await);

        assert_eq!(server_files(&app, token, &team.project).await, before);
        assert_eq!(app.count("document_updates").await, 1);

        // Sending the missing part first makes the same update acceptable.
        let first_only = doc.export(ExportMode::updates(&VersionVector::default())).unwrap();
        apply_http(&app, token, &team.project, &first_only).await.data();
        assert_eq!(server_files(&app, token, &team.project).await["gap.py"], "first second");
    }

    async fn limits_are_configuration(app) {
        let app = app
            .restart_with(|c| {
                c.documents.max_update_bytes = 2_000;
                c.documents.max_file_bytes = 100;
                c.documents.max_files = 2;
            })
            .await;
        let team = team(&app).await;
        let token = &team.owner.access;
        let big = new_file_update("big.txt", &"x".repeat(3_000));
        apply_http(&app, token, &team.project, &big).await.assert_error("BAD_USER_INPUT", Some("update"));
        let large_file = new_file_update("large.txt", &"y".repeat(150));
        apply_http(&app, token, &team.project, &large_file).await.assert_error("BAD_USER_INPUT", Some("update"));
        for name in ["a.txt", "b.txt"] {
            apply_http(&app, token, &team.project, &new_file_update(name, "ok")).await.data();
        }
        apply_http(&app, token, &team.project, &new_file_update("c.txt", "one too many")).await.assert_error("BAD_USER_INPUT", Some("update"));
        let create = app
            .gql_as(token, "mutation($p: ID!) { createFile(projectId: $p, path: \"d.txt\") { path } }", json!({ "p": team.project }))
            .await;
        create.assert_error("BAD_USER_INPUT", Some("update"));
        assert_eq!(app.count("document_updates").await, 2);
    }

    async fn acknowledged_edits_survive_restart_and_compaction(app) {
        let app = app.restart_with(|c| c.documents.compact_after_updates = 3).await;
        let team = team(&app).await;
        let mut alice = Peer::join(&app, &team.owner, &team.project, 11).await;
        alice.edit(|p| p.text("a.txt").insert(0, "one ").unwrap()).await;
        let after_first = alice.doc.oplog_vv();
        let first_frontiers = alice.doc.oplog_frontiers();
        for word in ["two ", "three ", "four ", "five "] {
            alice.edit(|p| {
                let text = p.text("a.txt");
                text.insert(text.len_unicode(), word).unwrap();
            })
            .await;
        }
        // Three updates were folded into the snapshot; two remain in the log.
        assert_eq!(app.count("document_updates").await, 2);
        let app = app.restart().await;
        assert_eq!(
            server_files(&app, &team.owner.access, &team.project).await,
            json!({ "a.txt": "one two three four five " })
        );
        // A client that only has the first edit catches up on exactly the rest.
        let old = alice.doc.fork_at(&first_frontiers).unwrap();
        assert_eq!(text_of(&old, "a.txt").unwrap().to_string(), "one ");
        let bob = Peer::follow(LIVE, &app, &team.editor, &team.project, old, Some(&after_first)).await;
        assert_eq!(bob.text("a.txt").to_string(), "one two three four five ");
    }

    async fn a_client_that_takes_only_small_frames_still_gets_large_documents(app) {
        // Embedded WebSocket stacks and some proxies bound a frame, not a message: the server
        // sends a long message (a catch-up, a large paste) in fragments of 4 KiB.
        let team = team(&app).await;
        let mut alice = Peer::join(&app, &team.owner, &team.project, 41).await;
        let big: String = (0..100 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        alice.edit(|p| p.text("big.txt").insert(0, &big).unwrap()).await;
        let small_frames = WebSocketConfig::default().max_frame_size(Some(8 * 1024));
        let mut ws = WsClient::connect_with(&app, Some(&team.editor.access), small_frames).await;
        let sub = ws.subscribe(LIVE, json!({ "p": team.project })).await;
        let mut bob = Peer { doc: LoroDoc::new(), ws, sub, name: "bob".into(), project: team.project.clone() };
        let catch_up = bob.ws.next(&bob.sub).await;
        bob.import(&catch_up);
        assert_eq!(bob.text("big.txt").to_string(), big);
        // A live update of 50 KiB, with characters of several bytes that fragments may split.
        let paste = "ünïcödé ✓ 🦀 ".repeat(3000);
        alice.edit(|p| p.text("big.txt").insert(0, &paste).unwrap()).await;
        let live = bob.ws.next(&bob.sub).await;
        bob.import(&live);
        assert_eq!(bob.text("big.txt").to_string(), format!("{paste}{big}"));
    }

    async fn a_reconnecting_client_gets_exactly_what_it_missed(app) {
        let team = team(&app).await;
        let mut alice = Peer::join(&app, &team.owner, &team.project, 21).await;
        let bob = Peer::join(&app, &team.editor, &team.project, 22).await;
        alice.edit(|p| p.text("f.txt").insert(0, "base").unwrap()).await;
        let target = head(&app, &team.owner.access, &team.project).await;
        let mut bob = bob;
        bob.sync_to(&target).await;
        let bob_version = bob.doc.oplog_vv();
        let bob_doc = bob.doc;
        drop(bob.ws); // bob goes offline
        alice.edit(|p| p.text("f.txt").insert(4, " + more").unwrap()).await;
        alice.edit(|p| p.text("g.txt").insert(0, "new file").unwrap()).await;
        let bob = Peer::follow(SUBSCRIBE, &app, &team.editor, &team.project, bob_doc, Some(&bob_version)).await;
        assert_eq!(bob.files(), json!({ "f.txt": "base + more", "g.txt": "new file" }));
        // …and the catch-up carried only the missing part, not the whole history.
        let mut fresh = WsClient::connect(&app, Some(&team.editor.access)).await;
        let all = fresh.subscribe(SUBSCRIBE, json!({ "p": team.project })).await;
        let everything = fresh.next(&all).await.data()["documentUpdates"]["update"].as_str().unwrap().len();
        let mut again = WsClient::connect(&app, Some(&team.editor.access)).await;
        let current = STANDARD.encode(head(&app, &team.owner.access, &team.project).await.encode());
        let none = again.subscribe(SUBSCRIBE, json!({ "p": team.project, "since": current })).await;
        let nothing = again.next(&none).await.data()["documentUpdates"]["update"].as_str().unwrap().len();
        assert!(nothing < everything, "{nothing} < {everything}");
    }

    async fn file_operations_are_edits_everyone_receives(app) {
        let team = team(&app).await;
        let token = &team.editor.access;
        let mut watcher = Peer::join(&app, &team.viewer, &team.project, 31).await;
        let op = |query: &'static str, vars: Value| {
            let app = app.clone();
            let token = token.clone();
            async move { app.gql_as(&token, query, vars).await }
        };
        const CREATE: &str = "mutation($p: ID!, $path: String!, $c: String) { createFile(projectId: $p, path: $path, content: $c) { path content size } }";
        let created = op(CREATE, json!({ "p": team.project, "path": "src/main.rs", "c": "fn main() {}\n" })).await;
        assert_eq!(created.data()["createFile"], json!({ "path": "src/main.rs", "content": "fn main() {}\n", "size": 13 }));
        op(CREATE, json!({ "p": team.project, "path": "src/main.rs" })).await.assert_error("CONFLICT", Some("path"));
        op(CREATE, json!({ "p": team.project, "path": "../escape" })).await.assert_error("BAD_USER_INPUT", Some("path"));
        op(CREATE, json!({ "p": team.project, "path": "README.md", "c": "# hi" })).await.data();
        let renamed = op(
            "mutation($p: ID!) { renameFile(projectId: $p, path: \"src/main.rs\", newPath: \"src/lib.rs\") { path content } }",
            json!({ "p": team.project }),
        ).await;
        assert_eq!(renamed.data()["renameFile"], json!({ "path": "src/lib.rs", "content": "fn main() {}\n" }));
        op("mutation($p: ID!) { renameFile(projectId: $p, path: \"nope\", newPath: \"x\") { path } }", json!({ "p": team.project })).await.assert_error("NOT_FOUND", None);
        op("mutation($p: ID!) { renameFile(projectId: $p, path: \"src/lib.rs\", newPath: \"README.md\") { path } }", json!({ "p": team.project })).await.assert_error("CONFLICT", Some("newPath"));
        op("mutation($p: ID!) { deleteFile(projectId: $p, path: \"README.md\") }", json!({ "p": team.project })).await.data();
        op("mutation($p: ID!) { deleteFile(projectId: $p, path: \"README.md\") }", json!({ "p": team.project })).await.assert_error("NOT_FOUND", None);

        let expected = json!({ "src/lib.rs": "fn main() {}\n" });
        assert_eq!(server_files(&app, token, &team.project).await, expected);
        let one = app.gql_as(token, "query($p: ID!) { file(projectId: $p, path: \"src/lib.rs\") { content } }", json!({ "p": team.project })).await;
        assert_eq!(one.data()["file"]["content"], "fn main() {}\n");
        let target = head(&app, token, &team.project).await;
        watcher.sync_to(&target).await;
        assert_eq!(watcher.files(), expected);
    }

    async fn a_file_and_a_folder_of_the_same_path_are_refused(app) {
        let team = team(&app).await;
        let token = &team.editor.access;
        const CREATE: &str = "mutation($p: ID!, $path: String!) { createFile(projectId: $p, path: $path) { path } }";
        const RENAME: &str = "mutation($p: ID!, $path: String!, $to: String!) { renameFile(projectId: $p, path: $path, newPath: $to) { path } }";
        let create = |path: &'static str| app.gql_as(token, CREATE, json!({ "p": team.project, "path": path }));
        create("a").await.data();
        create("b/c.py").await.data();
        let log = app.count("document_updates").await;
        // A file inside a file, then a file where a folder is.
        let inside = create("a/b.py").await;
        inside.assert_error("BAD_USER_INPUT", Some("path"));
        assert!(inside.message().contains("a/b.py would be inside a"), "{}", inside.message());
        let over = create("b").await;
        over.assert_error("BAD_USER_INPUT", Some("path"));
        assert!(over.message().contains("b is a folder of b/c.py"), "{}", over.message());
        // The same by renaming, in both directions.
        let rename = |path: &'static str, to: &'static str| app.gql_as(token, RENAME, json!({ "p": team.project, "path": path, "to": to }));
        rename("b/c.py", "a/c.py").await.assert_error("BAD_USER_INPUT", Some("newPath"));
        rename("a", "b").await.assert_error("BAD_USER_INPUT", Some("newPath"));
        // Nothing changed.
        assert_eq!(app.count("document_updates").await, log);
        assert_eq!(server_files(&app, token, &team.project).await, json!({ "a": "", "b/c.py": "" }));
        // A file may take the name of the folder it leaves empty.
        rename("b/c.py", "b").await.data();
        assert_eq!(server_files(&app, token, &team.project).await, json!({ "a": "", "b": "" }));
    }

    async fn a_run_of_a_project_holding_clashing_paths_fails_with_the_reason(app) {
        // Edits from a client can still make such a project (only the file operations refuse).
        let team = team(&app).await;
        let token = &team.editor.access;
        let doc = LoroDoc::new();
        let files = doc.get_map("files");
        files.insert_container("a", LoroText::new()).unwrap().insert(0, "x").unwrap();
        files.insert_container("a/b.py", LoroText::new()).unwrap().insert(0, "print(1)").unwrap();
        doc.commit();
        apply_http(&app, token, &team.project, &doc.export(ExportMode::all_updates()).unwrap()).await.data();
        let run = app
            .gql_as(token, "mutation($p: ID!) { runCode(projectId: $p, language: PYTHON, entry: \"a/b.py\") { id } }", json!({ "p": team.project }))
            .await;
        let id = run.data()["runCode"]["id"].as_str().unwrap().to_owned();
        let ended = std::sync::Mutex::new(Value::Null);
        let (app_ref, ended_ref, id) = (&app, &ended, id.as_str());
        codecrafter_tests::eventually(Duration::from_secs(60), move || async move {
            let run = app_ref.gql_as(token, "query($id: ID!) { run(id: $id) { status attempts error stderr } }", json!({ "id": id })).await.data()["run"].clone();
            let done = !matches!(run["status"].as_str(), Some("QUEUED" | "RUNNING"));
            *ended_ref.lock().unwrap() = run;
            done
        })
        .await;
        let ended = ended.into_inner().unwrap();
        assert_eq!((&ended["status"], &ended["attempts"]), (&json!("FAILED"), &json!(1)), "{ended}");
        assert!(ended["stderr"].as_str().unwrap().contains("\"a\" is a file"), "{ended}");
    }

    async fn client_ids_are_1_to_64_bytes_for_edits_and_presence(app) {
        let team = team(&app).await;
        let token = &team.editor.access;
        let update = STANDARD.encode(new_file_update("a.txt", "x"));
        const PRESENCE: &str = "mutation($p: ID!, $c: String!) { updatePresence(projectId: $p, clientId: $c) }";
        for (client_id, ok) in [(String::new(), false), ("c".repeat(65), false), ("c".repeat(64), true), ("c".to_owned(), true)] {
            let applied = app.gql_as(token, APPLY, json!({ "p": team.project, "u": update, "c": client_id })).await;
            let presence = app.gql_as(token, PRESENCE, json!({ "p": team.project, "c": client_id })).await;
            if ok {
                applied.data();
                presence.data();
            } else {
                applied.assert_error("BAD_USER_INPUT", Some("clientId"));
                presence.assert_error("BAD_USER_INPUT", Some("clientId"));
                assert_eq!(applied.message(), "clientId must be 1 to 64 bytes");
            }
        }
        assert_eq!(app.count("document_updates").await, 1);
    }

    async fn an_edit_just_before_a_stop_is_kept_with_its_auto_save(app) {
        let team = team(&app).await;
        apply_http(&app, &team.editor.access, &team.project, &new_file_update("last.txt", "final words")).await.data();
        // The auto-save is ten minutes away (the default idle delay): only the stop writes it.
        let app = app.restart().await;
        assert_eq!(server_files(&app, &team.owner.access, &team.project).await, json!({ "last.txt": "final words" }));
        let versions = app
            .gql_as(&team.owner.access, "query($p: ID!) { versions(projectId: $p) { title isAuto files { path content } } }", json!({ "p": team.project }))
            .await;
        assert_eq!(versions.data()["versions"], json!([{ "title": "Auto-save", "isAuto": true, "files": [{ "path": "last.txt", "content": "final words" }] }]));
    }

    async fn versions_read_and_restore_as_a_new_edit(app) {
        let team = team(&app).await;
        let token = &team.owner.access;
        let mut alice = Peer::join(&app, &team.owner, &team.project, 41).await;
        alice.edit(|p| p.text("main.py").insert(0, "v1").unwrap()).await;
        let saved = app
            .gql_as(token, "mutation($p: ID!) { createVersion(projectId: $p, title: \"First\", message: \"works\") { id title message isAuto author { username } } }", json!({ "p": team.project }))
            .await;
        let version = saved.data()["createVersion"].clone();
        assert_eq!(version["author"]["username"], "owner");
        assert_eq!(version["isAuto"], false);
        let viewer_save = app
            .gql_as(&team.viewer.access, "mutation($p: ID!) { createVersion(projectId: $p, title: \"x\") { id } }", json!({ "p": team.project }))
            .await;
        viewer_save.assert_error("FORBIDDEN", None);
        app.gql_as(token, "mutation($p: ID!) { createVersion(projectId: $p, title: \"\") { id } }", json!({ "p": team.project }))
            .await
            .assert_error("BAD_USER_INPUT", Some("title"));

        alice.edit(|p| {
            p.text("main.py").delete(0, 2).unwrap();
            p.text("main.py").insert(0, "v2").unwrap();
            p.text("extra.py").insert(0, "later").unwrap();
        }).await;
        let at_version = app
            .gql_as(token, "query($p: ID!, $v: ID!) { file(projectId: $p, path: \"main.py\", version: $v) { content } }", json!({ "p": team.project, "v": version["id"] }))
            .await;
        assert_eq!(at_version.data()["file"]["content"], "v1");
        let missing_then = app
            .gql_as(token, "query($p: ID!, $v: ID!) { file(projectId: $p, path: \"extra.py\", version: $v) { content } }", json!({ "p": team.project, "v": version["id"] }))
            .await;
        missing_then.assert_error("NOT_FOUND", None);

        let mut bob = Peer::join_selecting(SUBSCRIBE, &app, &team.editor, &team.project, 42).await;
        let restored = app
            .gql_as(&team.editor.access, "mutation($p: ID!, $v: ID!) { restoreVersion(projectId: $p, versionId: $v) { seq } }", json!({ "p": team.project, "v": version["id"] }))
            .await;
        restored.data();
        // The restore reached the live clients as an ordinary update.
        let event = bob.ws.next(&bob.sub).await;
        let update = bob.import(&event);
        assert_eq!(update["author"]["username"], "editor");
        assert_eq!(bob.files(), json!({ "main.py": "v1" }));
        assert_eq!(server_files(&app, token, &team.project).await, json!({ "main.py": "v1" }));
        // History is kept: the state before the restore is still readable.
        let versions = app
            .gql_as(token, "query($p: ID!) { versions(projectId: $p) { title files { path content } } }", json!({ "p": team.project }))
            .await;
        assert_eq!(versions.data()["versions"], json!([{ "title": "First", "files": [{ "path": "main.py", "content": "v1" }] }]));
        let stranger = app.sign_up("stranger").await;
        app.gql_as(&stranger.access, "query($p: ID!) { versions(projectId: $p) { id } }", json!({ "p": team.project }))
            .await
            .assert_error("NOT_FOUND", None);
    }

    async fn idle_documents_get_an_auto_save_and_unload(app) {
        let app = app
            .restart_with(|c| {
                c.documents.autosave_idle_secs = 1;
                c.documents.idle_secs = 1;
            })
            .await;
        let team = team(&app).await;
        apply_http(&app, &team.editor.access, &team.project, &new_file_update("a.txt", "draft")).await.data();
        let versions = codecrafter_tests::eventually_some(Duration::from_secs(10), || async {
            let versions = app
                .gql_as(&team.owner.access, "query($p: ID!) { versions(projectId: $p) { title isAuto author { id } files { content } } }", json!({ "p": team.project }))
                .await
                .data()["versions"]
                .clone();
            versions.as_array().is_some_and(|v| !v.is_empty()).then_some(versions)
        })
        .await;
        assert_eq!(versions, json!([{ "title": "Auto-save", "isAuto": true, "author": null, "files": [{ "content": "draft" }] }]));
        // An idle document is compacted: its log is folded into the snapshot.
        codecrafter_tests::eventually(Duration::from_secs(10), || async { app.count("document_updates").await == 0 }).await;
        // Nobody follows it, so it leaves memory; the next reader loads it again.
        let project = uuid::Uuid::parse_str(&team.project).unwrap();
        codecrafter_tests::eventually(Duration::from_secs(10), || async { !app.services.documents.is_loaded(project) }).await;
        assert_eq!(server_files(&app, &team.owner.access, &team.project).await, json!({ "a.txt": "draft" }));
        assert!(app.services.documents.is_loaded(project));
    }

    async fn many_documents_do_not_stay_in_memory(app) {
        let app = app.restart_with(|c| c.documents.idle_secs = 1).await;
        let owner = app.sign_up("owner").await;
        for i in 0..100 {
            let project = app.create_project(&owner, &format!("p{i}"), false).await;
            app.gql_as(&owner.access, FILES, json!({ "p": project })).await.data();
            let id = uuid::Uuid::parse_str(&project).unwrap();
            assert!(app.services.documents.is_loaded(id));
        }
        codecrafter_tests::eventually(Duration::from_secs(10), || async { app.services.documents.loaded_count() == 0 }).await;
    }

    async fn forks_copy_the_files_and_then_go_their_own_way(app) {
        let team = team(&app).await;
        apply_http(&app, &team.owner.access, &team.project, &new_file_update("main.py", "original")).await.data();
        let outsider = app.sign_up("outsider").await;
        let forked = app
            .gql_as(&outsider.access, "mutation($p: ID!) { forkProject(id: $p) { id } }", json!({ "p": team.project }))
            .await;
        forked.assert_error("NOT_FOUND", None);
        let forked = app
            .gql_as(&team.viewer.access, "mutation($p: ID!) { forkProject(id: $p, title: \"Mine\") { id title isPublic viewerRole forkedFrom { id } } }", json!({ "p": team.project }))
            .await;
        let fork = forked.data()["forkProject"].clone();
        assert_eq!(fork["title"], "Mine");
        assert_eq!(fork["isPublic"], false);
        assert_eq!(fork["viewerRole"], "OWNER");
        assert_eq!(fork["forkedFrom"]["id"], team.project.as_str());
        let fork_id = fork["id"].as_str().unwrap();
        assert_eq!(server_files(&app, &team.viewer.access, fork_id).await, json!({ "main.py": "original" }));
        let count = app
            .gql_as(&team.owner.access, "query($p: ID!) { project(id: $p) { forksCount } }", json!({ "p": team.project }))
            .await;
        assert_eq!(count.data()["project"]["forksCount"], 1);
        // The fork's owner edits the fork; the original does not change, and vice versa.
        let mut mine = Peer::join(&app, &team.viewer, fork_id, 51).await;
        mine.edit(|p| p.text("main.py").insert(0, "forked ").unwrap()).await;
        assert_eq!(server_files(&app, &team.owner.access, &team.project).await, json!({ "main.py": "original" }));
        assert_eq!(server_files(&app, &team.viewer.access, fork_id).await, json!({ "main.py": "forked original" }));
        // The original's owner is not a member of the fork.
        app.gql_as(&team.owner.access, FILES, json!({ "p": fork_id })).await.assert_error("NOT_FOUND", None);
    }

    async fn protocol_abuse_closes_only_the_offending_socket(app) {
        let team = team(&app).await;
        let mut watcher = Peer::join(&app, &team.viewer, &team.project, 81).await;
        // A subscribe before connection_init.
        let mut early = WsClient::open(&app).await;
        early.send(json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ __typename }" } })).await;
        assert!(early.closed().await);
        // Not JSON, not graphql-ws, a binary frame.
        for frame in [
            tokio_tungstenite::tungstenite::Message::text("{{{ not json"),
            tokio_tungstenite::tungstenite::Message::text(r#"{"type":"no-such-type"}"#),
            tokio_tungstenite::tungstenite::Message::binary(vec![0u8, 159, 146, 150]),
        ] {
            let mut rogue = WsClient::connect(&app, Some(&team.editor.access)).await;
            rogue.send_frame(frame).await;
            assert!(rogue.closed().await);
        }
        // Everybody else carries on.
        let mut editor = Peer::join(&app, &team.editor, &team.project, 82).await;
        editor.edit(|p| p.text("ok.py").insert(0, "still here").unwrap()).await;
        let target = head(&app, &team.owner.access, &team.project).await;
        watcher.sync_to(&target).await;
        assert_eq!(watcher.files(), json!({ "ok.py": "still here" }));
    }

    async fn pipelined_edits_are_all_applied_whatever_order_they_arrive_in(app) {
        let team = team(&app).await;
        let token = &team.editor.access;
        let doc = LoroDoc::new();
        doc.set_peer_id(41).unwrap();
        let mut from = VersionVector::default();
        let text = doc.get_map("files").insert_container("fast.py", LoroText::new()).unwrap();
        let updates: Vec<String> = (0..250)
            .map(|i| {
                text.insert(text.len_unicode(), &format!("{i} ")).unwrap();
                doc.commit();
                let update = doc.export(ExportMode::updates(&from)).unwrap();
                from = doc.oplog_vv();
                STANDARD.encode(update)
            })
            .collect();
        // A fast typist on one socket: every edit sent before the first answer is read, more
        // of them than the socket runs at once.
        let mut ws = WsClient::connect(&app, Some(token)).await;
        let mut ids = Vec::new();
        for update in &updates[..200] {
            ids.push(ws.subscribe(APPLY, json!({ "p": team.project, "u": update })).await);
        }
        let mut seqs = Vec::new();
        for id in &ids {
            seqs.push(ws.next(id).await.data()["applyUpdate"]["seq"].as_i64().unwrap());
        }
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 200, "each edit got its own place in the log");
        // Concurrent HTTP requests, the newest sent first.
        let answers = futures_util::future::join_all(updates[200..].iter().rev().map(|update| {
            app.gql_as(token, APPLY, json!({ "p": team.project, "u": update }))
        }))
        .await;
        for answer in &answers {
            answer.data();
        }
        assert_eq!(server_files(&app, token, &team.project).await["fast.py"], text.to_string());
    }

    async fn subscribers_selecting_alike_get_the_frames_async_graphql_would_send(app) {
        let team = team(&app).await;
        // The same fields shared (twice: one rendering for both), executed for each
        // subscriber (a directive takes the ordinary path), and shared under aliases.
        let shared = "subscription($p: ID!) { documentUpdates(projectId: $p) { __typename update seq catchUp versionVector clientId } }";
        let ordinary = "subscription($p: ID!) { documentUpdates(projectId: $p) { __typename update seq @include(if: true) catchUp versionVector clientId } }";
        let aliased = "subscription($p: ID!) { feed: documentUpdates(projectId: $p) { n: seq u: update } }";
        let mut followers = Vec::new();
        for query in [shared, shared, ordinary, aliased] {
            let mut ws = WsClient::connect(&app, Some(&team.viewer.access)).await;
            let sub = ws.subscribe(query, json!({ "p": team.project })).await;
            let first = ws.next(&sub).await;
            followers.push((ws, sub, first));
        }
        let catch_ups: Vec<&Value> = followers.iter().map(|(_, _, first)| &first.data()["documentUpdates"]).collect();
        assert_eq!(catch_ups[0], catch_ups[2]);
        assert_eq!(catch_ups[0]["catchUp"], true);

        let mut writer = Peer::join(&app, &team.editor, &team.project, 95).await;
        writer.name = "tab \"1\" ✓".into();
        for round in 0..5 {
            let answer = writer.edit(|p| p.text("a.txt").insert(0, &format!("{round} ")).unwrap()).await;
            let mut payloads = Vec::new();
            for (ws, sub, _) in &mut followers {
                match ws.next(sub).await {
                    Event::Next(payload) => payloads.push(payload),
                    other => panic!("expected an update, got {other:?}"),
                }
            }
            let update = &payloads[0]["data"]["documentUpdates"];
            assert_eq!(update["seq"], answer["seq"]);
            assert_eq!(update["catchUp"], false);
            assert_eq!(update["clientId"], "tab \"1\" ✓");
            assert_eq!(update["versionVector"], answer["versionVector"]);
            assert_eq!(update["__typename"], "DocumentUpdate");
            assert_eq!(payloads[0], payloads[1]);
            assert_eq!(payloads[0], payloads[2], "the shared frame is what async-graphql sends");
            assert_eq!(
                payloads[3],
                json!({ "data": { "feed": { "n": update["seq"], "u": update["update"] } } })
            );
        }
    }

    async fn a_subscriber_that_falls_behind_gets_a_resync_and_misses_nothing(app) {
        use sea_orm::{ConnectionTrait, TransactionTrait};
        let app = app.restart_with(|c| c.documents.subscriber_queue = 1).await;
        let team = team(&app).await;
        let mut shared = Peer::join(&app, &team.viewer, &team.project, 96).await;
        let mut ordinary = Peer::join_selecting(SUBSCRIBE, &app, &team.viewer, &team.project, 97).await;
        let doc = LoroDoc::new();
        doc.set_peer_id(98).unwrap();
        let text = doc.get_map("files").insert_container("fast.py", LoroText::new()).unwrap();
        let mut from = VersionVector::default();
        let mut ws = WsClient::connect(&app, Some(&team.editor.access)).await;
        // Edits queued on a document are committed as one group, and a group is broadcast at
        // once. While a transaction holds the log, the pipelined edits of a round queue up
        // behind the first; once it ends they go out together, many more than the one a
        // subscriber may fall behind. (Without holding it, how large the groups come out is
        // a matter of timing. Even so, a subscriber's connection running on the other core
        // may keep pace with a group: a few rounds make sure.)
        let mut resyncs = [0, 0];
        for round in 0..5 {
            let held = app.db.begin().await.unwrap();
            if app.backend == codecrafter_tests::Backend::Postgres {
                // (SQLite has one writing connection, which the transaction holds.)
                held.execute_unprepared("LOCK TABLE document_updates IN EXCLUSIVE MODE").await.unwrap();
            }
            let mut ids = Vec::new();
            for i in 0..100 {
                text.insert(text.len_unicode(), &format!("{round}.{i} ")).unwrap();
                doc.commit();
                let update = doc.export(ExportMode::updates(&from)).unwrap();
                from = doc.oplog_vv();
                ids.push(ws.subscribe(APPLY, json!({ "p": team.project, "u": STANDARD.encode(update) })).await);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            held.commit().await.unwrap();
            for id in &ids {
                ws.next(id).await.data();
            }
            for (peer, resyncs) in [&mut shared, &mut ordinary].into_iter().zip(&mut resyncs) {
                while !peer.doc.oplog_vv().includes_vv(&from) {
                    let event = peer.ws.next(&peer.sub).await;
                    let update = peer.import(&event);
                    if update["catchUp"] == true {
                        assert!(update["seq"].is_null());
                        *resyncs += 1;
                    }
                }
                assert_eq!(peer.text("fast.py").to_string(), text.to_string());
            }
            if resyncs.iter().all(|&n| n > 0) {
                break;
            }
        }
        assert!(resyncs.iter().all(|&n| n > 0), "no subscriber fell behind: {resyncs:?}");
    }

    async fn a_connection_holds_a_bounded_number_of_subscriptions(app) {
        let team = team(&app).await;
        let mut ws = WsClient::connect(&app, Some(&team.viewer.access)).await;
        let mut subs = Vec::new();
        // Shared subscriptions (whose place the connection's feed holds) and ordinary ones
        // count alike.
        for i in 0..64 {
            let query = if i % 2 == 0 { LIVE } else { SUBSCRIBE };
            let sub = ws.subscribe(query, json!({ "p": team.project })).await;
            assert_eq!(ws.next(&sub).await.data()["documentUpdates"]["catchUp"], true);
            subs.push(sub);
        }
        for query in [LIVE, SUBSCRIBE] {
            let refused = ws.subscribe(query, json!({ "p": team.project })).await;
            assert_eq!(ws.next(&refused).await.code(), "RATE_LIMITED");
        }
        // Giving one back (a shared one) makes room; other connections were never affected.
        ws.complete(&subs.swap_remove(0)).await;
        // (The server frees the place once the completed stream is dropped: a moment later.)
        codecrafter_tests::eventually(Duration::from_secs(5), async || {
            let again = ws.subscribe(LIVE, json!({ "p": team.project })).await;
            match ws.next(&again).await {
                Event::Next(payload) if payload["data"]["documentUpdates"]["catchUp"] == true => true,
                other => {
                    assert_eq!(other.code(), "RATE_LIMITED");
                    false
                }
            }
        })
        .await;
        let mut other = WsClient::connect(&app, Some(&team.viewer.access)).await;
        let fine = other.subscribe(SUBSCRIBE, json!({ "p": team.project })).await;
        assert_eq!(other.next(&fine).await.data()["documentUpdates"]["catchUp"], true);
    }

    async fn a_socket_cannot_outlive_its_access_token(app) {
        let team = team(&app).await;
        let app = app.restart_with(|c| c.auth.access_token_ttl_secs = 2).await;
        let editor = app.sign_in("editor", "password-editor").await;
        let mut ws = WsClient::connect(&app, Some(&editor.access)).await;
        let fresh = ws.request(FILES, json!({ "p": team.project })).await;
        assert!(fresh.get("errors").is_none(), "{fresh}");
        codecrafter_tests::eventually(Duration::from_secs(5), async || {
            ws.request(FILES, json!({ "p": team.project })).await.get("errors").is_some()
        })
        .await;
        let update = STANDARD.encode(new_file_update("late.py", "x"));
        let stale = ws.request(APPLY, json!({ "p": team.project, "u": update })).await;
        assert_eq!(stale["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{stale}");
        let sub = ws.subscribe(SUBSCRIBE, json!({ "p": team.project })).await;
        assert_eq!(ws.next(&sub).await.code(), "UNAUTHENTICATED");
        assert_eq!(app.count("document_updates").await, 0);
    }

    async fn outsiders_are_cut_off_when_a_public_project_turns_private(app) {
        let owner = app.sign_up("owner").await;
        let outsider = app.sign_up("outsider").await;
        let project = app.create_project(&owner, "Open", true).await;
        let mut ws = WsClient::connect(&app, Some(&outsider.access)).await;
        let doc = ws.subscribe(SUBSCRIBE, json!({ "p": project })).await;
        assert_eq!(ws.next(&doc).await.data()["documentUpdates"]["catchUp"], true);
        let events = ws
            .subscribe("subscription($p: ID!) { projectEvents(projectId: $p) { __typename ... on VisibilityChanged { isPublic } } }", json!({ "p": project }))
            .await;
        // A member keeps following.
        let mut member = WsClient::connect(&app, Some(&owner.access)).await;
        let kept = member.subscribe(SUBSCRIBE, json!({ "p": project })).await;
        member.next(&kept).await;
        app.gql_as(&owner.access, "mutation($p: ID!) { updateProject(id: $p, input: {isPublic: false}) { isPublic } }", json!({ "p": project }))
            .await
            .data();
        assert_eq!(ws.next(&doc).await.code(), "FORBIDDEN");
        let event = ws.next(&events).await;
        assert_eq!(event.data()["projectEvents"], json!({ "__typename": "VisibilityChanged", "isPublic": false }));
        assert_eq!(ws.next(&events).await.code(), "FORBIDDEN");
        assert!(member.is_quiet(&kept, Duration::from_millis(300)).await);
    }

    async fn subscriptions_check_access_and_end_when_it_is_lost(app) {
        let team = team(&app).await;
        let mut anonymous = WsClient::connect(&app, None).await;
        let sub = anonymous.subscribe(SUBSCRIBE, json!({ "p": team.project })).await;
        assert_eq!(anonymous.next(&sub).await.code(), "NOT_FOUND");
        // A forged token is refused when the connection is initialised (close 4403).
        let mut forged = WsClient::open(&app).await;
        forged.send(json!({ "type": "connection_init", "payload": { "authorization": "Bearer not-a-token" } })).await;
        assert_eq!(forged.close_code().await, Some(4403));
        let mut bad = WsClient::connect(&app, Some(&team.editor.access)).await;
        let sub = bad.subscribe(SUBSCRIBE, json!({ "p": team.project, "since": STANDARD.encode(b"garbage") })).await;
        assert_eq!(bad.next(&sub).await.code(), "BAD_USER_INPUT");

        let mut editor = Peer::join(&app, &team.editor, &team.project, 61).await;
        app.gql_as(
            &team.owner.access,
            "mutation($p: ID!, $u: ID!) { removeMember(projectId: $p, userId: $u) { id } }",
            json!({ "p": team.project, "u": team.editor.id }),
        )
        .await
        .data();
        let ended = editor.ws.next(&editor.sub).await;
        assert_eq!(ended.code(), "FORBIDDEN");
        assert!(matches!(editor.ws.next(&editor.sub).await, Event::Complete));
    }
}

/// A change of role made on one node voids, on the other, the permission an editor's edits
/// there were just found to have (heard through Redis), not only a second later.
#[tokio::test]
async fn a_change_of_role_on_one_node_stops_edits_on_another_at_once() {
    codecrafter_tests::run_with(
        codecrafter_tests::Backend::Postgres,
        codecrafter_tests::use_redis,
        |app| async move {
            let node_b = app.spawn_node().await;
            let team = team(&app).await;
            let mut editor = Peer::join(&node_b, &team.editor, &team.project, 63).await;
            let mut events = WsClient::connect(&node_b, Some(&team.viewer.access)).await;
            let heard = events
                .subscribe(
                    "subscription($p: ID!) { projectEvents(projectId: $p) { __typename } }",
                    json!({ "p": team.project }),
                )
                .await;
            editor.edit(|p| p.text("a.py").insert(0, "a").unwrap()).await;
            app.gql_as(
                &team.owner.access,
                "mutation($p: ID!, $u: ID!) { setMemberRole(projectId: $p, userId: $u, role: VIEWER) { role } }",
                json!({ "p": team.project, "u": team.editor.id }),
            )
            .await
            .data();
            let event = events.next(&heard).await;
            assert_eq!(event.data()["projectEvents"]["__typename"], "MemberRoleChanged");
            assert_eq!(try_edit(&mut editor, "b").await, "FORBIDDEN");
            assert_eq!(
                server_files(&app, &team.owner.access, &team.project).await,
                json!({ "a.py": "a" })
            );
        },
    )
    .await;
}

/// Several clients edit at random, at the same time, through two API nodes that share
/// PostgreSQL and Redis; every client, both nodes and a freshly started server end identical.
#[tokio::test]
async fn concurrent_edits_on_two_nodes_converge() {
    codecrafter_tests::run_with(
        codecrafter_tests::Backend::Postgres,
        codecrafter_tests::use_redis,
        |app| async move {
            let node_b = app.spawn_node().await;
            let team = team(&app).await;
            let users = [&team.owner, &team.editor, &team.owner, &team.editor];
            let mut peers = Vec::new();
            for (i, user) in users.iter().enumerate() {
                let node = if i % 2 == 0 { &app } else { &node_b };
                peers.push(Peer::join(node, user, &team.project, 100 + i as u64).await);
            }
            let mut seed = 0x2545_f491_4f6c_dd1d_u64;
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            let paths = ["a.py", "b.py", "dir/c.py"];
            for round in 0..8 {
                // Everybody edits without waiting for the others: truly concurrent changes.
                let mut edits = Vec::new();
                for peer in peers.iter_mut() {
                    let path = paths[(next() % 3) as usize];
                    let roll = next();
                    let word = format!("<{round}:{}>", peer.name.len() as u64 + roll % 100);
                    edits.push(async move {
                        peer.edit(|p| {
                            let text = p.text(path);
                            let len = text.len_unicode();
                            if len > 8 && roll % 4 == 0 {
                                text.delete((roll as usize) % (len - 3), 3).unwrap();
                            } else {
                                text.insert(
                                    if len == 0 { 0 } else { (roll as usize) % len },
                                    &word,
                                )
                                .unwrap();
                            }
                        })
                        .await
                    });
                }
                futures_util::future::join_all(edits).await;
                // Take in some of what the others did before the next round.
                for peer in peers.iter_mut() {
                    while !peer.ws.is_quiet(&peer.sub, Duration::from_millis(20)).await {
                        let event = peer.ws.next(&peer.sub).await;
                        peer.import(&event);
                    }
                }
            }
            let target_a = head(&app, &team.owner.access, &team.project).await;
            let target_b = head(&node_b, &team.owner.access, &team.project).await;
            let mut target = target_a.clone();
            target.merge(&target_b);
            for peer in peers.iter_mut() {
                peer.sync_to(&target).await;
            }
            let expected = peers[0].files();
            assert_eq!(expected.as_object().unwrap().len(), 3, "{expected}");
            for peer in &peers {
                assert_eq!(peer.files(), expected);
            }
            // Both nodes hold the same, and so does a server started afresh from the database.
            codecrafter_tests::eventually(Duration::from_secs(5), || async {
                server_files(&app, &team.owner.access, &team.project).await == expected
                    && server_files(&node_b, &team.owner.access, &team.project).await == expected
            })
            .await;
            let fresh = app.restart().await;
            assert_eq!(
                server_files(&fresh, &team.owner.access, &team.project).await,
                expected
            );
        },
    )
    .await;
}
