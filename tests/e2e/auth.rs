//! Sign-up, sign-in, refresh-token rotation, sign-out and password changes.

use codecrafter_tests::serde_json::{Value, json};
use codecrafter_tests::{TestApp, backend_tests};

const SIGN_UP: &str = "mutation($input: SignUpInput!) { signUp(input: $input) { accessToken refreshToken user { id username email displayName role } } }";
const SIGN_IN: &str = "mutation($login: String!, $password: String!) { signIn(input: {login: $login, password: $password}) { accessToken refreshToken user { username lastLoginAt } } }";
const REFRESH: &str = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken user { username } } }";

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
        // Locked for the window, even with the right password, however the login is cased.
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

    async fn concurrent_refreshes_with_one_token_yield_one_session(app) {
        let user = app.sign_up("edsger").await;
        let (a, b) = tokio::join!(refresh(&app, &user.refresh), refresh(&app, &user.refresh));
        let succeeded: Vec<_> = [&a, &b].into_iter().filter(|r| r.body.get("errors").is_none()).collect();
        assert!(succeeded.len() <= 1, "a token was spent twice: {a:?} {b:?}");
        if let Some(winner) = succeeded.first() {
            // The loser's replay revoked the family, including the winner's new token.
            refresh(&app, &next_token(winner)).await.assert_error("UNAUTHENTICATED", None);
        }
    }

    async fn garbage_refresh_tokens_are_unauthenticated(app) {
        refresh(&app, "").await.assert_error("UNAUTHENTICATED", None);
        refresh(&app, "definitely-not-a-token").await.assert_error("UNAUTHENTICATED", None);
    }

    async fn sign_out_ends_the_session(app) {
        let user = app.sign_up("barbara").await;
        let other = app.sign_in("barbara", "password-barbara").await;
        let answer = app.gql("mutation($t: String!) { signOut(refreshToken: $t) }", json!({ "t": user.refresh })).await;
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
        const CHANGE: &str = "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }";

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
