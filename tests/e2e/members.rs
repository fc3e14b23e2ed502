//! Members: joining, adding, roles, removal, leaving and ownership, with their rules.

use codecrafter_tests::{TestApp, backend_tests};
use serde_json::{Value, json};

const ADD: &str = "mutation($p: ID!, $u: String!, $r: ProjectRole!) { addMember(projectId: $p, username: $u, role: $r) { role user { username } } }";
const SET_ROLE: &str = "mutation($p: ID!, $u: ID!, $r: ProjectRole!) { setMemberRole(projectId: $p, userId: $u, role: $r) { role } }";
const REMOVE: &str =
    "mutation($p: ID!, $u: ID!) { removeMember(projectId: $p, userId: $u) { id } }";
const LEAVE: &str = "mutation($p: ID!) { leaveProject(id: $p) }";
const JOIN: &str = "mutation($p: ID!) { joinProject(id: $p) { viewerRole } }";
const TRANSFER: &str = "mutation($p: ID!, $u: ID!) { transferOwnership(projectId: $p, userId: $u) { viewerRole owner { username } } }";
const MEMBERS: &str =
    "query($p: ID!) { project(id: $p) { owner { username } members { role user { username } } } }";

/// `{ username: role }` and the primary owner.
async fn roster(app: &TestApp, token: &str, project: &str) -> (Value, String) {
    let answer = app.gql_as(token, MEMBERS, json!({ "p": project })).await;
    let data = &answer.data()["project"];
    let mut members = serde_json::Map::new();
    for member in data["members"].as_array().unwrap() {
        members.insert(
            member["user"]["username"].as_str().unwrap().to_owned(),
            member["role"].clone(),
        );
    }
    (
        Value::Object(members),
        data["owner"]["username"].as_str().unwrap().to_owned(),
    )
}

