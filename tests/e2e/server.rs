//! The HTTP surface, configuration and schema file.

use codecrafter_tests::serde_json::json;
use codecrafter_tests::{Backend, Gql, backend_tests, fresh_config};

backend_tests! {
    async fn health_and_readiness(app) {
        let health = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200);
        let body: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(body["database"], "ok");
        assert_eq!(body.get("redis"), None, "no Redis configured: {body}");
        // With Redis, readiness covers the link to the other nodes too.
        let app = app
            .restart_with(|c| c.redis.url = Some(secrecy::SecretString::from("redis://127.0.0.1:6379")))
            .await;
        let body: serde_json::Value = app.client.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
        assert_eq!((&body["status"], &body["database"], &body["redis"]), (&serde_json::json!("ready"), &serde_json::json!("ok"), &serde_json::json!("ok")));
    }

    async fn get_serves_queries_and_refuses_mutations(app) {
        let user = app.sign_up("getter").await;
        let query = app
            .client
            .get(app.url("/graphql"))
            .query(&[("query", "{ me { username } }")])
            .bearer_auth(&user.access)
            .send()
            .await
            .unwrap();
        let answer = Gql::read(query).await;
        assert_eq!(answer.data()["me"]["username"], "getter");

        let mutation = app
            .client
            .get(app.url("/graphql"))
            .query(&[("query", format!("mutation {{ signOut(refreshToken: \"{}\") }}", user.refresh))])
            .send()
            .await
            .unwrap();
        let answer = Gql::read(mutation).await;
        assert_eq!(answer.status, 405);
        answer.assert_error("BAD_USER_INPUT", None);
        // The refresh token still works: the GET changed nothing.
        let refreshed = app
            .gql("mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }", json!({ "t": user.refresh }))
            .await;
        refreshed.data();
    }

    async fn malformed_requests_get_coded_errors(app) {
        let garbage = app
            .client
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        let answer = Gql::read(garbage).await;
        answer.assert_error("BAD_USER_INPUT", None);

        app.gql("{ nosuchfield }", json!({})).await.assert_error("BAD_USER_INPUT", None);
        app.gql("query {", json!({})).await.assert_error("BAD_USER_INPUT", None);
        // A variable of the wrong type.
        app.gql("query($u: String!) { user(username: $u) { id } }", json!({ "u": 5 }))
            .await
            .assert_error("BAD_USER_INPUT", None);
        // Nesting past the depth limit.
        let deep = format!("{{ me {{ id }} {} }}", "__schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } }");
        app.gql(&deep, json!({})).await.assert_error("BAD_USER_INPUT", None);
    }

    async fn oversized_bodies_are_refused(app) {
        let huge = "x".repeat(app.config.server.max_body_bytes + 1);
        let response = app
            .client
            .post(app.url("/graphql"))
            .json(&json!({ "query": "{ __typename }", "variables": { "pad": huge } }))
            .send()
            .await
            .unwrap();
        let answer = Gql::read(response).await;
        assert_eq!(answer.status, 413);
        answer.assert_error("BAD_USER_INPUT", None);
    }

    async fn forged_and_garbage_tokens_are_unauthenticated(app) {
        app.gql_as("not-a-token", "{ me { id } }", json!({})).await.assert_error("UNAUTHENTICATED", None);
        let user = app.sign_up("forgery").await;
        let mut forged = user.access.clone();
        forged.pop();
        forged.push(if user.access.ends_with('A') { 'B' } else { 'A' });
        app.gql_as(&forged, "{ me { id } }", json!({})).await.assert_error("UNAUTHENTICATED", None);
    }

    async fn data_survives_a_restart(app) {
        let user = app.sign_up("survivor").await;
        let app2 = app.restart().await;
        // The access token is still valid: the signing key outlived the process.
        let me = app2.gql_as(&user.access, "{ me { username } }", json!({})).await;
        assert_eq!(me.data()["me"]["username"], "survivor");
        app2.shutdown().await;
    }
}

#[test]
fn schema_file_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/schema.graphql");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == schema::sdl(),
        "schema/schema.graphql is out of date: run `cargo run -- print-schema > schema/schema.graphql`"
    );
}

#[tokio::test]
async fn production_mode_requires_a_jwt_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, database) = fresh_config(Backend::Postgres, dir.path()).await;
    config.auth.jwt_secret = None;
    let error = api::Application::build(&config)
        .await
        .err()
        .expect("start-up must fail");
    assert!(
        error.to_string().contains("JWT_SECRET is required"),
        "{error}"
    );
    config.auth.jwt_secret = Some("short".to_owned().into());
    let error = api::Application::build(&config)
        .await
        .err()
        .expect("start-up must fail");
    assert!(
        error.to_string().contains("at least 32 characters"),
        "{error}"
    );
    if let Some(name) = database {
        codecrafter_tests::drop_database(&name).await;
    }
}

#[tokio::test]
async fn embedded_mode_keeps_its_key_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = fresh_config(Backend::Sqlite, dir.path()).await;
    let app = api::Application::build(&config).await.unwrap();
    let key = dir.path().join("jwt_secret");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(dir.path().join("codecrafter.db").exists());
    drop(app);
    let first = std::fs::read_to_string(&key).unwrap();
    let _again = api::Application::build(&config).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&key).unwrap(),
        first,
        "the key must survive restarts"
    );
}
