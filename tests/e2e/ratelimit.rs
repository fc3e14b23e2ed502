//! Budgets per client address and per user, and the sign-in slowdown.

use std::time::Duration;

use codecrafter_tests::serde_json::{Value, json};
use codecrafter_tests::{Gql, TestApp, run_with};

const SIGN_IN: &str = "mutation($login: String!, $password: String!) { signIn(input: {login: $login, password: $password}) { accessToken } }";

/// signIn as sent through a proxy that says the client is `client`.
async fn sign_in_from(
    app: &TestApp,
    client: &str,
    login: &str,
    password: &str,
) -> reqwest::Response {
    app.client
        .post(app.url("/graphql"))
        .header("x-forwarded-for", client)
        .json(&json!({ "query": SIGN_IN, "variables": { "login": login, "password": password } }))
        .send()
        .await
        .unwrap()
}

fn assert_limited(status: reqwest::StatusCode, retry_after: Option<&str>, body: &Value) {
    assert_eq!(status, 429, "{body}");
    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "RATE_LIMITED", "{body}");
    assert!(
        error["extensions"]["retryAfter"].as_u64().unwrap() >= 1,
        "{body}"
    );
}

async fn read(response: reqwest::Response) -> (reqwest::StatusCode, Option<String>, Value) {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, response.json().await.unwrap())
}

#[tokio::test]
async fn hammering_sign_in_from_one_address_leaves_the_others_served() {
    run_with(
        codecrafter_tests::Backend::Sqlite,
        |c| {
            c.rate_limits.auth_burst = 5;
            c.rate_limits.auth_per_minute = 1;
            c.rate_limits.trusted_proxies = vec!["127.0.0.1".into(), "::1".into()];
        },
        |app| async move {
            let user = app.sign_up("hammered").await;
            let _ = user;
            for _ in 0..5 {
                let (status, _, body) =
                    read(sign_in_from(&app, "203.0.113.1", "hammered", "wrong-password").await)
                        .await;
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
            }
            let (status, retry_after, body) =
                read(sign_in_from(&app, "203.0.113.1", "hammered", "password-hammered").await)
                    .await;
            assert_limited(status, retry_after.as_deref(), &body);
            assert_eq!(body["errors"][0]["extensions"]["limit"], "auth");
            // Another address is served, right password and all.
            let (status, _, body) =
                read(sign_in_from(&app, "198.51.100.2", "hammered", "password-hammered").await)
                    .await;
            assert_eq!(status, 200, "{body}");
            assert!(body["data"]["signIn"]["accessToken"].is_string(), "{body}");
            // Other operations from the limited address still work.
            let me = app.gql("{ __typename }", json!({})).await;
            me.data();
        },
    )
    .await;
}

#[tokio::test]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    run_with(
        codecrafter_tests::Backend::Sqlite,
        |c| c.rate_limits.auth_burst = 3,
        |app| async move {
            // Not a trusted proxy: every request is the socket's address, whatever it says.
            for n in 0..3 {
                let (status, _, _) =
                    read(sign_in_from(&app, &format!("192.0.2.{n}"), "nobody", "x-password").await)
                        .await;
                assert_eq!(status, 200);
            }
            let (status, retry_after, body) =
                read(sign_in_from(&app, "192.0.2.99", "nobody", "x-password").await).await;
            assert_limited(status, retry_after.as_deref(), &body);
        },
    )
    .await;
}

#[tokio::test]
async fn a_stranger_cannot_lock_someone_out() {
    run_with(
        codecrafter_tests::Backend::Postgres,
        |c| c.rate_limits.trusted_proxies = vec!["127.0.0.1".into(), "::1".into()],
        |app| async move {
            app.sign_up("victim").await;
            for _ in 0..15 {
                sign_in_from(&app, "203.0.113.66", "victim", "guess-guess").await;
            }
            // The stranger is slowed down…
            assert_refused(&app, "203.0.113.66", "victim", "password-victim").await;
            // …the owner, from her own address, is not.
            assert_signed_in(&app, "198.51.100.7", "victim", "password-victim").await;
        },
    )
    .await;
}

