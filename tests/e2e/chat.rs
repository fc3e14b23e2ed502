//! Chat and project events: sendMessage, messages (pages, newest first), and projectEvents
//! over a real WebSocket.

use std::collections::HashSet;
use std::time::Duration;

use codecrafter_tests::ws::{Event, WsClient};
use codecrafter_tests::{TestApp, TestUser, backend_tests};
use sea_orm::{ActiveModelTrait, Set};
use serde_json::{Value, json};

const SEND: &str = "mutation($p: ID!, $t: String!) { sendMessage(projectId: $p, text: $t) { id text author { username } createdAt } }";
const MESSAGES: &str = "query($p: ID!, $first: Int!, $before: String) { messages(projectId: $p, first: $first, before: $before) { edges { cursor node { id text author { username } } } pageInfo { hasNextPage hasPreviousPage endCursor } } }";
const EVENTS: &str = "subscription($p: ID!) { projectEvents(projectId: $p) { __typename \
    ... on MessagePosted { message { id text author { username } createdAt } } \
    ... on MemberJoined { user { username } role } \
    ... on MemberRoleChanged { user { username } role } \
    ... on MemberLeft { user { username } } \
    ... on MemberRemoved { user { username } } \
    ... on ProjectDeleted { projectId } } }";

async fn send(app: &TestApp, user: &TestUser, project: &str, text: &str) -> codecrafter_tests::Gql {
    app.gql_as(&user.access, SEND, json!({ "p": project, "t": text }))
        .await
}

async fn page(
    app: &TestApp,
    token: Option<&str>,
    project: &str,
    first: i32,
    before: Option<&str>,
) -> codecrafter_tests::Gql {
    let variables = json!({ "p": project, "first": first, "before": before });
    match token {
        Some(token) => app.gql_as(token, MESSAGES, variables).await,
        None => app.gql(MESSAGES, variables).await,
    }
}

/// The `projectEvents` payload of an event.
fn event(event: &Event) -> &Value {
    &event.data()["projectEvents"]
}

/// Post numbered probe messages as `poster` until the subscription `sub` receives one: from
/// then on it is live (everything published after a probe it received reaches it). Every
/// probe it gets is consumed, in order; returns how many were posted, for the other
/// subscribers to skip.
async fn until_live(
    app: &TestApp,
    poster: &TestUser,
    project: &str,
    ws: &mut WsClient,
    sub: &str,
) -> usize {
    let label = format!("probe from {}", poster.username);
    for posted in 1..=200 {
        send(app, poster, project, &format!("{label} #{posted}"))
            .await
            .data();
        if ws.is_quiet(sub, Duration::from_millis(200)).await {
            continue;
        }
        let first = ws.next(sub).await;
        let text = event(&first)["message"]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        let got: usize = text
            .strip_prefix(&format!("{label} #"))
            .unwrap_or_else(|| panic!("expected a probe, got {text}"))
            .parse()
            .unwrap();
        for expected in got + 1..=posted {
            let next = ws.next(sub).await;
            assert_eq!(
                event(&next)["message"]["text"],
                format!("{label} #{expected}")
            );
        }
        return posted;
    }
    panic!("the subscription never received a message");
}

/// Consume `count` probes of `poster` from a subscription that was live before they were sent.
async fn skip_probes(ws: &mut WsClient, sub: &str, poster: &TestUser, count: usize) {
    for n in 1..=count {
        let next = ws.next(sub).await;
        assert_eq!(
            event(&next)["message"]["text"],
            format!("probe from {} #{n}", poster.username)
        );
    }
}

