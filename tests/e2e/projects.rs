//! Projects: creating, reading, changing, deleting and listing them.
//!
//! The helpers at the top are shared with `members.rs`.

use chrono::{DateTime, Utc};
use codecrafter_tests::serde_json::{Value, json};
use codecrafter_tests::{Gql, TestApp, TestUser, backend_tests};

/// Every field of a project, with its members.
pub(crate) const PROJECT: &str = "id title description defaultLanguage isPublic viewerRole createdAt updatedAt lastActivityAt owner { id username } members { role joinedAt user { id username } }";

const LIST: &str = "query($filter: ProjectFilter, $first: Int!, $after: String) { projects(filter: $filter, first: $first, after: $after) { totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { id title viewerRole lastActivityAt } } } }";

/// A request as `user`, or anonymously.
pub(crate) async fn send(app: &TestApp, user: Option<&TestUser>, query: &str, vars: Value) -> Gql {
    match user {
        Some(user) => app.gql_as(&user.access, query, vars).await,
        None => app.gql(query, vars).await,
    }
}

pub(crate) async fn create_project(app: &TestApp, user: Option<&TestUser>, input: Value) -> Gql {
    let query = format!(
        "mutation($input: CreateProjectInput!) {{ createProject(input: $input) {{ {PROJECT} }} }}"
    );
    send(app, user, &query, json!({ "input": input })).await
}

