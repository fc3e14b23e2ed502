//! Project members: joining, leaving, adding, roles, removal and ownership.

use codecrafter_tests::serde_json::{Value, json};
use codecrafter_tests::{Gql, TestApp, TestUser, backend_tests};

use crate::projects::{
    add_member, members, new_project, project_as, read_project, roster, send, time, update_project,
};

const MEMBERSHIP: &str =
    "id viewerRole owner { username } members { role joinedAt user { username } }";
const UNKNOWN: &str = "00000000-0000-4000-8000-000000000000";

async fn join(app: &TestApp, user: Option<&TestUser>, id: &str) -> Gql {
    let query = format!("mutation($id: ID!) {{ joinProject(id: $id) {{ {MEMBERSHIP} }} }}");
    send(app, user, &query, json!({ "id": id })).await
}

async fn leave(app: &TestApp, user: Option<&TestUser>, id: &str) -> Gql {
    send(
        app,
        user,
        "mutation($id: ID!) { leaveProject(id: $id) }",
        json!({ "id": id }),
    )
    .await
}

async fn set_role(
    app: &TestApp,
    by: Option<&TestUser>,
    project: &str,
    user_id: &str,
    role: &str,
) -> Gql {
    send(
        app,
        by,
        "mutation($p: ID!, $u: ID!, $r: ProjectRole!) { setMemberRole(projectId: $p, userId: $u, role: $r) { role user { id username } } }",
        json!({ "p": project, "u": user_id, "r": role }),
    )
    .await
}

async fn remove(app: &TestApp, by: Option<&TestUser>, project: &str, user_id: &str) -> Gql {
    let query = format!(
        "mutation($p: ID!, $u: ID!) {{ removeMember(projectId: $p, userId: $u) {{ {MEMBERSHIP} }} }}"
    );
    send(app, by, &query, json!({ "p": project, "u": user_id })).await
}

async fn transfer(app: &TestApp, by: Option<&TestUser>, project: &str, user_id: &str) -> Gql {
    let query = format!(
        "mutation($p: ID!, $u: ID!) {{ transferOwnership(projectId: $p, userId: $u) {{ {MEMBERSHIP} updatedAt }} }}"
    );
    send(app, by, &query, json!({ "p": project, "u": user_id })).await
}

/// The roster of a project as its member `user` sees it.
async fn roster_of(app: &TestApp, user: &TestUser, id: &str) -> Vec<(String, String)> {
    roster(&project_as(app, Some(user), id).await)
}

fn succeeded(answer: &Gql) -> bool {
    answer.body.get("errors").is_none()
}