backend_tests! {
    async fn messages_are_validated_and_for_members_only(app) {
        let owner = app.sign_up("owner").await;
        let viewer = app.sign_up("viewer").await;
        let stranger = app.sign_up("stranger").await;
        let private = app.create_project(&owner, "Chat", false).await;
        let public = app.create_project(&owner, "Chat", true).await;
        app.add_member(&owner, &private, &viewer, "VIEWER").await;

        let sent = send(&app, &owner, &private, "  hello, team \n").await;
        let message = &sent.data()["sendMessage"];
        assert_eq!(message["text"], "hello, team");
        assert_eq!(message["author"]["username"], "owner");
        assert_eq!(app.count("messages").await, 1);

        // Nothing is written for a refused message.
        for text in ["", "  \n\t ", &"x".repeat(4001), "ding\u{7}"] {
            send(&app, &owner, &private, text).await.assert_error("BAD_USER_INPUT", Some("text"));
        }
        assert_eq!(app.count("messages").await, 1);
        // The limit counts characters, not bytes.
        let long = "é".repeat(4000);
        assert_eq!(send(&app, &owner, &private, &long).await.data()["sendMessage"]["text"], long.as_str());
        assert_eq!(app.count("messages").await, 2);

        // Any member may chat, viewers included; nobody else may.
        send(&app, &viewer, &private, "a viewer speaks").await.data();
        send(&app, &stranger, &private, "let me in").await.assert_error("NOT_FOUND", None);
        send(&app, &stranger, &public, "let me in").await.assert_error("FORBIDDEN", None);
        app.gql(SEND, json!({ "p": public, "t": "anonymous" })).await.assert_error("UNAUTHENTICATED", None);
        send(&app, &owner, "not-an-id", "hi").await.assert_error("BAD_USER_INPUT", Some("projectId"));
        assert_eq!(app.count("messages").await, 3);

        // Reading follows read access: members of a private project, anyone for a public one.
        let read = page(&app, Some(&viewer.access), &private, 20, None).await;
        let texts: Vec<&str> = read.data()["messages"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["text"].as_str().unwrap()).collect();
        assert_eq!(texts, ["a viewer speaks", long.as_str(), "hello, team"]);
        page(&app, Some(&stranger.access), &private, 20, None).await.assert_error("NOT_FOUND", None);
        page(&app, None, &private, 20, None).await.assert_error("NOT_FOUND", None);
        let anonymous = page(&app, None, &public, 20, None).await;
        assert_eq!(anonymous.data()["messages"]["edges"], json!([]));
    }

    async fn messages_page_newest_first_without_gaps_or_duplicates(app) {
        let owner = app.sign_up("owner").await;
        let project = app.create_project(&owner, "Chat", false).await;
        for i in 0..25 {
            send(&app, &owner, &project, &format!("m{i}")).await.data();
        }
        // Five older messages posted in the same microsecond: the cursor's id tie-breaker
        // must still walk through them one by one.
        let owner_id = uuid::Uuid::parse_str(&owner.id).unwrap();
        let project_id = uuid::Uuid::parse_str(&project).unwrap();
        let same_instant = sea_orm::prelude::DateTimeUtc::from_timestamp(1_700_000_000, 123_456_000).unwrap();
        let mut tied = Vec::new();
        for i in 0..5 {
            let id = uuid::Uuid::new_v4();
            entity::message::ActiveModel {
                id: Set(id),
                project_id: Set(project_id),
                author_id: Set(owner_id),
                body: Set(format!("tied{i}")),
                created_at: Set(same_instant),
            }
            .insert(&app.db)
            .await
            .unwrap();
            tied.push((id.to_string(), format!("tied{i}")));
        }
        tied.sort_by(|a, b| b.0.cmp(&a.0));

        let mut texts = Vec::new();
        let mut ids = HashSet::new();
        let mut before: Option<String> = None;
        let mut pages = 0;
        loop {
            let answer = page(&app, Some(&owner.access), &project, 7, before.as_deref()).await;
            let messages = &answer.data()["messages"];
            let info = &messages["pageInfo"];
            assert_eq!(info["hasPreviousPage"], before.is_some());
            for edge in messages["edges"].as_array().unwrap() {
                assert!(ids.insert(edge["node"]["id"].as_str().unwrap().to_owned()), "duplicate {edge}");
                texts.push(edge["node"]["text"].as_str().unwrap().to_owned());
            }
            pages += 1;
            if info["hasNextPage"] == false {
                break;
            }
            assert_eq!(messages["edges"].as_array().unwrap().len(), 7);
            before = Some(info["endCursor"].as_str().unwrap().to_owned());
            assert!(pages < 10, "pagination does not end");
        }
        assert_eq!(pages, 5);
        let mut expected: Vec<String> = (0..25).rev().map(|i| format!("m{i}")).collect();
        expected.extend(tied.iter().map(|(_, text)| text.clone()));
        assert_eq!(texts, expected);

        // The default page is 20; sizes outside 1..=100 and foreign cursors are refused.
        let default = app
            .gql_as(&owner.access, "query($p: ID!) { messages(projectId: $p) { edges { node { id } } pageInfo { hasNextPage } } }", json!({ "p": project }))
            .await;
        assert_eq!(default.data()["messages"]["edges"].as_array().unwrap().len(), 20);
        assert_eq!(default.data()["messages"]["pageInfo"]["hasNextPage"], true);
        for first in [0, 101, -1] {
            page(&app, Some(&owner.access), &project, first, None).await.assert_error("BAD_USER_INPUT", Some("first"));
        }
        for cursor in ["garbage", "bm9wZQ", ""] {
            page(&app, Some(&owner.access), &project, 5, Some(cursor)).await.assert_error("BAD_USER_INPUT", Some("before"));
        }
    }

    async fn project_events_deliver_chat_and_membership_live(app) {
        let owner = app.sign_up("owner").await;
        let bob = app.sign_up("bob").await;
        let project = app.create_project(&owner, "Chat", false).await;

        let mut owner_ws = WsClient::connect(&app, Some(&owner.access)).await;
        let owner_sub = owner_ws.subscribe(EVENTS, json!({ "p": project })).await;
        until_live(&app, &owner, &project, &mut owner_ws, &owner_sub).await;

        app.add_member(&owner, &project, &bob, "VIEWER").await;
        let joined = owner_ws.next(&owner_sub).await;
        assert_eq!(*event(&joined), json!({ "__typename": "MemberJoined", "user": { "username": "bob" }, "role": "VIEWER" }));

        let mut bob_ws = WsClient::connect(&app, Some(&bob.access)).await;
        let bob_sub = bob_ws.subscribe(EVENTS, json!({ "p": project })).await;
        let probes = until_live(&app, &bob, &project, &mut bob_ws, &bob_sub).await;
        skip_probes(&mut owner_ws, &owner_sub, &bob, probes).await;

        // A message reaches every subscriber, as `messages` lists it.
        let sent = send(&app, &bob, &project, "hi all").await;
        let sent = &sent.data()["sendMessage"];
        for (ws, sub) in [(&mut owner_ws, &owner_sub), (&mut bob_ws, &bob_sub)] {
            let posted = ws.next(sub).await;
            assert_eq!(event(&posted)["__typename"], "MessagePosted");
            assert_eq!(event(&posted)["message"], *sent);
        }

        app.gql_as(
            &owner.access,
            "mutation($p: ID!, $u: ID!) { setMemberRole(projectId: $p, userId: $u, role: EDITOR) { role } }",
            json!({ "p": project, "u": bob.id }),
        )
        .await
        .data();
        for (ws, sub) in [(&mut owner_ws, &owner_sub), (&mut bob_ws, &bob_sub)] {
            let changed = ws.next(sub).await;
            assert_eq!(*event(&changed), json!({ "__typename": "MemberRoleChanged", "user": { "username": "bob" }, "role": "EDITOR" }));
        }

        // Removal: everyone hears of it; the removed member hears it last, then is cut off.
        app.gql_as(
            &owner.access,
            "mutation($p: ID!, $u: ID!) { removeMember(projectId: $p, userId: $u) { id } }",
            json!({ "p": project, "u": bob.id }),
        )
        .await
        .data();
        let removed = json!({ "__typename": "MemberRemoved", "user": { "username": "bob" } });
        assert_eq!(*event(&owner_ws.next(&owner_sub).await), removed);
        assert_eq!(*event(&bob_ws.next(&bob_sub).await), removed);
        assert_eq!(bob_ws.next(&bob_sub).await.code(), "FORBIDDEN");
        assert!(matches!(bob_ws.next(&bob_sub).await, Event::Complete));

        // The owner's subscription goes on.
        send(&app, &owner, &project, "still here").await.data();
        let posted = owner_ws.next(&owner_sub).await;
        assert_eq!(event(&posted)["message"]["text"], "still here");
        assert_eq!(event(&posted)["message"]["author"]["username"], "owner");
    }

    async fn project_events_need_read_access_and_end_with_the_project(app) {
        let owner = app.sign_up("owner").await;
        let stranger = app.sign_up("stranger").await;
        let private = app.create_project(&owner, "Chat", false).await;
        let public = app.create_project(&owner, "Chat", true).await;

        let mut stranger_ws = WsClient::connect(&app, Some(&stranger.access)).await;
        let refused = stranger_ws.subscribe(EVENTS, json!({ "p": private })).await;
        assert_eq!(stranger_ws.next(&refused).await.code(), "NOT_FOUND");
        let bad = stranger_ws.subscribe(EVENTS, json!({ "p": "nope" })).await;
        assert_eq!(stranger_ws.next(&bad).await.code(), "BAD_USER_INPUT");

        // A public project's events are readable by a non-member, who sees others join.
        let stranger_sub = stranger_ws.subscribe(EVENTS, json!({ "p": public })).await;
        until_live(&app, &owner, &public, &mut stranger_ws, &stranger_sub).await;
        let carol = app.sign_up("carol").await;
        app.gql_as(&carol.access, "mutation($p: ID!) { joinProject(id: $p) { id } }", json!({ "p": public })).await.data();
        assert_eq!(*event(&stranger_ws.next(&stranger_sub).await), json!({ "__typename": "MemberJoined", "user": { "username": "carol" }, "role": "VIEWER" }));
        app.gql_as(&carol.access, "mutation($p: ID!) { leaveProject(id: $p) }", json!({ "p": public })).await.data();
        assert_eq!(*event(&stranger_ws.next(&stranger_sub).await), json!({ "__typename": "MemberLeft", "user": { "username": "carol" } }));

        // Deleting the project ends every subscription, after telling it.
        let mut owner_ws = WsClient::connect(&app, Some(&owner.access)).await;
        let owner_sub = owner_ws.subscribe(EVENTS, json!({ "p": public })).await;
        let probes = until_live(&app, &owner, &public, &mut owner_ws, &owner_sub).await;
        skip_probes(&mut stranger_ws, &stranger_sub, &owner, probes).await;
        app.gql_as(&owner.access, "mutation($p: ID!) { deleteProject(id: $p) }", json!({ "p": public })).await.data();
        for (ws, sub) in [(&mut owner_ws, &owner_sub), (&mut stranger_ws, &stranger_sub)] {
            assert_eq!(*event(&ws.next(sub).await), json!({ "__typename": "ProjectDeleted", "projectId": public }));
            assert_eq!(ws.next(sub).await.code(), "FORBIDDEN");
            assert!(matches!(ws.next(sub).await, Event::Complete));
        }
    }
}