backend_tests! {
    async fn joining_public_projects_as_viewer(app) {
        let ada = app.sign_up("ada").await;
        let bob = app.sign_up("bob").await;
        let public = app.create_project(&ada, "Team", true).await;
        let private = app.create_project(&ada, "Team", false).await;
        let joined = app.gql_as(&bob.access, JOIN, json!({ "p": public })).await;
        assert_eq!(joined.data()["joinProject"]["viewerRole"], "VIEWER");
        let again = app.gql_as(&bob.access, JOIN, json!({ "p": public })).await;
        assert_eq!(again.data()["joinProject"]["viewerRole"], "VIEWER");
        assert_eq!(app.count("project_members").await, 3);
        // The owner joining their own project keeps OWNER.
        let own = app.gql_as(&ada.access, JOIN, json!({ "p": public })).await;
        assert_eq!(own.data()["joinProject"]["viewerRole"], "OWNER");
        app.gql_as(&bob.access, JOIN, json!({ "p": private })).await.assert_error("NOT_FOUND", None);
        app.gql(JOIN, json!({ "p": public })).await.assert_error("UNAUTHENTICATED", None);
        assert_eq!(app.count("project_members").await, 3);
    }

    async fn owners_add_members_by_username(app) {
        let ada = app.sign_up("ada").await;
        let bob = app.sign_up("bob").await;
        let cy = app.sign_up("cyd").await;
        let p = app.create_project(&ada, "Team", false).await;
        let added = app.gql_as(&ada.access, ADD, json!({ "p": p, "u": "BOB", "r": "EDITOR" })).await;
        assert_eq!(added.data()["addMember"], json!({ "role": "EDITOR", "user": { "username": "bob" } }));
        // Editors cannot add; unknown users and existing members are refused.
        app.gql_as(&bob.access, ADD, json!({ "p": p, "u": "cyd", "r": "VIEWER" })).await.assert_error("FORBIDDEN", None);
        app.gql_as(&ada.access, ADD, json!({ "p": p, "u": "nobody", "r": "VIEWER" })).await.assert_error("NOT_FOUND", None);
        app.gql_as(&ada.access, ADD, json!({ "p": p, "u": "bob", "r": "VIEWER" })).await.assert_error("CONFLICT", Some("username"));
        app.gql_as(&cy.access, ADD, json!({ "p": p, "u": "cyd", "r": "OWNER" })).await.assert_error("NOT_FOUND", None);
        let (members, owner) = roster(&app, &ada.access, &p).await;
        assert_eq!(members, json!({ "ada": "OWNER", "bob": "EDITOR" }));
        assert_eq!(owner, "ada");
    }

    async fn roles_change_but_a_project_keeps_an_owner(app) {
        let ada = app.sign_up("ada").await;
        let bob = app.sign_up("bob").await;
        let p = app.create_project(&ada, "Team", false).await;
        app.gql_as(&ada.access, ADD, json!({ "p": p, "u": "bob", "r": "VIEWER" })).await.data();
        app.gql_as(&bob.access, SET_ROLE, json!({ "p": p, "u": bob.id, "r": "OWNER" })).await.assert_error("FORBIDDEN", None);
        app.gql_as(&ada.access, SET_ROLE, json!({ "p": p, "u": ada.id, "r": "EDITOR" })).await.assert_error("CONFLICT", None);
        let stranger = uuid::Uuid::new_v4().to_string();
        app.gql_as(&ada.access, SET_ROLE, json!({ "p": p, "u": stranger, "r": "EDITOR" })).await.assert_error("NOT_FOUND", None);
        app.gql_as(&ada.access, SET_ROLE, json!({ "p": p, "u": "nope", "r": "EDITOR" })).await.assert_error("BAD_USER_INPUT", Some("userId"));
        let promoted = app.gql_as(&ada.access, SET_ROLE, json!({ "p": p, "u": bob.id, "r": "OWNER" })).await;
        assert_eq!(promoted.data()["setMemberRole"]["role"], "OWNER");
        // With two owners, the first may step down; the primary owner moves to the other.
        app.gql_as(&ada.access, SET_ROLE, json!({ "p": p, "u": ada.id, "r": "EDITOR" })).await.data();
        let (members, owner) = roster(&app, &bob.access, &p).await;
        assert_eq!(members, json!({ "ada": "EDITOR", "bob": "OWNER" }));
        assert_eq!(owner, "bob");
    }

    async fn removed_members_lose_access(app) {
        let ada = app.sign_up("ada").await;
        let bob = app.sign_up("bob").await;
        let cy = app.sign_up("cyd").await;
        let p = app.create_project(&ada, "Team", false).await;
        for user in ["bob", "cyd"] {
            app.gql_as(&ada.access, ADD, json!({ "p": p, "u": user, "r": "EDITOR" })).await.data();
        }
        app.gql_as(&bob.access, REMOVE, json!({ "p": p, "u": cy.id })).await.assert_error("FORBIDDEN", None);
        app.gql_as(&ada.access, REMOVE, json!({ "p": p, "u": ada.id })).await.assert_error("CONFLICT", None);
        app.gql_as(&ada.access, REMOVE, json!({ "p": p, "u": cy.id })).await.data();
        app.gql_as(&cy.access, MEMBERS, json!({ "p": p })).await.assert_error("NOT_FOUND", None);
        app.gql_as(&ada.access, REMOVE, json!({ "p": p, "u": cy.id })).await.assert_error("NOT_FOUND", None);
        let (members, _) = roster(&app, &ada.access, &p).await;
        assert_eq!(members, json!({ "ada": "OWNER", "bob": "EDITOR" }));
    }

    async fn leaving_and_the_last_owner(app) {
        let ada = app.sign_up("ada").await;
        let bob = app.sign_up("bob").await;
        let p = app.create_project(&ada, "Team", false).await;
        app.gql_as(&ada.access, LEAVE, json!({ "p": p })).await.assert_error("CONFLICT", None);
        app.gql_as(&ada.access, ADD, json!({ "p": p, "u": "bob", "r": "EDITOR" })).await.data();
        let left = app.gql_as(&bob.access, LEAVE, json!({ "p": p })).await;
        assert_eq!(left.data()["leaveProject"], p.as_str());
        app.gql_as(&bob.access, MEMBERS, json!({ "p": p })).await.assert_error("NOT_FOUND", None);
        // A second owner lets the first leave; ownership moves.
        app.gql_as(&ada.access, ADD, json!({ "p": p, "u": "bob", "r": "OWNER" })).await.data();
        app.gql_as(&ada.access, LEAVE, json!({ "p": p })).await.data();
        let (members, owner) = roster(&app, &bob.access, &p).await;
        assert_eq!(members, json!({ "bob": "OWNER" }));
        assert_eq!(owner, "bob");
    }

    async fn ownership_is_transferred_to_a_member(app) {
        let ada = app.sign_up("ada").await;
        let bob = app.sign_up("bob").await;
        let cy = app.sign_up("cyd").await;
        let p = app.create_project(&ada, "Team", false).await;
        app.gql_as(&ada.access, ADD, json!({ "p": p, "u": "bob", "r": "VIEWER" })).await.data();
        app.gql_as(&ada.access, TRANSFER, json!({ "p": p, "u": ada.id })).await.assert_error("BAD_USER_INPUT", Some("userId"));
        app.gql_as(&ada.access, TRANSFER, json!({ "p": p, "u": cy.id })).await.assert_error("NOT_FOUND", None);
        app.gql_as(&bob.access, TRANSFER, json!({ "p": p, "u": bob.id })).await.assert_error("BAD_USER_INPUT", Some("userId"));
        app.gql_as(&bob.access, TRANSFER, json!({ "p": p, "u": ada.id })).await.assert_error("FORBIDDEN", None);
        let moved = app.gql_as(&ada.access, TRANSFER, json!({ "p": p, "u": bob.id })).await;
        assert_eq!(moved.data()["transferOwnership"], json!({ "viewerRole": "EDITOR", "owner": { "username": "bob" } }));
        let (members, owner) = roster(&app, &bob.access, &p).await;
        assert_eq!(members, json!({ "ada": "EDITOR", "bob": "OWNER" }));
        assert_eq!(owner, "bob");
        // The former owner can no longer manage the project.
        app.gql_as(&ada.access, ADD, json!({ "p": p, "u": "cyd", "r": "VIEWER" })).await.assert_error("FORBIDDEN", None);
    }

    async fn two_owners_leaving_at_once_leave_one_owner(app) {
        let ada = app.sign_up("ada").await;
        let bob = app.sign_up("bob").await;
        let p = app.create_project(&ada, "Team", false).await;
        app.gql_as(&ada.access, ADD, json!({ "p": p, "u": "bob", "r": "OWNER" })).await.data();
        let (a, b) = tokio::join!(
            app.gql_as(&ada.access, LEAVE, json!({ "p": p })),
            app.gql_as(&bob.access, LEAVE, json!({ "p": p })),
        );
        let outcomes = [&a, &b].map(|r| r.body.get("errors").is_none());
        assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "{} / {}", a.body, b.body);
        let failed = if outcomes[0] { &b } else { &a };
        assert_eq!(failed.code(), "CONFLICT");
        assert_eq!(app.count("project_members").await, 1);
    }
}