backend_tests! {
    async fn joining_a_public_project_makes_a_viewer_once(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        let id = new_project(&app, &alice, "open", true).await;

        let joined = join(&app, Some(&bob), &id).await;
        let project = joined.data()["joinProject"].clone();
        assert_eq!(project["viewerRole"], "VIEWER");
        assert_eq!(roster(&project), members(&[("alice", "OWNER"), ("bob", "VIEWER")]));
        assert_eq!(app.count("project_members").await, 2);
        assert_eq!(project_as(&app, Some(&bob), &id).await["viewerRole"], "VIEWER");

        // Again: same role, same membership, no second row.
        let again = join(&app, Some(&bob), &id).await;
        let again = again.data()["joinProject"].clone();
        assert_eq!(again["viewerRole"], "VIEWER");
        assert_eq!(again["members"], project["members"]);
        assert_eq!(app.count("project_members").await, 2);

        // Joining never lowers a role.
        let own = join(&app, Some(&alice), &id).await;
        assert_eq!(own.data()["joinProject"]["viewerRole"], "OWNER");
        set_role(&app, Some(&alice), &id, &bob.id, "EDITOR").await.data();
        let editor = join(&app, Some(&bob), &id).await;
        assert_eq!(editor.data()["joinProject"]["viewerRole"], "EDITOR");
        assert_eq!(roster_of(&app, &alice, &id).await, members(&[("alice", "OWNER"), ("bob", "EDITOR")]));
        assert_eq!(app.count("project_members").await, 2);

        join(&app, None, &id).await.assert_error("UNAUTHENTICATED", None);
        join(&app, Some(&bob), "nope").await.assert_error("BAD_USER_INPUT", Some("id"));
        join(&app, Some(&bob), UNKNOWN).await.assert_error("NOT_FOUND", None);
        assert_eq!(app.count("project_members").await, 2);
    }

    async fn private_projects_cannot_be_joined(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        let admin = app.sign_up("admin").await;
        let admin = app.make_admin(&admin).await;
        let id = new_project(&app, &alice, "closed", false).await;

        join(&app, Some(&bob), &id).await.assert_error("NOT_FOUND", None);
        // Admins see the project, but are not let in either.
        join(&app, Some(&admin), &id).await.assert_error("FORBIDDEN", None);
        assert_eq!(app.count("project_members").await, 1);
        read_project(&app, Some(&bob), &id).await.assert_error("NOT_FOUND", None);
        assert_eq!(roster_of(&app, &alice, &id).await, members(&[("alice", "OWNER")]));
    }

    async fn owners_add_members_by_username(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        let carol = app.sign_up("carol").await;
        let dave = app.sign_up("dave").await;
        let erin = app.sign_up("erin").await;
        let admin = app.sign_up("admin").await;
        let admin = app.make_admin(&admin).await;
        let id = new_project(&app, &alice, "team", false).await;

        let added = add_member(&app, Some(&alice), &id, "bob", "EDITOR").await;
        assert_eq!(added.data()["addMember"]["role"], "EDITOR");
        assert_eq!(added.data()["addMember"]["user"]["id"], bob.id.as_str());
        let read = project_as(&app, Some(&bob), &id).await;
        assert_eq!(read["viewerRole"], "EDITOR");
        // Usernames are matched as typed by people: surrounding spaces and case do not matter.
        let added = add_member(&app, Some(&alice), &id, " Carol ", "VIEWER").await;
        assert_eq!(added.data()["addMember"]["user"]["username"], "carol");
        assert_eq!(project_as(&app, Some(&carol), &id).await["viewerRole"], "VIEWER");
        add_member(&app, Some(&alice), &id, "dave", "OWNER").await.data();
        assert_eq!(
            roster_of(&app, &alice, &id).await,
            members(&[("alice", "OWNER"), ("bob", "EDITOR"), ("carol", "VIEWER"), ("dave", "OWNER")])
        );
        assert_eq!(app.count("project_members").await, 4);

        add_member(&app, Some(&alice), &id, "nobody", "VIEWER").await.assert_error("NOT_FOUND", None);
        add_member(&app, Some(&alice), &id, "bob", "VIEWER").await.assert_error("CONFLICT", Some("username"));
        add_member(&app, Some(&alice), &id, "alice", "VIEWER").await.assert_error("CONFLICT", Some("username"));
        // Only owners add.
        add_member(&app, Some(&bob), &id, "erin", "VIEWER").await.assert_error("FORBIDDEN", None);
        add_member(&app, Some(&carol), &id, "erin", "VIEWER").await.assert_error("FORBIDDEN", None);
        add_member(&app, Some(&admin), &id, "erin", "VIEWER").await.assert_error("FORBIDDEN", None);
        add_member(&app, Some(&erin), &id, "erin", "OWNER").await.assert_error("NOT_FOUND", None);
        add_member(&app, None, &id, "erin", "VIEWER").await.assert_error("UNAUTHENTICATED", None);
        add_member(&app, Some(&alice), "nope", "erin", "VIEWER").await.assert_error("BAD_USER_INPUT", Some("projectId"));
        add_member(&app, Some(&alice), UNKNOWN, "erin", "VIEWER").await.assert_error("NOT_FOUND", None);
        add_member(&app, Some(&alice), &id, "erin", "ADMIN").await.assert_error("BAD_USER_INPUT", None);
        assert_eq!(app.count("project_members").await, 4);
        assert_eq!(project_as(&app, Some(&bob), &id).await["viewerRole"], "EDITOR");
        read_project(&app, Some(&erin), &id).await.assert_error("NOT_FOUND", None);

        // Every owner manages members, not only the primary one.
        add_member(&app, Some(&dave), &id, "erin", "VIEWER").await.data();
        assert_eq!(project_as(&app, Some(&erin), &id).await["viewerRole"], "VIEWER");
        assert_eq!(app.count("project_members").await, 5);
    }

    async fn owners_change_roles_but_keep_an_owner(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        let carol = app.sign_up("carol").await;
        let id = new_project(&app, &alice, "roles", false).await;
        add_member(&app, Some(&alice), &id, "bob", "VIEWER").await.data();

        let changed = set_role(&app, Some(&alice), &id, &bob.id, "EDITOR").await;
        assert_eq!(changed.data()["setMemberRole"]["role"], "EDITOR");
        assert_eq!(changed.data()["setMemberRole"]["user"]["username"], "bob");
        assert_eq!(project_as(&app, Some(&bob), &id).await["viewerRole"], "EDITOR");
        // Setting the role a member has is harmless.
        let same = set_role(&app, Some(&alice), &id, &bob.id, "EDITOR").await;
        assert_eq!(same.data()["setMemberRole"]["role"], "EDITOR");

        // Only owners change roles, their own included.
        set_role(&app, Some(&bob), &id, &bob.id, "OWNER").await.assert_error("FORBIDDEN", None);
        set_role(&app, Some(&bob), &id, &alice.id, "VIEWER").await.assert_error("FORBIDDEN", None);
        set_role(&app, Some(&carol), &id, &carol.id, "OWNER").await.assert_error("NOT_FOUND", None);
        set_role(&app, None, &id, &bob.id, "OWNER").await.assert_error("UNAUTHENTICATED", None);
        // The only owner cannot step down.
        let last = set_role(&app, Some(&alice), &id, &alice.id, "EDITOR").await;
        last.assert_error("CONFLICT", None);
        assert!(!last.message().is_empty());
        // Members only.
        set_role(&app, Some(&alice), &id, &carol.id, "VIEWER").await.assert_error("NOT_FOUND", None);
        set_role(&app, Some(&alice), &id, UNKNOWN, "VIEWER").await.assert_error("NOT_FOUND", None);
        set_role(&app, Some(&alice), &id, "nope", "VIEWER").await.assert_error("BAD_USER_INPUT", Some("userId"));
        set_role(&app, Some(&alice), "nope", &bob.id, "VIEWER").await.assert_error("BAD_USER_INPUT", Some("projectId"));
        let read = project_as(&app, Some(&alice), &id).await;
        assert_eq!(roster(&read), members(&[("alice", "OWNER"), ("bob", "EDITOR")]));
        assert_eq!(read["owner"]["username"], "alice");

        // With a second owner, the first may be demoted, and the primary owner moves.
        set_role(&app, Some(&alice), &id, &bob.id, "OWNER").await.data();
        let demoted = set_role(&app, Some(&bob), &id, &alice.id, "VIEWER").await;
        assert_eq!(demoted.data()["setMemberRole"]["role"], "VIEWER");
        let read = project_as(&app, Some(&alice), &id).await;
        assert_eq!(read["viewerRole"], "VIEWER");
        assert_eq!(read["owner"]["username"], "bob");
        assert_eq!(roster(&read), members(&[("alice", "VIEWER"), ("bob", "OWNER")]));
        set_role(&app, Some(&alice), &id, &alice.id, "OWNER").await.assert_error("FORBIDDEN", None);
        set_role(&app, Some(&bob), &id, &bob.id, "VIEWER").await.assert_error("CONFLICT", None);
        assert_eq!(roster_of(&app, &bob, &id).await, members(&[("alice", "VIEWER"), ("bob", "OWNER")]));
    }

    async fn owners_remove_members(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        let carol = app.sign_up("carol").await;
        let id = new_project(&app, &alice, "private", false).await;
        add_member(&app, Some(&alice), &id, "bob", "EDITOR").await.data();
        add_member(&app, Some(&alice), &id, "carol", "VIEWER").await.data();

        remove(&app, Some(&bob), &id, &carol.id).await.assert_error("FORBIDDEN", None);
        remove(&app, Some(&carol), &id, &bob.id).await.assert_error("FORBIDDEN", None);
        remove(&app, None, &id, &bob.id).await.assert_error("UNAUTHENTICATED", None);
        remove(&app, Some(&alice), &id, "nope").await.assert_error("BAD_USER_INPUT", Some("userId"));
        assert_eq!(app.count("project_members").await, 3);

        let removed = remove(&app, Some(&alice), &id, &carol.id).await;
        let project = removed.data()["removeMember"].clone();
        assert_eq!(project["viewerRole"], "OWNER");
        assert_eq!(roster(&project), members(&[("alice", "OWNER"), ("bob", "EDITOR")]));
        assert_eq!(app.count("project_members").await, 2);
        // The removed member lost access to the private project, and it left their list.
        read_project(&app, Some(&carol), &id).await.assert_error("NOT_FOUND", None);
        let mine = send(&app, Some(&carol), "{ projects(filter: {mine: true}) { totalCount } }", json!({})).await;
        assert_eq!(mine.data()["projects"]["totalCount"], 0);
        join(&app, Some(&carol), &id).await.assert_error("NOT_FOUND", None);

        remove(&app, Some(&alice), &id, &carol.id).await.assert_error("NOT_FOUND", None);
        remove(&app, Some(&alice), &id, UNKNOWN).await.assert_error("NOT_FOUND", None);
        // The last owner cannot be removed, not even by themself.
        remove(&app, Some(&alice), &id, &alice.id).await.assert_error("CONFLICT", None);
        assert_eq!(roster_of(&app, &alice, &id).await, members(&[("alice", "OWNER"), ("bob", "EDITOR")]));

        // A second owner may remove the primary one, and takes their place.
        set_role(&app, Some(&alice), &id, &bob.id, "OWNER").await.data();
        let removed = remove(&app, Some(&bob), &id, &alice.id).await;
        let project = removed.data()["removeMember"].clone();
        assert_eq!(project["owner"]["username"], "bob");
        assert_eq!(roster(&project), members(&[("bob", "OWNER")]));
        read_project(&app, Some(&alice), &id).await.assert_error("NOT_FOUND", None);
    }

    async fn members_leave_but_the_last_owner_stays(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        let carol = app.sign_up("carol").await;
        let private = new_project(&app, &alice, "private", false).await;
        let public = new_project(&app, &alice, "public", true).await;
        add_member(&app, Some(&alice), &private, "bob", "VIEWER").await.data();
        add_member(&app, Some(&alice), &private, "carol", "EDITOR").await.data();

        let left = leave(&app, Some(&bob), &private).await;
        assert_eq!(left.data()["leaveProject"], private.as_str());
        read_project(&app, Some(&bob), &private).await.assert_error("NOT_FOUND", None);
        assert_eq!(roster_of(&app, &alice, &private).await, members(&[("alice", "OWNER"), ("carol", "EDITOR")]));
        assert_eq!(app.count("project_members").await, 3);
        leave(&app, Some(&bob), &private).await.assert_error("NOT_FOUND", None);
        assert_eq!(project_as(&app, Some(&carol), &private).await["viewerRole"], "EDITOR");

        let last = leave(&app, Some(&alice), &private).await;
        last.assert_error("CONFLICT", None);
        assert!(!last.message().is_empty());
        assert_eq!(roster_of(&app, &alice, &private).await, members(&[("alice", "OWNER"), ("carol", "EDITOR")]));
        assert_eq!(project_as(&app, Some(&alice), &private).await["owner"]["username"], "alice");

        leave(&app, None, &private).await.assert_error("UNAUTHENTICATED", None);
        leave(&app, Some(&bob), "nope").await.assert_error("BAD_USER_INPUT", Some("id"));
        // Not a member of a project one can see: nothing to leave.
        leave(&app, Some(&bob), &public).await.assert_error("NOT_FOUND", None);

        // Leaving a public project leaves it readable, but no longer as a member.
        join(&app, Some(&bob), &public).await.data();
        leave(&app, Some(&bob), &public).await.data();
        let read = project_as(&app, Some(&bob), &public).await;
        assert_eq!(read["viewerRole"], Value::Null);
        assert_eq!(roster(&read), members(&[("alice", "OWNER")]));
        assert_eq!(app.count("project_members").await, 3);
    }

    async fn one_of_two_owners_may_leave_and_ownership_moves(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        let id = new_project(&app, &alice, "shared", false).await;
        add_member(&app, Some(&alice), &id, "bob", "OWNER").await.data();

        // A co-owner leaving leaves the primary owner as it was.
        let other = new_project(&app, &alice, "other", false).await;
        add_member(&app, Some(&alice), &other, "bob", "OWNER").await.data();
        leave(&app, Some(&bob), &other).await.data();
        let read = project_as(&app, Some(&alice), &other).await;
        assert_eq!(read["owner"]["username"], "alice");
        assert_eq!(roster(&read), members(&[("alice", "OWNER")]));

        // The primary owner leaving hands the project to the remaining owner.
        leave(&app, Some(&alice), &id).await.data();
        let read = project_as(&app, Some(&bob), &id).await;
        assert_eq!(read["owner"]["username"], "bob");
        assert_eq!(roster(&read), members(&[("bob", "OWNER")]));
        read_project(&app, Some(&alice), &id).await.assert_error("NOT_FOUND", None);
        leave(&app, Some(&bob), &id).await.assert_error("CONFLICT", None);
        assert_eq!(roster_of(&app, &bob, &id).await, members(&[("bob", "OWNER")]));
    }

    async fn transfer_ownership_swaps_owner_and_caller(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        let carol = app.sign_up("carol").await;
        let id = new_project(&app, &alice, "handover", false).await;
        add_member(&app, Some(&alice), &id, "bob", "EDITOR").await.data();
        add_member(&app, Some(&alice), &id, "carol", "VIEWER").await.data();
        let before = project_as(&app, Some(&alice), &id).await;

        let answer = transfer(&app, Some(&alice), &id, &bob.id).await;
        let project = answer.data()["transferOwnership"].clone();
        assert_eq!(project["owner"]["username"], "bob");
        assert_eq!(project["viewerRole"], "EDITOR");
        assert_eq!(roster(&project), members(&[("alice", "EDITOR"), ("bob", "OWNER"), ("carol", "VIEWER")]));
        assert!(time(&project["updatedAt"]) > time(&before["updatedAt"]));
        // Persisted, and the powers moved with the role.
        let as_bob = project_as(&app, Some(&bob), &id).await;
        assert_eq!(as_bob["viewerRole"], "OWNER");
        assert_eq!(as_bob["owner"]["username"], "bob");
        update_project(&app, Some(&alice), &id, json!({ "title": "mine again" })).await.assert_error("FORBIDDEN", None);
        transfer(&app, Some(&alice), &id, &alice.id).await.assert_error("BAD_USER_INPUT", Some("userId"));
        transfer(&app, Some(&alice), &id, &carol.id).await.assert_error("FORBIDDEN", None);
        update_project(&app, Some(&bob), &id, json!({ "title": "bob's now" })).await.data();

        // A viewer can be made owner too.
        let answer = transfer(&app, Some(&bob), &id, &carol.id).await;
        let project = answer.data()["transferOwnership"].clone();
        assert_eq!(project["owner"]["username"], "carol");
        assert_eq!(roster(&project), members(&[("alice", "EDITOR"), ("bob", "EDITOR"), ("carol", "OWNER")]));
        assert_eq!(app.count("project_members").await, 3);
    }

    async fn transfer_ownership_refusals_change_nothing(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        let dave = app.sign_up("dave").await;
        let id = new_project(&app, &alice, "kept", false).await;
        add_member(&app, Some(&alice), &id, "bob", "EDITOR").await.data();
        let before = project_as(&app, Some(&alice), &id).await;

        transfer(&app, Some(&alice), &id, &alice.id).await.assert_error("BAD_USER_INPUT", Some("userId"));
        transfer(&app, Some(&alice), &id, &dave.id).await.assert_error("NOT_FOUND", None);
        transfer(&app, Some(&alice), &id, UNKNOWN).await.assert_error("NOT_FOUND", None);
        transfer(&app, Some(&alice), &id, "nope").await.assert_error("BAD_USER_INPUT", Some("userId"));
        transfer(&app, Some(&alice), "nope", &bob.id).await.assert_error("BAD_USER_INPUT", Some("projectId"));
        transfer(&app, Some(&alice), UNKNOWN, &bob.id).await.assert_error("NOT_FOUND", None);
        transfer(&app, Some(&bob), &id, &bob.id).await.assert_error("BAD_USER_INPUT", Some("userId"));
        transfer(&app, Some(&bob), &id, &alice.id).await.assert_error("FORBIDDEN", None);
        transfer(&app, Some(&dave), &id, &bob.id).await.assert_error("NOT_FOUND", None);
        transfer(&app, None, &id, &bob.id).await.assert_error("UNAUTHENTICATED", None);

        assert_eq!(project_as(&app, Some(&alice), &id).await, before);
        assert_eq!(app.count("project_members").await, 2);
    }

    async fn two_last_owners_leaving_at_once_leave_one_owner(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        for round in 0..4 {
            let id = new_project(&app, &alice, &format!("race {round}"), false).await;
            add_member(&app, Some(&alice), &id, "bob", "OWNER").await.data();
            let (a, b) = tokio::join!(leave(&app, Some(&alice), &id), leave(&app, Some(&bob), &id));
            let outcomes = [(&alice, &a), (&bob, &b)];
            let winners: Vec<_> = outcomes.iter().filter(|(_, answer)| succeeded(answer)).collect();
            assert_eq!(winners.len(), 1, "round {round}: {a:?} {b:?}");
            let &(stayer, refused) = outcomes.iter().find(|(_, answer)| !succeeded(answer)).unwrap();
            refused.assert_error("CONFLICT", None);
            let read = project_as(&app, Some(stayer), &id).await;
            assert_eq!(read["owner"]["username"], stayer.username.as_str());
            assert_eq!(roster(&read), members(&[(stayer.username.as_str(), "OWNER")]));
        }
    }

    async fn three_owners_leaving_at_once_leave_one_owner(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        let carol = app.sign_up("carol").await;
        let id = new_project(&app, &alice, "crowd", false).await;
        add_member(&app, Some(&alice), &id, "bob", "OWNER").await.data();
        add_member(&app, Some(&alice), &id, "carol", "OWNER").await.data();
        let users = [&alice, &bob, &carol];
        let answers = futures_util::future::join_all(users.iter().map(|&u| leave(&app, Some(u), &id))).await;
        assert_eq!(answers.iter().filter(|a| succeeded(a)).count(), 2, "{answers:?}");
        let (&stayer, refused) = users.iter().zip(&answers).find(|(_, a)| !succeeded(a)).unwrap();
        refused.assert_error("CONFLICT", None);
        let read = project_as(&app, Some(stayer), &id).await;
        assert_eq!(read["owner"]["username"], stayer.username.as_str());
        assert_eq!(roster(&read), members(&[(stayer.username.as_str(), "OWNER")]));
    }

    async fn two_owners_demoting_each_other_at_once_keep_an_owner(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        for round in 0..4 {
            let id = new_project(&app, &alice, &format!("coup {round}"), false).await;
            add_member(&app, Some(&alice), &id, "bob", "OWNER").await.data();
            let (a, b) = tokio::join!(
                set_role(&app, Some(&alice), &id, &bob.id, "EDITOR"),
                set_role(&app, Some(&bob), &id, &alice.id, "EDITOR"),
            );
            assert_eq!([&a, &b].iter().filter(|x| succeeded(x)).count(), 1, "round {round}: {a:?} {b:?}");
            // The loser was no longer an owner when its turn came.
            let loser = if succeeded(&a) { &b } else { &a };
            loser.assert_error("FORBIDDEN", None);
            let read = project_as(&app, Some(&alice), &id).await;
            let owners: Vec<_> = roster(&read).into_iter().filter(|(_, role)| role == "OWNER").collect();
            assert_eq!(owners.len(), 1, "{read}");
            assert_eq!(read["owner"]["username"], owners[0].0.as_str());
        }
    }

    async fn concurrent_joins_make_one_membership(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        let id = new_project(&app, &alice, "popular", true).await;
        let (a, b) = tokio::join!(join(&app, Some(&bob), &id), join(&app, Some(&bob), &id));
        for answer in [&a, &b] {
            assert_eq!(answer.data()["joinProject"]["viewerRole"], "VIEWER");
        }
        assert_eq!(app.count("project_members").await, 2);
        assert_eq!(roster_of(&app, &alice, &id).await, members(&[("alice", "OWNER"), ("bob", "VIEWER")]));
    }
}
