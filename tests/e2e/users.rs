//! Profiles: me, updateMe, public profiles.

use codecrafter_tests::backend_tests;
use codecrafter_tests::serde_json::json;

const UPDATE_ME: &str = "mutation($input: UpdateMeInput!) { updateMe(input: $input) { displayName preferences { theme editor { fontSize tabSize useTabs keymap wordWrap lineNumbers } } } }";

backend_tests! {
    async fn me_needs_a_session(app) {
        app.gql("{ me { id } }", json!({})).await.assert_error("UNAUTHENTICATED", None);
        let user = app.sign_up("hopper").await;
        let me = app.gql_as(&user.access, "{ me { id username email role preferences { theme } } }", json!({})).await;
        assert_eq!(me.data()["me"]["id"], user.id.as_str());
        assert_eq!(me.data()["me"]["email"], "hopper@example.com");
        assert_eq!(me.data()["me"]["preferences"]["theme"], "SYSTEM");
    }

    async fn update_me_merges_partial_preferences(app) {
        let user = app.sign_up("knuth").await;
        let first = app
            .gql_as(&user.access, UPDATE_ME, json!({ "input": { "displayName": "Don", "preferences": { "theme": "DARK", "editor": { "fontSize": 18 } } } }))
            .await;
        let me = &first.data()["updateMe"];
        assert_eq!(me["displayName"], "Don");
        assert_eq!(me["preferences"]["theme"], "DARK");
        assert_eq!(me["preferences"]["editor"]["fontSize"], 18);
        assert_eq!(me["preferences"]["editor"]["tabSize"], 4);

        let second = app
            .gql_as(&user.access, UPDATE_ME, json!({ "input": { "preferences": { "editor": { "keymap": "VIM", "useTabs": true } } } }))
            .await;
        let me = &second.data()["updateMe"];
        assert_eq!(me["displayName"], "Don");
        assert_eq!(me["preferences"]["theme"], "DARK");
        assert_eq!(me["preferences"]["editor"]["fontSize"], 18);
        assert_eq!(me["preferences"]["editor"]["keymap"], "VIM");
        assert_eq!(me["preferences"]["editor"]["useTabs"], true);

        // It persisted.
        let read = app.gql_as(&user.access, "{ me { displayName preferences { editor { keymap } } } }", json!({})).await;
        assert_eq!(read.data()["me"]["preferences"]["editor"]["keymap"], "VIM");
    }

    async fn update_me_rejects_bad_values_and_changes_nothing(app) {
        let user = app.sign_up("ritchie").await;
        let cases = [
            (json!({ "preferences": { "editor": { "fontSize": 200 } }, "displayName": "Changed" }), "preferences.editor.fontSize"),
            (json!({ "preferences": { "editor": { "tabSize": 0 } } }), "preferences.editor.tabSize"),
            (json!({ "displayName": "" }), "displayName"),
            (json!({ "displayName": "x".repeat(65) }), "displayName"),
        ];
        for (input, field) in cases {
            app.gql_as(&user.access, UPDATE_ME, json!({ "input": input })).await.assert_error("BAD_USER_INPUT", Some(field));
        }
        app.gql_as(&user.access, UPDATE_ME, json!({ "input": { "preferences": { "theme": "PINK" } } }))
            .await
            .assert_error("BAD_USER_INPUT", None);
        let me = app.gql_as(&user.access, "{ me { displayName preferences { theme editor { fontSize tabSize } } } }", json!({})).await;
        assert_eq!(me.data()["me"]["displayName"], "ritchie");
        assert_eq!(me.data()["me"]["preferences"]["theme"], "SYSTEM");
        assert_eq!(me.data()["me"]["preferences"]["editor"]["fontSize"], 14);
        assert_eq!(me.data()["me"]["preferences"]["editor"]["tabSize"], 4);
        app.gql(UPDATE_ME, json!({ "input": { "displayName": "anon" } })).await.assert_error("UNAUTHENTICATED", None);
    }

    async fn public_profiles_show_no_private_fields(app) {
        app.sign_up("liskov").await;
        let profile = app.gql("{ user(username: \"liskov\") { id username displayName createdAt } }", json!({})).await;
        assert_eq!(profile.data()["user"]["username"], "liskov");
        // The public type has no email or preferences at all.
        app.gql("{ user(username: \"liskov\") { email } }", json!({})).await.assert_error("BAD_USER_INPUT", None);
        app.gql("{ user(username: \"nobody\") { id } }", json!({})).await.assert_error("NOT_FOUND", None);
    }
}
