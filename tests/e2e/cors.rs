//! CORS for frontends on other origins: the preflight a browser sends before a GraphQL POST
//! with a token.

use codecrafter_tests::{Backend, TestApp, run, run_with};
use reqwest::Method;

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url("/graphql"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn dev_servers_on_localhost_may_send_the_token_and_others_may_not() {
    run(Backend::Sqlite, |app| async move {
        let allowed = preflight(&app, "http://localhost:5173").await;
        assert!(allowed.status().is_success(), "{}", allowed.status());
        assert_eq!(
            header(&allowed, "access-control-allow-origin"),
            Some("http://localhost:5173")
        );
        let headers = header(&allowed, "access-control-allow-headers")
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            headers.contains("authorization") && headers.contains("content-type"),
            "{headers}"
        );
        let methods = header(&allowed, "access-control-allow-methods").unwrap();
        assert!(methods.contains("POST"), "{methods}");

        // The real request carries the header too, so the browser hands the answer over.
        let post = app
            .client
            .post(app.url("/graphql"))
            .header("origin", "http://localhost:5173")
            .json(&serde_json::json!({ "query": "{ languages { language } }" }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            header(&post, "access-control-allow-origin"),
            Some("http://localhost:5173")
        );

        // A site that is not listed gets no permission (the browser blocks it).
        let other = preflight(&app, "https://evil.example").await;
        assert_eq!(header(&other, "access-control-allow-origin"), None);
    })
    .await;
}

#[tokio::test]
async fn cors_origins_names_the_allowed_sites() {
    run_with(
        Backend::Sqlite,
        |c| c.server.cors_origins = vec!["https://app.example.com".into()],
        |app| async move {
            let listed = preflight(&app, "https://app.example.com").await;
            assert_eq!(
                header(&listed, "access-control-allow-origin"),
                Some("https://app.example.com")
            );
            let dev = preflight(&app, "http://localhost:5173").await;
            assert_eq!(header(&dev, "access-control-allow-origin"), None);
        },
    )
    .await;
    run_with(
        Backend::Sqlite,
        |c| c.server.cors_origins = vec!["*".into()],
        |app| async move {
            let any = preflight(&app, "https://anywhere.example").await;
            assert_eq!(header(&any, "access-control-allow-origin"), Some("*"));
            let headers = header(&any, "access-control-allow-headers")
                .unwrap()
                .to_ascii_lowercase();
            assert!(headers.contains("authorization"), "{headers}");
        },
    )
    .await;
}