#[tokio::test]
async fn one_address_has_a_budget_of_requests_and_upgrades() {
    run_with(
        codecrafter_tests::Backend::Sqlite,
        |c| {
            c.rate_limits.per_second = 1;
            c.rate_limits.burst = 3;
        },
        |app| async move {
            for _ in 0..3 {
                app.gql("{ __typename }", json!({})).await.data();
            }
            let response = app
                .client
                .post(app.url("/graphql"))
                .json(&json!({ "query": "{ __typename }" }))
                .send()
                .await
                .unwrap();
            let (status, retry_after, body) = read(response).await;
            assert_limited(status, retry_after.as_deref(), &body);
            assert_eq!(body["errors"][0]["extensions"]["limit"], "address");
            // A WebSocket upgrade spends the same budget.
            let upgrade = app
                .client
                .get(app.url("/graphql"))
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .header("sec-websocket-protocol", "graphql-transport-ws")
                .send()
                .await
                .unwrap();
            assert_eq!(upgrade.status(), 429);
            // The health probes are not budgeted.
            assert_eq!(
                app.client
                    .get(app.url("/healthz"))
                    .send()
                    .await
                    .unwrap()
                    .status(),
                200
            );
        },
    )
    .await;
}

#[tokio::test]
async fn each_user_has_a_budget_of_writes() {
    run_with(
        codecrafter_tests::Backend::Sqlite,
        |c| {
            c.rate_limits.writes_burst = 2;
            c.rate_limits.writes_per_minute = 1;
        },
        |app| async move {
            let busy = app.sign_up("busy").await;
            let calm = app.sign_up("calm").await;
            app.create_project(&busy, "one", false).await;
            app.create_project(&busy, "two", false).await;
            let third = app
                .gql_as(
                    &busy.access,
                    "mutation { createProject(input: {title: \"three\"}) { id } }",
                    json!({}),
                )
                .await;
            third.assert_error("RATE_LIMITED", None);
            assert_eq!(third.error()["extensions"]["limit"], "createProject");
            assert_eq!(app.count("projects").await, 2, "nothing was created");
            // Another user is not affected.
            app.create_project(&calm, "mine", false).await;
            let _: &Gql = &third;
        },
    )
    .await;
}

/// Behind a proxy (this test), on Redis with a channel of this test's own: the budgets and
/// the sign-in slowdown shared by the nodes started from it. Redis gets ample time to
/// answer, so that a loaded machine does not make a node decide alone.
fn shared(config: &mut api::Config) {
    codecrafter_tests::use_redis(config);
    config.rate_limits.trusted_proxies = vec!["127.0.0.1".into(), "::1".into()];
    config.rate_limits.redis_timeout_ms = 5_000;
}