/// Create a project as `owner` and answer its id.
pub(crate) async fn new_project(
    app: &TestApp,
    owner: &TestUser,
    title: &str,
    public: bool,
) -> String {
    let answer = create_project(
        app,
        Some(owner),
        json!({ "title": title, "isPublic": public }),
    )
    .await;
    answer.data()["createProject"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `project(id)`, as `user` or anonymously.
pub(crate) async fn read_project(app: &TestApp, user: Option<&TestUser>, id: &str) -> Gql {
    let query = format!("query($id: ID!) {{ project(id: $id) {{ {PROJECT} }} }}");
    send(app, user, &query, json!({ "id": id })).await
}

/// The project as `user` reads it, asserting they can.
pub(crate) async fn project_as(app: &TestApp, user: Option<&TestUser>, id: &str) -> Value {
    read_project(app, user, id).await.data()["project"].clone()
}

pub(crate) async fn update_project(
    app: &TestApp,
    user: Option<&TestUser>,
    id: &str,
    input: Value,
) -> Gql {
    let query = format!(
        "mutation($id: ID!, $input: UpdateProjectInput!) {{ updateProject(id: $id, input: $input) {{ {PROJECT} }} }}"
    );
    send(app, user, &query, json!({ "id": id, "input": input })).await
}

pub(crate) async fn add_member(
    app: &TestApp,
    by: Option<&TestUser>,
    project: &str,
    username: &str,
    role: &str,
) -> Gql {
    send(
        app,
        by,
        "mutation($p: ID!, $u: String!, $r: ProjectRole!) { addMember(projectId: $p, username: $u, role: $r) { role joinedAt user { id username } } }",
        json!({ "p": project, "u": username, "r": role }),
    )
    .await
}

/// A project's members as (username, role), longest-standing first.
pub(crate) fn roster(project: &Value) -> Vec<(String, String)> {
    project["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members in {project}"))
        .iter()
        .map(|m| {
            (
                m["user"]["username"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `[(username, role)]` from string slices, to compare with [`roster`].
pub(crate) fn members(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(u, r)| ((*u).to_owned(), (*r).to_owned()))
        .collect()
}

pub(crate) fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a time: {value}")),
    )
    .unwrap()
    .with_timezone(&Utc)
}

async fn list(
    app: &TestApp,
    user: Option<&TestUser>,
    filter: Value,
    first: i32,
    after: Option<&str>,
) -> Gql {
    send(
        app,
        user,
        LIST,
        json!({ "filter": filter, "first": first, "after": after }),
    )
    .await
}

/// The titles of one page of a list, in order.
fn titles(answer: &Gql) -> Vec<String> {
    answer.data()["projects"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["title"].as_str().unwrap().to_owned())
        .collect()
}

/// The titles of a whole list (one page of up to 100), in order.
async fn list_titles(app: &TestApp, user: Option<&TestUser>, filter: Value) -> Vec<String> {
    titles(&list(app, user, filter, 100, None).await)
}

/// An owner, an editor and a viewer-to-be, an outsider and an admin.
struct Cast {
    alice: TestUser,
    editor: TestUser,
    viewer: TestUser,
    outsider: TestUser,
    admin: TestUser,
}

async fn cast(app: &TestApp) -> Cast {
    let alice = app.sign_up("alice").await;
    let editor = app.sign_up("editor").await;
    let viewer = app.sign_up("viewer").await;
    let outsider = app.sign_up("outsider").await;
    let admin = app.sign_up("admin").await;
    let admin = app.make_admin(&admin).await;
    Cast {
        alice,
        editor,
        viewer,
        outsider,
        admin,
    }
}

/// `editor` and `viewer` join each of `owner`'s `projects` in those roles.
async fn with_editor_and_viewer<const N: usize>(
    app: &TestApp,
    owner: &TestUser,
    projects: [&String; N],
) {
    for id in projects {
        add_member(app, Some(owner), id, "editor", "EDITOR")
            .await
            .data();
        add_member(app, Some(owner), id, "viewer", "VIEWER")
            .await
            .data();
    }
}

fn strings(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|s| (*s).to_owned()).collect()
}

backend_tests! {
    async fn create_project_applies_defaults_and_makes_the_creator_owner(app) {
        let alice = app.sign_up("alice").await;
        let answer = create_project(&app, Some(&alice), json!({ "title": "  Sorting algorithms  " })).await;
        let project = answer.data()["createProject"].clone();
        assert_eq!(project["title"], "Sorting algorithms");
        assert_eq!(project["description"], "");
        assert_eq!(project["defaultLanguage"], "PYTHON");
        assert_eq!(project["isPublic"], false);
        assert_eq!(project["viewerRole"], "OWNER");
        assert_eq!(project["owner"]["id"], alice.id.as_str());
        assert_eq!(roster(&project), members(&[("alice", "OWNER")]));
        assert_eq!(project["members"][0]["user"]["id"], alice.id.as_str());
        assert_eq!(project["createdAt"], project["updatedAt"]);
        assert_eq!(project["createdAt"], project["lastActivityAt"]);

        // Every field given.
        let answer = create_project(&app, Some(&alice), json!({
            "title": "Ferris", "description": "  a crab  ", "defaultLanguage": "RUST", "isPublic": true
        })).await;
        let given = answer.data()["createProject"].clone();
        assert_eq!(given["description"], "a crab");
        assert_eq!(given["defaultLanguage"], "RUST");
        assert_eq!(given["isPublic"], true);

        // Both persisted, as their owner reads them back.
        let read = project_as(&app, Some(&alice), project["id"].as_str().unwrap()).await;
        assert_eq!(read, project);
        let read = project_as(&app, Some(&alice), given["id"].as_str().unwrap()).await;
        assert_eq!(read, given);
        assert_eq!(app.count("projects").await, 2);
        assert_eq!(app.count("project_members").await, 2);
    }

    async fn create_project_validates_its_input_and_writes_nothing(app) {
        let alice = app.sign_up("alice").await;
        let cases = [
            (json!({ "title": "" }), "title"),
            (json!({ "title": "   " }), "title"),
            (json!({ "title": "x".repeat(121) }), "title"),
            (json!({ "title": "two\nlines" }), "title"),
            (json!({ "title": "bell\u{7}" }), "title"),
            (json!({ "title": "fine", "description": "d".repeat(2001) }), "description"),
        ];
        for (input, field) in cases {
            let answer = create_project(&app, Some(&alice), input).await;
            answer.assert_error("BAD_USER_INPUT", Some(field));
            assert!(!answer.message().is_empty());
        }
        // An unknown language is refused by the schema itself.
        create_project(&app, Some(&alice), json!({ "title": "fine", "defaultLanguage": "COBOL" }))
            .await
            .assert_error("BAD_USER_INPUT", None);
        // Anonymous and forged sessions are refused before anything else.
        create_project(&app, None, json!({ "title": "fine" }))
            .await
            .assert_error("UNAUTHENTICATED", None);
        app.gql_as("not-a-token", "mutation { createProject(input: {title: \"fine\"}) { id } }", json!({}))
            .await
            .assert_error("UNAUTHENTICATED", None);
        assert_eq!(app.count("projects").await, 0);
        assert_eq!(app.count("project_members").await, 0);

        // The limits count characters, not bytes, and are inclusive.
        let answer = create_project(&app, Some(&alice), json!({ "title": "é".repeat(120), "description": "ü".repeat(2000) })).await;
        assert_eq!(answer.data()["createProject"]["title"].as_str().unwrap().chars().count(), 120);
        assert_eq!(app.count("projects").await, 1);
        assert_eq!(app.count("project_members").await, 1);
    }

    async fn private_projects_are_readable_by_members_and_admins_only(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        let carol = app.sign_up("carol").await;
        let admin = app.sign_up("root").await;
        let admin = app.make_admin(&admin).await;
        let id = new_project(&app, &alice, "secret plans", false).await;

        let anonymous = read_project(&app, None, &id).await;
        anonymous.assert_error("NOT_FOUND", None);
        let outsider = read_project(&app, Some(&bob), &id).await;
        outsider.assert_error("NOT_FOUND", None);
        // Indistinguishable from a project that does not exist.
        let unknown = read_project(&app, Some(&bob), "00000000-0000-4000-8000-000000000000").await;
        unknown.assert_error("NOT_FOUND", None);
        assert_eq!(outsider.error()["message"], unknown.error()["message"]);
        assert_eq!(anonymous.error()["extensions"], unknown.error()["extensions"]);
        read_project(&app, None, "not-a-uuid").await.assert_error("BAD_USER_INPUT", Some("id"));
        read_project(&app, Some(&alice), "").await.assert_error("BAD_USER_INPUT", Some("id"));
        app.gql_as("forged", "query($id: ID!) { project(id: $id) { id } }", json!({ "id": id }))
            .await
            .assert_error("UNAUTHENTICATED", None);

        // Members read it, with their role.
        add_member(&app, Some(&alice), &id, "bob", "VIEWER").await.data();
        let as_bob = project_as(&app, Some(&bob), &id).await;
        assert_eq!(as_bob["title"], "secret plans");
        assert_eq!(as_bob["viewerRole"], "VIEWER");
        assert_eq!(roster(&as_bob), members(&[("alice", "OWNER"), ("bob", "VIEWER")]));
        assert_eq!(project_as(&app, Some(&alice), &id).await["viewerRole"], "OWNER");
        // Admins read every project without being members.
        let as_admin = project_as(&app, Some(&admin), &id).await;
        assert_eq!(as_admin["title"], "secret plans");
        assert_eq!(as_admin["viewerRole"], Value::Null);
        // Still hidden from the others.
        read_project(&app, Some(&carol), &id).await.assert_error("NOT_FOUND", None);
        read_project(&app, None, &id).await.assert_error("NOT_FOUND", None);
    }

    async fn public_projects_are_readable_by_anyone(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        let id = new_project(&app, &alice, "open source", true).await;
        let anonymous = project_as(&app, None, &id).await;
        assert_eq!(anonymous["title"], "open source");
        assert_eq!(anonymous["viewerRole"], Value::Null);
        assert_eq!(anonymous["owner"]["username"], "alice");
        assert_eq!(roster(&anonymous), members(&[("alice", "OWNER")]));
        assert_eq!(project_as(&app, Some(&bob), &id).await["viewerRole"], Value::Null);
    }

    async fn update_project_changes_only_the_given_fields(app) {
        let alice = app.sign_up("alice").await;
        let answer = create_project(&app, Some(&alice), json!({ "title": "draft", "description": "first words" })).await;
        let before = answer.data()["createProject"].clone();
        let id = before["id"].as_str().unwrap().to_owned();

        let answer = update_project(&app, Some(&alice), &id, json!({ "title": "  final  " })).await;
        let after = answer.data()["updateProject"].clone();
        assert_eq!(after["title"], "final");
        assert_eq!(after["description"], "first words");
        assert_eq!(after["defaultLanguage"], "PYTHON");
        assert_eq!(after["isPublic"], false);
        assert_eq!(after["viewerRole"], "OWNER");
        assert_eq!(after["createdAt"], before["createdAt"]);
        assert!(time(&after["updatedAt"]) > time(&before["updatedAt"]), "{after}");
        assert!(time(&after["lastActivityAt"]) > time(&before["lastActivityAt"]), "{after}");

        let answer = update_project(&app, Some(&alice), &id, json!({ "description": "", "defaultLanguage": "GO", "isPublic": true })).await;
        let after = answer.data()["updateProject"].clone();
        assert_eq!(after["title"], "final");
        assert_eq!(after["description"], "");
        assert_eq!(after["defaultLanguage"], "GO");
        assert_eq!(after["isPublic"], true);

        // Persisted, and now public: anyone reads it.
        let read = project_as(&app, None, &id).await;
        assert_eq!(read["title"], "final");
        assert_eq!(read["defaultLanguage"], "GO");
        assert_eq!(read["updatedAt"], after["updatedAt"]);

        // An empty change is allowed and changes nothing the user sees.
        let same = update_project(&app, Some(&alice), &id, json!({})).await;
        assert_eq!(same.data()["updateProject"]["title"], "final");
        assert_eq!(same.data()["updateProject"]["isPublic"], true);
    }

    async fn update_project_is_for_owners_only(app) {
        let Cast { alice, editor, viewer, outsider, admin } = cast(&app).await;
        let private = new_project(&app, &alice, "private", false).await;
        let public = new_project(&app, &alice, "public", true).await;
        with_editor_and_viewer(&app, &alice, [&private, &public]).await;
        let change = json!({ "title": "hijacked", "isPublic": true });
        for id in [&private, &public] {
            update_project(&app, Some(&editor), id, change.clone()).await.assert_error("FORBIDDEN", None);
            update_project(&app, Some(&viewer), id, change.clone()).await.assert_error("FORBIDDEN", None);
            // Admins read everything but change nothing.
            update_project(&app, Some(&admin), id, change.clone()).await.assert_error("FORBIDDEN", None);
            update_project(&app, None, id, change.clone()).await.assert_error("UNAUTHENTICATED", None);
        }
        // A private project does not admit it exists; a public one is known to be someone else's.
        update_project(&app, Some(&outsider), &private, change.clone()).await.assert_error("NOT_FOUND", None);
        update_project(&app, Some(&outsider), &public, change.clone()).await.assert_error("FORBIDDEN", None);
        update_project(&app, Some(&alice), "00000000-0000-4000-8000-000000000000", change.clone())
            .await
            .assert_error("NOT_FOUND", None);

        let read = project_as(&app, Some(&alice), &private).await;
        assert_eq!(read["title"], "private");
        assert_eq!(read["isPublic"], false);
        assert_eq!(project_as(&app, Some(&alice), &public).await["title"], "public");
        read_project(&app, Some(&outsider), &private).await.assert_error("NOT_FOUND", None);
    }

    async fn update_project_validation_errors_change_nothing(app) {
        let alice = app.sign_up("alice").await;
        let answer = create_project(&app, Some(&alice), json!({ "title": "keep me", "description": "and me" })).await;
        let before = answer.data()["createProject"].clone();
        let id = before["id"].as_str().unwrap().to_owned();
        let cases = [
            (json!({ "title": "" }), "title"),
            (json!({ "title": "  " }), "title"),
            (json!({ "title": "x".repeat(121) }), "title"),
            (json!({ "title": "tab\there" }), "title"),
            // A valid change next to an invalid one is not applied either.
            (json!({ "title": "new title", "isPublic": true, "description": "d".repeat(2001) }), "description"),
        ];
        for (input, field) in cases {
            update_project(&app, Some(&alice), &id, input).await.assert_error("BAD_USER_INPUT", Some(field));
        }
        update_project(&app, Some(&alice), "nope", json!({ "title": "x" }))
            .await
            .assert_error("BAD_USER_INPUT", Some("id"));
        update_project(&app, Some(&alice), &id, json!({ "defaultLanguage": "COBOL" }))
            .await
            .assert_error("BAD_USER_INPUT", None);
        assert_eq!(project_as(&app, Some(&alice), &id).await, before);
    }

    async fn delete_project_is_for_owners_and_takes_the_members_along(app) {
        let Cast { alice, editor, viewer, outsider, admin } = cast(&app).await;
        let doomed = new_project(&app, &alice, "doomed", false).await;
        let kept = new_project(&app, &alice, "kept", false).await;
        with_editor_and_viewer(&app, &alice, [&doomed, &kept]).await;
        assert_eq!(app.count("projects").await, 2);
        assert_eq!(app.count("project_members").await, 6);

        const DELETE: &str = "mutation($id: ID!) { deleteProject(id: $id) }";
        let vars = json!({ "id": doomed });
        send(&app, Some(&editor), DELETE, vars.clone()).await.assert_error("FORBIDDEN", None);
        send(&app, Some(&viewer), DELETE, vars.clone()).await.assert_error("FORBIDDEN", None);
        send(&app, Some(&admin), DELETE, vars.clone()).await.assert_error("FORBIDDEN", None);
        send(&app, Some(&outsider), DELETE, vars.clone()).await.assert_error("NOT_FOUND", None);
        send(&app, None, DELETE, vars.clone()).await.assert_error("UNAUTHENTICATED", None);
        send(&app, Some(&alice), DELETE, json!({ "id": "x" })).await.assert_error("BAD_USER_INPUT", Some("id"));
        assert_eq!(app.count("projects").await, 2);
        assert_eq!(app.count("project_members").await, 6);
        assert_eq!(project_as(&app, Some(&viewer), &doomed).await["title"], "doomed");

        let deleted = send(&app, Some(&alice), DELETE, vars.clone()).await;
        assert_eq!(deleted.data()["deleteProject"], doomed.as_str());
        assert_eq!(app.count("projects").await, 1);
        assert_eq!(app.count("project_members").await, 3);
        for user in [&alice, &editor, &viewer, &admin] {
            read_project(&app, Some(user), &doomed).await.assert_error("NOT_FOUND", None);
        }
        send(&app, Some(&alice), DELETE, vars).await.assert_error("NOT_FOUND", None);
        // The other project and its members are untouched.
        let other = project_as(&app, Some(&viewer), &kept).await;
        assert_eq!(roster(&other), members(&[("alice", "OWNER"), ("editor", "EDITOR"), ("viewer", "VIEWER")]));
        assert_eq!(list_titles(&app, Some(&alice), json!({ "mine": true })).await, strings(&["kept"]));
    }

    async fn projects_lists_what_the_viewer_may_read(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        let admin = app.sign_up("admin").await;
        let admin = app.make_admin(&admin).await;
        new_project(&app, &alice, "alice private", false).await;
        new_project(&app, &alice, "alice public", true).await;
        new_project(&app, &bob, "bob private", false).await;
        new_project(&app, &bob, "bob public", true).await;
        let empty = json!(null);

        assert_eq!(list_titles(&app, None, empty.clone()).await, strings(&["bob public", "alice public"]));
        assert_eq!(list_titles(&app, None, json!({ "public": true })).await, strings(&["bob public", "alice public"]));
        assert!(list_titles(&app, None, json!({ "public": false })).await.is_empty());
        assert_eq!(
            list_titles(&app, Some(&alice), empty.clone()).await,
            strings(&["bob public", "alice public", "alice private"])
        );
        assert_eq!(list_titles(&app, Some(&alice), json!({ "mine": true })).await, strings(&["alice public", "alice private"]));
        assert_eq!(list_titles(&app, Some(&alice), json!({ "mine": false })).await, strings(&["bob public"]));
        assert_eq!(list_titles(&app, Some(&alice), json!({ "public": false })).await, strings(&["alice private"]));
        assert_eq!(
            list_titles(&app, Some(&alice), json!({ "mine": true, "public": true })).await,
            strings(&["alice public"])
        );
        assert_eq!(
            list_titles(&app, Some(&admin), empty.clone()).await,
            strings(&["bob public", "bob private", "alice public", "alice private"])
        );
        assert_eq!(list_titles(&app, Some(&admin), json!({ "mine": true })).await, Vec::<String>::new());
        assert_eq!(list_titles(&app, Some(&admin), json!({ "public": false })).await, strings(&["bob private", "alice private"]));

        // "Mine" needs someone to be.
        for mine in [true, false] {
            list(&app, None, json!({ "mine": mine }), 20, None).await.assert_error("UNAUTHENTICATED", None);
        }
        send(&app, None, "{ projects { totalCount } }", json!({})).await.data();
        app.gql_as("forged", "{ projects { totalCount } }", json!({})).await.assert_error("UNAUTHENTICATED", None);

        // Each node carries the viewer's own role, and the count matches.
        let answer = list(&app, Some(&alice), empty, 20, None).await;
        let connection = &answer.data()["projects"];
        assert_eq!(connection["totalCount"], 3);
        let roles: Vec<&Value> = connection["edges"].as_array().unwrap().iter().map(|e| &e["node"]["viewerRole"]).collect();
        assert_eq!(roles, [&Value::Null, &json!("OWNER"), &json!("OWNER")]);
    }

    async fn search_is_case_insensitive_and_literal(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        for (title, description) in [
            ("Hello World", ""),
            ("100% done", "percent sign"),
            ("1000 done", "no percent sign here"),
            ("snake_case", ""),
            ("snakeXcase", ""),
            ("back\\slash", ""),
            ("Quiet title", "But a LOUD description"),
        ] {
            create_project(&app, Some(&alice), json!({ "title": title, "description": description, "isPublic": true }))
                .await
                .data();
        }
        new_project(&app, &bob, "hello from a private project", false).await;

        let search = |text: &str| json!({ "search": text });
        assert_eq!(list_titles(&app, None, search("hello")).await, strings(&["Hello World"]));
        assert_eq!(list_titles(&app, None, search("WORLD")).await, strings(&["Hello World"]));
        assert_eq!(list_titles(&app, None, search("  lo wo  ")).await, strings(&["Hello World"]));
        // The description counts too.
        assert_eq!(list_titles(&app, None, search("loud")).await, strings(&["Quiet title"]));
        // `%` and `_` are characters, not wildcards.
        assert_eq!(list_titles(&app, None, search("%")).await, strings(&["100% done"]));
        assert_eq!(list_titles(&app, None, search("0% d")).await, strings(&["100% done"]));
        assert_eq!(list_titles(&app, None, search("_")).await, strings(&["snake_case"]));
        assert_eq!(list_titles(&app, None, search("e_c")).await, strings(&["snake_case"]));
        assert_eq!(list_titles(&app, None, search("\\")).await, strings(&["back\\slash"]));
        assert!(list_titles(&app, None, search("%%")).await.is_empty());
        assert!(list_titles(&app, None, search("nothing like this")).await.is_empty());
        // Search only narrows what the viewer may read.
        assert_eq!(list_titles(&app, Some(&alice), search("hello")).await, strings(&["Hello World"]));
        assert_eq!(
            list_titles(&app, Some(&bob), search("hello")).await,
            strings(&["hello from a private project", "Hello World"])
        );
        // A blank search is no search.
        assert_eq!(list_titles(&app, None, search("   ")).await.len(), 7);
        // "o" is in four titles or descriptions; the page holds two of them.
        let answer = list(&app, None, search("o"), 2, None).await;
        assert_eq!(answer.data()["projects"]["totalCount"], 4);
        assert_eq!(titles(&answer), strings(&["Quiet title", "1000 done"]));

        list(&app, None, search(&"x".repeat(101)), 20, None)
            .await
            .assert_error("BAD_USER_INPUT", Some("filter.search"));
        assert!(list_titles(&app, None, search(&"x".repeat(100))).await.is_empty());
    }

    async fn projects_are_sorted_by_last_activity(app) {
        let alice = app.sign_up("alice").await;
        let bob = app.sign_up("bob").await;
        let _carol = app.sign_up("carol").await;
        let first = new_project(&app, &alice, "first", true).await;
        let second = new_project(&app, &alice, "second", true).await;
        let third = new_project(&app, &alice, "third", true).await;
        let order = || list_titles(&app, Some(&alice), json!({ "mine": true }));
        assert_eq!(order().await, strings(&["third", "second", "first"]));

        // Reading is not activity.
        project_as(&app, Some(&alice), &first).await;
        assert_eq!(order().await, strings(&["third", "second", "first"]));

        update_project(&app, Some(&alice), &first, json!({ "description": "touched" })).await.data();
        assert_eq!(order().await, strings(&["first", "third", "second"]));

        send(&app, Some(&bob), "mutation($id: ID!) { joinProject(id: $id) { id } }", json!({ "id": second }))
            .await
            .data();
        assert_eq!(order().await, strings(&["second", "first", "third"]));

        add_member(&app, Some(&alice), &third, "carol", "EDITOR").await.data();
        assert_eq!(order().await, strings(&["third", "second", "first"]));

        // Failed attempts are not activity.
        add_member(&app, Some(&alice), &first, "nobody", "EDITOR").await.assert_error("NOT_FOUND", None);
        update_project(&app, Some(&alice), &first, json!({ "title": "" })).await.assert_error("BAD_USER_INPUT", Some("title"));
        assert_eq!(order().await, strings(&["third", "second", "first"]));

        // The timestamps the list shows agree with its order.
        let answer = list(&app, None, json!(null), 20, None).await;
        let times: Vec<DateTime<Utc>> = answer.data()["projects"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| time(&e["node"]["lastActivityAt"]))
            .collect();
        assert_eq!(times.len(), 3);
        assert!(times.windows(2).all(|w| w[0] > w[1]), "{times:?}");
    }

    async fn pagination_walks_every_project_once(app) {
        let alice = app.sign_up("alice").await;
        for i in 0..7 {
            new_project(&app, &alice, &format!("p{i}"), i % 2 == 0).await;
        }
        let everything = list_titles(&app, Some(&alice), json!(null)).await;
        assert_eq!(everything, strings(&["p6", "p5", "p4", "p3", "p2", "p1", "p0"]));

        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = Vec::new();
        loop {
            let answer = list(&app, Some(&alice), json!(null), 3, after.as_deref()).await;
            let connection = answer.data()["projects"].clone();
            assert_eq!(connection["totalCount"], 7);
            let info = &connection["pageInfo"];
            assert_eq!(info["hasPreviousPage"], after.is_some());
            let edges = connection["edges"].as_array().unwrap();
            assert_eq!(info["startCursor"], edges[0]["cursor"]);
            assert_eq!(info["endCursor"], edges[edges.len() - 1]["cursor"]);
            pages.push(edges.len());
            seen.extend(titles(&answer));
            if info["hasNextPage"] == false {
                break;
            }
            after = Some(info["endCursor"].as_str().unwrap().to_owned());
            assert!(pages.len() < 10, "pagination does not end");
        }
        assert_eq!(pages, [3, 3, 1]);
        assert_eq!(seen, everything);

        // A page that ends exactly at the end says so.
        let six = list(&app, Some(&alice), json!(null), 6, None).await;
        let end = six.data()["projects"]["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
        let last = list(&app, Some(&alice), json!(null), 1, Some(&end)).await;
        assert_eq!(titles(&last), strings(&["p0"]));
        assert_eq!(last.data()["projects"]["pageInfo"]["hasNextPage"], false);
        let past = list(&app, Some(&alice), json!(null), 5, Some(last.data()["projects"]["pageInfo"]["endCursor"].as_str().unwrap())).await;
        assert!(titles(&past).is_empty());
        assert_eq!(past.data()["projects"]["pageInfo"]["hasNextPage"], false);
        assert_eq!(past.data()["projects"]["totalCount"], 7);

        // Filters hold across pages: the four public ones, two at a time.
        let page1 = list(&app, None, json!(null), 2, None).await;
        assert_eq!(titles(&page1), strings(&["p6", "p4"]));
        assert_eq!(page1.data()["projects"]["totalCount"], 4);
        let cursor = page1.data()["projects"]["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
        let page2 = list(&app, None, json!(null), 2, Some(&cursor)).await;
        assert_eq!(titles(&page2), strings(&["p2", "p0"]));
        assert_eq!(page2.data()["projects"]["pageInfo"]["hasNextPage"], false);

        // An empty page still counts, and says there is more.
        let none = list(&app, Some(&alice), json!(null), 0, None).await;
        assert!(titles(&none).is_empty());
        assert_eq!(none.data()["projects"]["totalCount"], 7);
        assert_eq!(none.data()["projects"]["pageInfo"]["hasNextPage"], true);
        // The default page size is 20.
        let default = send(&app, Some(&alice), "{ projects { edges { node { title } } } }", json!({})).await;
        assert_eq!(default.data()["projects"]["edges"].as_array().unwrap().len(), 7);
    }

    async fn pagination_breaks_ties_in_activity_by_id(app) {
        let alice = app.sign_up("alice").await;
        for i in 0..5 {
            new_project(&app, &alice, &format!("p{i}"), true).await;
        }
        // Five projects active at the very same instant.
        sea_orm::ConnectionTrait::execute_unprepared(
            &app.db,
            "UPDATE projects SET last_activity_at = (SELECT MAX(last_activity_at) FROM projects)",
        )
        .await
        .unwrap();
        let everything = list_titles(&app, None, json!(null)).await;
        assert_eq!(everything.len(), 5);
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..5 {
            let answer = list(&app, None, json!(null), 2, after.as_deref()).await;
            seen.extend(titles(&answer));
            let info = &answer.data()["projects"]["pageInfo"];
            if info["hasNextPage"] == false {
                break;
            }
            after = Some(info["endCursor"].as_str().unwrap().to_owned());
        }
        assert_eq!(seen, everything);
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 5, "{seen:?}");
    }

    async fn list_arguments_out_of_range_are_bad_input(app) {
        let alice = app.sign_up("alice").await;
        new_project(&app, &alice, "one", true).await;
        for first in [-1, 101, i32::MAX, i32::MIN] {
            list(&app, Some(&alice), json!(null), first, None).await.assert_error("BAD_USER_INPUT", Some("first"));
        }
        assert_eq!(titles(&list(&app, Some(&alice), json!(null), 100, None).await), strings(&["one"]));
        // "bm9wZQ" is base64 of "nope": decodable, but not a cursor.
        for after in ["garbage!", "bm9wZQ", "", "MTIzOm5vdC1hLXV1aWQ"] {
            list(&app, Some(&alice), json!(null), 10, Some(after)).await.assert_error("BAD_USER_INPUT", Some("after"));
        }
        send(&app, None, "{ projects(first: \"ten\") { totalCount } }", json!({}))
            .await
            .assert_error("BAD_USER_INPUT", None);
    }
}
