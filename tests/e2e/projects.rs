//! Projects: creation, visibility, settings, deletion, and the list with filters and pages.

use codecrafter_tests::{TestApp, TestUser, backend_tests};
use serde_json::{Value, json};

const CREATE: &str = "mutation($input: CreateProjectInput!) { createProject(input: $input) { id title description defaultLanguage isPublic viewerRole owner { username } members { role user { username } } } }";
const GET: &str = "query($id: ID!) { project(id: $id) { id title viewerRole } }";
const LIST: &str = "query($filter: ProjectFilter, $first: Int!, $after: String) { projects(filter: $filter, first: $first, after: $after) { totalCount edges { cursor node { title } } pageInfo { hasNextPage endCursor } } }";

async fn create(app: &TestApp, user: &TestUser, input: Value) -> Value {
    app.gql_as(&user.access, CREATE, json!({ "input": input }))
        .await
        .data()["createProject"]
        .clone()
}

async fn id_of(app: &TestApp, user: &TestUser, title: &str, public: bool) -> String {
    create(app, user, json!({ "title": title, "isPublic": public })).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn titles(app: &TestApp, token: Option<&str>, filter: Value, first: i64) -> Vec<String> {
    let vars = json!({ "filter": filter, "first": first });
    let answer = match token {
        Some(token) => app.gql_as(token, LIST, vars).await,
        None => app.gql(LIST, vars).await,
    };
    answer.data()["projects"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["title"].as_str().unwrap().to_owned())
        .collect()
}

backend_tests! {
    async fn creating_a_project_makes_the_creator_its_owner(app) {
        let ada = app.sign_up("ada").await;
        let project = create(&app, &ada, json!({ "title": "  Hello  " })).await;
        assert_eq!(project["title"], "Hello");
        assert_eq!(project["description"], "");
        assert_eq!(project["defaultLanguage"], "PYTHON");
        assert_eq!(project["isPublic"], false);
        assert_eq!(project["viewerRole"], "OWNER");
        assert_eq!(project["owner"]["username"], "ada");
        assert_eq!(project["members"], json!([{ "role": "OWNER", "user": { "username": "ada" } }]));
        let full = create(&app, &ada, json!({ "title": "C", "description": "d", "defaultLanguage": "CPP", "isPublic": true })).await;
        assert_eq!((&full["defaultLanguage"], &full["isPublic"], &full["description"]), (&json!("CPP"), &json!(true), &json!("d")));
    }

    async fn invalid_projects_are_refused_and_nothing_is_written(app) {
        let ada = app.sign_up("ada").await;
        let before = (app.count("projects").await, app.count("project_members").await);
        for (input, field) in [
            (json!({ "title": "" }), "title"),
            (json!({ "title": "   " }), "title"),
            (json!({ "title": "x".repeat(121) }), "title"),
            (json!({ "title": "two\nlines" }), "title"),
            (json!({ "title": "ok", "description": "d".repeat(2001) }), "description"),
        ] {
            app.gql_as(&ada.access, CREATE, json!({ "input": input }))
                .await
                .assert_error("BAD_USER_INPUT", Some(field));
        }
        app.gql_as(&ada.access, CREATE, json!({ "input": { "title": "x", "defaultLanguage": "COBOL" } }))
            .await
            .assert_error("BAD_USER_INPUT", None);
        app.gql(CREATE, json!({ "input": { "title": "anonymous" } }))
            .await
            .assert_error("UNAUTHENTICATED", None);
        assert_eq!((app.count("projects").await, app.count("project_members").await), before);
    }

    async fn private_projects_are_invisible_to_outsiders(app) {
        let ada = app.sign_up("ada").await;
        let bob = app.sign_up("bob").await;
        let root = app.sign_up("root").await;
        let root = app.make_admin(&root).await;
        let private = id_of(&app, &ada, "secret", false).await;
        let public = id_of(&app, &ada, "open", true).await;
        app.gql(GET, json!({ "id": private })).await.assert_error("NOT_FOUND", None);
        app.gql_as(&bob.access, GET, json!({ "id": private })).await.assert_error("NOT_FOUND", None);
        let unknown = uuid::Uuid::new_v4().to_string();
        app.gql_as(&ada.access, GET, json!({ "id": unknown })).await.assert_error("NOT_FOUND", None);
        app.gql_as(&ada.access, GET, json!({ "id": "not-a-uuid" })).await.assert_error("BAD_USER_INPUT", Some("id"));
        // Public projects are readable by anyone; admins read everything, without a role.
        let seen = app.gql(GET, json!({ "id": public })).await;
        assert_eq!(seen.data()["project"]["viewerRole"], Value::Null);
        let seen = app.gql_as(&root.access, GET, json!({ "id": private })).await;
        assert_eq!(seen.data()["project"]["title"], "secret");
        app.add_member(&ada, &private, &bob, "VIEWER").await;
        let seen = app.gql_as(&bob.access, GET, json!({ "id": private })).await;
        assert_eq!(seen.data()["project"]["viewerRole"], "VIEWER");
    }

    async fn only_owners_change_settings(app) {
        let ada = app.sign_up("ada").await;
        let ed = app.sign_up("edd").await;
        let vi = app.sign_up("vic").await;
        let root = app.sign_up("root").await;
        let root = app.make_admin(&root).await;
        let project = id_of(&app, &ada, "before", false).await;
        app.add_member(&ada, &project, &ed, "EDITOR").await;
        app.add_member(&ada, &project, &vi, "VIEWER").await;
        const UPDATE: &str = "mutation($id: ID!, $input: UpdateProjectInput!) { updateProject(id: $id, input: $input) { title description isPublic defaultLanguage } }";
        for user in [&ed, &vi, &root] {
            app.gql_as(&user.access, UPDATE, json!({ "id": project, "input": { "title": "hijacked" } }))
                .await
                .assert_error("FORBIDDEN", None);
        }
        app.gql_as(&ada.access, UPDATE, json!({ "id": project, "input": { "title": "" } }))
            .await
            .assert_error("BAD_USER_INPUT", Some("title"));
        let seen = app.gql_as(&ada.access, GET, json!({ "id": project })).await;
        assert_eq!(seen.data()["project"]["title"], "before");
        let updated = app
            .gql_as(&ada.access, UPDATE, json!({ "id": project, "input": { "title": "after", "isPublic": true, "defaultLanguage": "GO" } }))
            .await;
        assert_eq!(updated.data()["updateProject"], json!({ "title": "after", "description": "", "isPublic": true, "defaultLanguage": "GO" }));
    }

    async fn deleting_a_project_takes_its_members_and_files_with_it(app) {
        let ada = app.sign_up("ada").await;
        let ed = app.sign_up("edd").await;
        let project = id_of(&app, &ada, "doomed", false).await;
        app.add_member(&ada, &project, &ed, "EDITOR").await;
        app.gql_as(&ed.access, "mutation($p: ID!) { createFile(projectId: $p, path: \"a.py\", content: \"x\") { path } }", json!({ "p": project }))
            .await
            .data();
        const DELETE: &str = "mutation($id: ID!) { deleteProject(id: $id) }";
        app.gql_as(&ed.access, DELETE, json!({ "id": project })).await.assert_error("FORBIDDEN", None);
        assert_eq!(app.count("projects").await, 1);
        let deleted = app.gql_as(&ada.access, DELETE, json!({ "id": project })).await;
        assert_eq!(deleted.data()["deleteProject"], project.as_str());
        assert_eq!(app.count("projects").await, 0);
        assert_eq!(app.count("project_members").await, 0);
        assert_eq!(app.count("document_updates").await, 0);
        app.gql_as(&ada.access, GET, json!({ "id": project })).await.assert_error("NOT_FOUND", None);
        app.gql_as(&ada.access, DELETE, json!({ "id": project })).await.assert_error("NOT_FOUND", None);
    }

    async fn lists_filter_and_search(app) {
        let ada = app.sign_up("ada").await;
        let bob = app.sign_up("bob").await;
        id_of(&app, &ada, "Ada public", true).await;
        id_of(&app, &ada, "Ada private", false).await;
        id_of(&app, &bob, "Bob public 100%", true).await;
        id_of(&app, &bob, "Bob private", false).await;
        id_of(&app, &bob, "snake_case", true).await;
        let mut anonymous = titles(&app, None, json!({}), 50).await;
        anonymous.sort();
        assert_eq!(anonymous, ["Ada public", "Bob public 100%", "snake_case"]);
        let mut mine = titles(&app, Some(&ada.access), json!({ "mine": true }), 50).await;
        mine.sort();
        assert_eq!(mine, ["Ada private", "Ada public"]);
        let mut others = titles(&app, Some(&ada.access), json!({ "mine": false }), 50).await;
        others.sort();
        assert_eq!(others, ["Bob public 100%", "snake_case"]);
        assert_eq!(titles(&app, Some(&ada.access), json!({ "public": false }), 50).await, ["Ada private"]);
        // Case-insensitive; % and _ are literal characters, not wildcards.
        assert_eq!(titles(&app, Some(&ada.access), json!({ "search": "ADA PUB" }), 50).await, ["Ada public"]);
        assert_eq!(titles(&app, None, json!({ "search": "100%" }), 50).await, ["Bob public 100%"]);
        assert_eq!(titles(&app, None, json!({ "search": "%" }), 50).await, ["Bob public 100%"]);
        assert_eq!(titles(&app, None, json!({ "search": "_" }), 50).await, ["snake_case"]);
        assert!(titles(&app, None, json!({ "search": "e_c" }), 50).await.contains(&"snake_case".to_owned()));
        assert!(titles(&app, None, json!({ "search": "b_b" }), 50).await.is_empty());
        app.gql(LIST, json!({ "filter": { "mine": true }, "first": 5 }))
            .await
            .assert_error("UNAUTHENTICATED", None);
        app.gql(LIST, json!({ "filter": { "search": "x".repeat(101) }, "first": 5 }))
            .await
            .assert_error("BAD_USER_INPUT", Some("filter.search"));
    }

    async fn lists_are_sorted_by_activity_and_paged_without_gaps(app) {
        let ada = app.sign_up("ada").await;
        let mut ids = Vec::new();
        for i in 0..7 {
            ids.push(id_of(&app, &ada, &format!("p{i}"), true).await);
        }
        // Activity in p2 moves it to the front.
        app.gql_as(&ada.access, "mutation($id: ID!) { updateProject(id: $id, input: { description: \"busy\" }) { id } }", json!({ "id": ids[2] }))
            .await
            .data();
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = app
                .gql(LIST, json!({ "first": 3, "after": after }))
                .await;
            let projects = page.data()["projects"].clone();
            assert_eq!(projects["totalCount"], 7);
            for edge in projects["edges"].as_array().unwrap() {
                seen.push(edge["node"]["title"].as_str().unwrap().to_owned());
            }
            if projects["pageInfo"]["hasNextPage"] == false {
                break;
            }
            after = Some(projects["pageInfo"]["endCursor"].as_str().unwrap().to_owned());
        }
        assert_eq!(seen, ["p2", "p6", "p5", "p4", "p3", "p1", "p0"]);
        for first in [-1, 101] {
            app.gql(LIST, json!({ "first": first })).await.assert_error("BAD_USER_INPUT", Some("first"));
        }
        app.gql(LIST, json!({ "first": 3, "after": "garbage!" }))
            .await
            .assert_error("BAD_USER_INPUT", Some("after"));
        let none = app.gql(LIST, json!({ "first": 0 })).await;
        assert_eq!(none.data()["projects"]["edges"], json!([]));
        assert_eq!(none.data()["projects"]["totalCount"], 7);
    }
}
