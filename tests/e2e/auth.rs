//! Sign-up, sign-in, refresh-token rotation, sign-out and password changes.

use std::time::{Duration, Instant};

use codecrafter_tests::serde_json::{Value, json};
use codecrafter_tests::ws::WsClient;
use codecrafter_tests::{TestApp, backend_tests};

const SIGN_UP: &str = "mutation($input: SignUpInput!) { signUp(input: $input) { accessToken refreshToken user { id username email displayName role } } }";
const SIGN_IN: &str = "mutation($login: String!, $password: String!) { signIn(input: {login: $login, password: $password}) { accessToken refreshToken user { username lastLoginAt } } }";
const REFRESH: &str = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt user { username } } }";
const SIGN_OUT: &str = "mutation($t: String!) { signOut(refreshToken: $t) }";
const CHANGE: &str =
    "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }";
const ME: &str = "{ me { username } }";

fn sign_up_input(username: &str, email: &str, password: &str) -> Value {
    json!({ "input": { "username": username, "email": email, "password": password } })
}

async fn refresh(app: &TestApp, token: &str) -> codecrafter_tests::Gql {
    app.gql(REFRESH, json!({ "t": token })).await
}

/// The new refresh token of a `refreshToken` answer.
fn next_token(answer: &codecrafter_tests::Gql) -> String {
    answer.data()["refreshToken"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Move a spent refresh token's rotation `seconds` into the past: the grace window has passed.
async fn rotated_seconds_ago(app: &TestApp, token: &str, seconds: i64) {
    use entity::refresh_token::{Column, Entity};
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let at = chrono::Utc::now() - chrono::Duration::seconds(seconds);
    let moved = Entity::update_many()
        .col_expr(Column::RevokedAt, Expr::value(at))
        .filter(Column::TokenHash.eq(schema::auth::tokens::hash_refresh_token(token)))
        .filter(Column::ReplacedBy.is_not_null())
        .exec(&app.db)
        .await
        .unwrap();
    assert_eq!(moved.rows_affected, 1);
}

/// A WebSocket operation's result payload is an UNAUTHENTICATED error.
fn assert_unauthenticated(payload: &Value) {
    assert_eq!(
        payload["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{payload}"
    );
}

/// Ask `app` for `me` with `token` until it is refused, for at most `within`.
async fn refused_within(app: &TestApp, token: &str, within: Duration) -> Duration {
    let start = Instant::now();
    codecrafter_tests::eventually(within, async || {
        let answer = app.gql_as(token, ME, json!({})).await;
        let refused = answer.body.get("errors").is_some();
        if refused {
            answer.assert_error("UNAUTHENTICATED", None);
        }
        refused
    })
    .await;
    start.elapsed()
}

backend_tests! {
    async fn sign_up_returns_a_working_session(app) {
        let answer = app.gql(SIGN_UP, json!({ "input": {
            "username": "ada", "email": " Ada@Example.COM ", "password": "analytical", "displayName": "Ada L."
        }})).await;
        let payload = &answer.data()["signUp"];
        assert_eq!(payload["user"]["email"], "ada@example.com");
        assert_eq!(payload["user"]["displayName"], "Ada L.");
        assert_eq!(payload["user"]["role"], "USER");
        let token = payload["accessToken"].as_str().unwrap();
        let me = app.gql_as(token, "{ me { username email } }", json!({})).await;
        assert_eq!(me.data()["me"]["username"], "ada");
        // The stored password is an argon2id hash, never the password.
        let row = sea_orm::ConnectionTrait::query_one_raw(
            &app.db,
            sea_orm::Statement::from_string(app.db.get_database_backend(), "SELECT password_hash FROM users"),
        )
        .await
        .unwrap()
        .unwrap();
        let hash: String = row.try_get("", "password_hash").unwrap();
        assert!(hash.starts_with("$argon2id$") && !hash.contains("analytical"), "{hash}");
    }

    async fn sign_up_validates_every_field_and_writes_nothing(app) {
        let cases = [
            (sign_up_input("ab", "a@example.com", "long-enough"), "username"),
            (sign_up_input(&"a".repeat(33), "a@example.com", "long-enough"), "username"),
            (sign_up_input("Upper", "a@example.com", "long-enough"), "username"),
            (sign_up_input("sp ace", "a@example.com", "long-enough"), "username"),
            (sign_up_input("valid", "not-an-email", "long-enough"), "email"),
            (sign_up_input("valid", "a@nodot", "long-enough"), "email"),
            (sign_up_input("valid", "a@example.com", "short"), "password"),
            (sign_up_input("valid", "a@example.com", &"p".repeat(129)), "password"),
        ];
        for (input, field) in cases {
            let answer = app.gql(SIGN_UP, input.clone()).await;
            answer.assert_error("BAD_USER_INPUT", Some(field));
            assert!(!answer.message().is_empty());
        }
        let blank_name = json!({ "input": { "username": "valid", "email": "a@example.com", "password": "long-enough", "displayName": "   " } });
        app.gql(SIGN_UP, blank_name).await.assert_error("BAD_USER_INPUT", Some("displayName"));
        assert_eq!(app.count("users").await, 0);
        assert_eq!(app.count("refresh_tokens").await, 0);
    }

    async fn taken_usernames_and_emails_conflict(app) {
        app.sign_up("grace").await;
        app.gql(SIGN_UP, sign_up_input("grace", "other@example.com", "long-enough"))
            .await
            .assert_error("CONFLICT", Some("username"));
        app.gql(SIGN_UP, sign_up_input("other", "GRACE@example.com", "long-enough"))
            .await
            .assert_error("CONFLICT", Some("email"));
        assert_eq!(app.count("users").await, 1);
    }

    async fn concurrent_sign_ups_for_one_name_create_one_account(app) {
        let attempts = (0..4).map(|i| {
            let app = app.clone();
            async move { app.gql(SIGN_UP, sign_up_input("race", &format!("race{i}@example.com"), "long-enough")).await }
        });
        let answers = futures_util::future::join_all(attempts).await;
        let ok = answers.iter().filter(|a| a.body.get("errors").is_none()).count();
        assert_eq!(ok, 1, "{answers:?}");
        for answer in answers.iter().filter(|a| a.body.get("errors").is_some()) {
            answer.assert_error("CONFLICT", Some("username"));
        }
        assert_eq!(app.count("users").await, 1);
    }

    async fn password_guessing_is_slowed_down_per_login(app) {
        app.sign_up("target").await;
        app.sign_up("bystander").await;
        for _ in 0..10 {
            let wrong = app.gql(SIGN_IN, json!({ "login": "target", "password": "guess-guess" })).await;
            wrong.assert_error("UNAUTHENTICATED", None);
        }
        // From this address, slowed down: even the right password waits, however the login
        // is cased (another address is not slowed, see ratelimit::).
        for login in ["target", "TARGET"] {
            let locked = app.gql(SIGN_IN, json!({ "login": login, "password": "password-target" })).await;
            locked.assert_error("RATE_LIMITED", None);
            assert!(locked.error()["extensions"]["retryAfter"].as_u64().unwrap() > 0);
        }
        let other = app.gql(SIGN_IN, json!({ "login": "bystander", "password": "password-bystander" })).await;
        other.data();
    }

    async fn sign_in_by_username_or_email(app) {
        app.sign_up("linus").await;
        for login in ["linus", "LINUS@example.com", " linus "] {
            let answer = app.gql(SIGN_IN, json!({ "login": login, "password": "password-linus" })).await;
            assert_eq!(answer.data()["signIn"]["user"]["username"], "linus");
            assert!(answer.data()["signIn"]["user"]["lastLoginAt"].is_string());
        }
    }

    async fn wrong_password_and_unknown_user_look_the_same(app) {
        app.sign_up("margaret").await;
        let wrong = app.gql(SIGN_IN, json!({ "login": "margaret", "password": "not-her-password" })).await;
        let unknown = app.gql(SIGN_IN, json!({ "login": "nobody", "password": "not-her-password" })).await;
        wrong.assert_error("UNAUTHENTICATED", None);
        unknown.assert_error("UNAUTHENTICATED", None);
        assert_eq!(wrong.error()["message"], unknown.error()["message"]);
        assert_eq!(wrong.error()["extensions"], unknown.error()["extensions"]);
        // Nor does the time the answer takes: an unknown login costs a password hash too.
        // The two are timed in turn, so that the load of the tests beside this one (a burst of
        // it slowed every known login of a series run after the unknown ones) hits both alike.
        let mut best = [Duration::MAX; 2];
        for _ in 0..6 {
            for (fastest, login) in best.iter_mut().zip(["margaret", "nobody"]) {
                let started = Instant::now();
                app.gql(SIGN_IN, json!({ "login": login, "password": "not-her-password" })).await;
                *fastest = (*fastest).min(started.elapsed());
            }
        }
        let [known, unknown] = best;
        assert!(unknown * 2 >= known, "unknown login {unknown:?}, known {known:?}");
    }

    async fn inactive_users_cannot_sign_in_or_refresh(app) {
        let user = app.sign_up("barbara").await;
        sea_orm::ConnectionTrait::execute_unprepared(&app.db, "UPDATE users SET active = false WHERE username = 'barbara'")
            .await
            .unwrap();
        app.gql(SIGN_IN, json!({ "login": "barbara", "password": "password-barbara" }))
            .await
            .assert_error("FORBIDDEN", None);
        refresh(&app, &user.refresh).await.assert_error("FORBIDDEN", None);
    }

    async fn refresh_rotates_and_reuse_revokes_the_family(app) {
        let user = app.sign_up("alan").await;
        let first = refresh(&app, &user.refresh).await;
        let second_token = next_token(&first);
        assert_ne!(second_token, user.refresh);
        let access = first.data()["refreshToken"]["accessToken"].as_str().unwrap();
        let me = app.gql_as(access, "{ me { username } }", json!({})).await;
        assert_eq!(me.data()["me"]["username"], "alan");
        // A spent token no longer works, even before anyone notices theft.
        let third_token = next_token(&refresh(&app, &second_token).await);

        // Replaying a spent token is theft: it fails, and so does every token of the family.
        refresh(&app, &user.refresh).await.assert_error("UNAUTHENTICATED", None);
        refresh(&app, &third_token).await.assert_error("UNAUTHENTICATED", None);

        // Another sign-in is another family and is unaffected.
        let other = app.sign_in("alan", "password-alan").await;
        refresh(&app, &other.refresh).await.data();
    }

    async fn two_tabs_refreshing_at_once_get_the_same_pair(app) {
        let user = app.sign_up("edsger").await;
        let tabs = (0..4).map(|_| refresh(&app, &user.refresh));
        let answers = futures_util::future::join_all(tabs).await;
        let a = &answers[0].data()["refreshToken"];
        for answer in &answers[1..] {
            assert_eq!(&answer.data()["refreshToken"], a, "every tab gets the same pair");
        }
        assert_ne!(a["refreshToken"], user.refresh.as_str());
        // A late tab within the window too.
        let late = refresh(&app, &user.refresh).await;
        assert_eq!(&late.data()["refreshToken"], a);
        // The session goes on: the pair works, and rotates as usual.
        let access = a["accessToken"].as_str().unwrap();
        let me = app.gql_as(access, "{ me { username } }", json!({})).await;
        assert_eq!(me.data()["me"]["username"], "edsger");
        let next = refresh(&app, a["refreshToken"].as_str().unwrap()).await;
        let next_access = next.data()["refreshToken"]["accessToken"].as_str().unwrap();
        app.gql_as(next_access, "{ me { username } }", json!({})).await.data();
        app.gql_as(access, "{ me { username } }", json!({})).await.data();
    }

    async fn a_refresh_token_reused_after_the_window_revokes_the_family(app) {
        let user = app.sign_up("tony").await;
        let first = refresh(&app, &user.refresh).await;
        let access = first.data()["refreshToken"]["accessToken"].as_str().unwrap().to_owned();
        let successor = next_token(&first);
        let mut ws = WsClient::connect(&app, Some(&access)).await;
        assert!(ws.request(ME, json!({})).await.get("errors").is_none());
        rotated_seconds_ago(&app, &user.refresh, 11).await;

        refresh(&app, &user.refresh).await.assert_error("UNAUTHENTICATED", None);
        refresh(&app, &successor).await.assert_error("UNAUTHENTICATED", None);
        // The family's access tokens end with it, over HTTP and on an open socket.
        app.gql_as(&access, ME, json!({})).await.assert_error("UNAUTHENTICATED", None);
        assert_unauthenticated(&ws.request(ME, json!({})).await);
        // The user's other sessions are untouched.
        let other = app.sign_in("tony", "password-tony").await;
        app.gql_as(&other.access, ME, json!({})).await.data();
    }

    async fn sign_out_ends_the_sessions_access_tokens(app) {
        let user = app.sign_up("ken").await;
        let other = app.sign_in("ken", "password-ken").await;
        let project = app.create_project(&user, "Unix", false).await;
        let mut ws = WsClient::connect(&app, Some(&user.access)).await;
        assert!(ws.request(ME, json!({})).await.get("errors").is_none());
        app.gql(SIGN_OUT, json!({ "t": user.refresh })).await.data();

        let refused = app.gql_as(&user.access, ME, json!({})).await;
        refused.assert_error("UNAUTHENTICATED", None);
        assert!(refused.message().contains("signed out"), "{}", refused.body);
        const RENAME: &str = "mutation($p: ID!) { updateProject(id: $p, input: {title: \"Plan 9\"}) { title } }";
        app.gql_as(&user.access, RENAME, json!({ "p": project }))
            .await
            .assert_error("UNAUTHENTICATED", None);
        // On the open socket: queries, mutations and new subscriptions alike.
        assert_unauthenticated(&ws.request(ME, json!({})).await);
        assert_unauthenticated(&ws.request(RENAME, json!({ "p": project })).await);
        let events = ws
            .subscribe("subscription($p: ID!) { projectEvents(projectId: $p) { __typename } }", json!({ "p": project }))
            .await;
        assert_eq!(ws.next(&events).await.code(), "UNAUTHENTICATED");
        let title = app.gql_as(&other.access, "query($p: ID!) { project(id: $p) { title } }", json!({ "p": project })).await;
        assert_eq!(title.data()["project"]["title"], "Unix");
        app.gql_as(&other.access, ME, json!({})).await.data();
        let mut other_ws = WsClient::connect(&app, Some(&other.access)).await;
        assert!(other_ws.request(ME, json!({})).await.get("errors").is_none());
    }

    async fn change_password_ends_other_sessions_access_tokens(app) {
        let here = app.sign_up("dennis").await;
        let elsewhere = app.sign_in("dennis", "password-dennis").await;
        let mut ws = WsClient::connect(&app, Some(&elsewhere.access)).await;
        assert!(ws.request(ME, json!({})).await.get("errors").is_none());
        app.gql_as(&here.access, CHANGE, json!({ "c": "password-dennis", "n": "brand-new-pass" }))
            .await
            .data();

        app.gql_as(&elsewhere.access, ME, json!({})).await.assert_error("UNAUTHENTICATED", None);
        assert_unauthenticated(&ws.request(ME, json!({})).await);
        // The session that changed the password keeps working.
        app.gql_as(&here.access, ME, json!({})).await.data();
        let mut here_ws = WsClient::connect(&app, Some(&here.access)).await;
        assert!(here_ws.request(ME, json!({})).await.get("errors").is_none());
    }

    async fn garbage_refresh_tokens_are_unauthenticated(app) {
        refresh(&app, "").await.assert_error("UNAUTHENTICATED", None);
        refresh(&app, "definitely-not-a-token").await.assert_error("UNAUTHENTICATED", None);
    }

    async fn sign_out_ends_the_session(app) {
        let user = app.sign_up("barbara").await;
        let other = app.sign_in("barbara", "password-barbara").await;
        let answer = app.gql(SIGN_OUT, json!({ "t": user.refresh })).await;
        assert_eq!(answer.data()["signOut"], true);
        refresh(&app, &user.refresh).await.assert_error("UNAUTHENTICATED", None);
        // Only that session: the other sign-in still refreshes.
        refresh(&app, &other.refresh).await.data();
        // Unknown tokens are accepted silently.
        let unknown = app.gql("mutation { signOut(refreshToken: \"nope\") }", json!({})).await;
        assert_eq!(unknown.data()["signOut"], true);
    }

    async fn change_password_signs_out_other_sessions(app) {
        let here = app.sign_up("donald").await;
        let elsewhere = app.sign_in("donald", "password-donald").await;

        app.gql_as(&here.access, CHANGE, json!({ "c": "wrong-password", "n": "brand-new-pass" }))
            .await
            .assert_error("BAD_USER_INPUT", Some("currentPassword"));
        app.gql_as(&here.access, CHANGE, json!({ "c": "password-donald", "n": "short" }))
            .await
            .assert_error("BAD_USER_INPUT", Some("newPassword"));
        app.gql(CHANGE, json!({ "c": "password-donald", "n": "brand-new-pass" }))
            .await
            .assert_error("UNAUTHENTICATED", None);
        // Nothing changed so far: the other session still works.
        let elsewhere_refresh = refresh(&app, &elsewhere.refresh).await;
        let elsewhere_token = next_token(&elsewhere_refresh);

        let changed = app.gql_as(&here.access, CHANGE, json!({ "c": "password-donald", "n": "brand-new-pass" })).await;
        assert_eq!(changed.data()["changePassword"], true);
        refresh(&app, &elsewhere_token).await.assert_error("UNAUTHENTICATED", None);
        refresh(&app, &here.refresh).await.data();
        app.gql(SIGN_IN, json!({ "login": "donald", "password": "password-donald" }))
            .await
            .assert_error("UNAUTHENTICATED", None);
        app.sign_in("donald", "brand-new-pass").await;
    }
}

/// Two API nodes sharing a database and Redis: a session signed out on one is refused on the
/// other within a few seconds, over HTTP and on an open socket, and by a node started later.
async fn sign_out_reaches_every_node(backend: codecrafter_tests::Backend) {
    codecrafter_tests::run_with(backend, codecrafter_tests::use_redis, |app| async move {
        let node_b = app.spawn_node().await;
        let user = app.sign_up("radia").await;
        let other = app.sign_in("radia", "password-radia").await;
        node_b.gql_as(&user.access, ME, json!({})).await.data();
        let mut ws = WsClient::connect(&node_b, Some(&user.access)).await;
        assert!(ws.request(ME, json!({})).await.get("errors").is_none());

        app.gql(SIGN_OUT, json!({ "t": user.refresh })).await.data();
        let took = refused_within(&node_b, &user.access, Duration::from_secs(5)).await;
        eprintln!("a sign-out reached the other node in {took:?}");
        assert_unauthenticated(&ws.request(ME, json!({})).await);
        node_b.gql_as(&other.access, ME, json!({})).await.data();

        // A node that starts later learns of it from Redis.
        let node_c = app.spawn_node().await;
        refused_within(&node_c, &user.access, Duration::from_secs(5)).await;
        node_c.gql_as(&other.access, ME, json!({})).await.data();
    })
    .await;
}

mod a_sign_out_on_one_node_is_refused_on_the_others {
    #[tokio::test]
    async fn sqlite() {
        super::sign_out_reaches_every_node(codecrafter_tests::Backend::Sqlite).await;
    }

    #[tokio::test]
    async fn postgres() {
        super::sign_out_reaches_every_node(codecrafter_tests::Backend::Postgres).await;
    }
}