/// Signed in (UNAUTHENTICATED for a wrong password) rather than refused.
async fn assert_served(node: &TestApp, client: &str, login: &str, password: &str) {
    let (status, _, body) = read(sign_in_from(node, client, login, password).await).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(
        body["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{body}"
    );
}

async fn assert_signed_in(node: &TestApp, client: &str, login: &str, password: &str) {
    let (status, _, body) = read(sign_in_from(node, client, login, password).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["signIn"]["accessToken"].is_string(), "{body}");
}

async fn assert_refused(node: &TestApp, client: &str, login: &str, password: &str) -> Value {
    let (status, retry_after, body) = read(sign_in_from(node, client, login, password).await).await;
    assert_limited(status, retry_after.as_deref(), &body);
    body
}

#[tokio::test]
async fn an_address_spends_one_auth_budget_on_every_node() {
    run_with(
        codecrafter_tests::Backend::Postgres,
        |c| {
            shared(c);
            c.rate_limits.auth_burst = 3;
            c.rate_limits.auth_per_minute = 1;
        },
        |a| async move {
            let b = a.spawn_node().await;
            assert_served(&a, "203.0.113.10", "nobody", "wrong-password").await;
            assert_served(&a, "203.0.113.10", "nobody", "wrong-password").await;
            assert_served(&b, "203.0.113.10", "nobody", "wrong-password").await;
            // Spent, two on A and one on B: both nodes refuse.
            let body = assert_refused(&b, "203.0.113.10", "nobody", "wrong-password").await;
            assert_eq!(body["errors"][0]["extensions"]["limit"], "auth");
            assert_refused(&a, "203.0.113.10", "nobody", "wrong-password").await;
            // Another address has its own budget, on either node.
            assert_served(&b, "198.51.100.10", "nobody", "wrong-password").await;
            assert_eq!(
                a.services.limits.fallbacks() + b.services.limits.fallbacks(),
                0
            );
        },
    )
    .await;
}

#[tokio::test]
async fn a_user_spends_one_write_budget_on_every_node() {
    run_with(
        codecrafter_tests::Backend::Postgres,
        |c| {
            shared(c);
            c.rate_limits.writes_burst = 2;
            c.rate_limits.writes_per_minute = 1;
        },
        |a| async move {
            let b = a.spawn_node().await;
            let busy = a.sign_up("busy").await;
            let calm = a.sign_up("calm").await;
            a.create_project(&busy, "one", false).await;
            b.create_project(&busy, "two", false).await;
            for node in [&b, &a] {
                let third = node
                    .gql_as(
                        &busy.access,
                        "mutation { createProject(input: {title: \"three\"}) { id } }",
                        json!({}),
                    )
                    .await;
                third.assert_error("RATE_LIMITED", None);
                assert_eq!(third.error()["extensions"]["limit"], "createProject");
                assert!(third.error()["extensions"]["retryAfter"].as_u64().unwrap() >= 1);
            }
            assert_eq!(a.count("projects").await, 2, "nothing was created");
            // Another user has a budget of his own.
            b.create_project(&calm, "mine", false).await;
        },
    )
    .await;
}

#[tokio::test]
async fn sign_in_failures_on_one_node_slow_down_the_others() {
    run_with(
        codecrafter_tests::Backend::Postgres,
        shared,
        |a| async move {
            let b = a.spawn_node().await;
            a.sign_up("victim").await;
            let stranger = "203.0.113.66";
            // The free failures, spread over both nodes.
            for n in 0..schema::auth::limiter::FREE_FAILURES - 1 {
                let node = if n % 2 == 0 { &a } else { &b };
                assert_served(node, stranger, "victim", "guess-guess").await;
            }
            // Then failures on A until the stranger waits 4 s or more (1 s, 2 s, 4 s: each
            // failure after the free ones doubles the wait), so what follows fits in it.
            codecrafter_tests::eventually(Duration::from_secs(30), async || {
                let (status, _, body) =
                    read(sign_in_from(&a, stranger, "victim", "guess-guess").await).await;
                status == 429 && body["errors"][0]["extensions"]["retryAfter"].as_u64() >= Some(4)
            })
            .await;
            // B slows the stranger down as well, right password and all…
            let body = assert_refused(&b, stranger, "victim", "password-victim").await;
            assert!(body["data"].is_null(), "{body}");
            // …while the owner, from her own address, signs in on B.
            assert_signed_in(&b, "198.51.100.7", "victim", "password-victim").await;
        },
    )
    .await;
}

#[tokio::test]
async fn without_redis_each_node_limits_alone_and_serves() {
    let mut redis = codecrafter_tests::PrivateRedis::start().await;
    let url = redis.url();
    run_with(
        codecrafter_tests::Backend::Postgres,
        |c| {
            shared(c);
            c.redis.url = Some(secrecy::SecretString::from(url));
            c.rate_limits.redis_timeout_ms = 300;
            c.rate_limits.auth_burst = 3;
            c.rate_limits.auth_per_minute = 1;
        },
        |a| async move {
            let b = a.spawn_node().await;
            let client = "203.0.113.20";
            for _ in 0..3 {
                assert_served(&a, client, "nobody", "wrong-password").await;
            }
            assert_refused(&b, client, "nobody", "wrong-password").await;
            redis.down().await;
            // B decides alone now, with a budget of its own, and still limits…
            for _ in 0..3 {
                assert_served(&b, client, "nobody", "wrong-password").await;
            }
            let body = assert_refused(&b, client, "nobody", "wrong-password").await;
            assert_eq!(body["errors"][0]["extensions"]["limit"], "auth");
            assert!(b.services.limits.fallbacks() >= 4);
            // …and serves everything else.
            b.gql("{ __typename }", json!({})).await.data();
            let owner = b.sign_up("owner").await;
            b.create_project(&owner, "still", false).await;
        },
    )
    .await;
}
