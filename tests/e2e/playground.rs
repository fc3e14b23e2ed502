//! The web playground the binary serves: pages, assets, caching, the SPA fallback.

use codecrafter_tests::{Backend, run};

#[tokio::test]
async fn pages_and_assets_are_served_with_types_and_caching() {
    run(Backend::Sqlite, |app| async move {
        let get = |path: &str| app.client.get(app.url(path)).send();
        let editor = get("/").await.unwrap();
        assert_eq!(editor.status(), 200);
        assert_eq!(editor.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(editor.headers()["cache-control"], "no-cache");
        let etag = editor.headers()["etag"].clone();
        let html = editor.text().await.unwrap();
        assert!(html.contains("<title>CodeCrafter</title>"), "{html}");

        // A reload on a client-side route gets the editor too.
        for route in ["/p/some-project", "/invite/a-token"] {
            let page = get(route).await.unwrap();
            assert_eq!(page.status(), 200, "{route}");
            assert_eq!(page.text().await.unwrap(), html, "{route}");
        }

        let graphiql = get("/graphiql").await.unwrap();
        assert_eq!(graphiql.status(), 200);
        assert!(
            graphiql
                .text()
                .await
                .unwrap()
                .contains("<title>CodeCrafter GraphiQL</title>")
        );

        // The scripts the page names: hashed, JavaScript, cached for good.
        let script = html
            .split("src=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a script in index.html");
        assert!(script.starts_with("/assets/"), "{script}");
        let asset = get(script).await.unwrap();
        assert_eq!(asset.status(), 200);
        assert_eq!(
            asset.headers()["content-type"],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            asset.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );

        // Revalidation: the same page answers 304 to its own ETag.
        let again = app
            .client
            .get(app.url("/"))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304);

        // A missing file is a 404, not the editor; the API routes are untouched.
        assert_eq!(get("/assets/missing-0000.js").await.unwrap().status(), 404);
        assert_eq!(get("/favicon.ico").await.unwrap().status(), 404);
        assert_eq!(get("/healthz").await.unwrap().status(), 200);
        let post = app.client.post(app.url("/")).send().await.unwrap();
        assert_eq!(post.status(), 404);
    })
    .await;
}

#[tokio::test]
async fn the_wasm_of_the_editor_has_its_type() {
    run(Backend::Sqlite, |app| async move {
        let html = app.get_text("/").await;
        let script = html
            .split("src=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap();
        let js = app.get_text(script).await;
        let wasm = js
            .split("assets/")
            .filter_map(|rest| rest.split(['"', '\'', '`']).next())
            .find(|name| name.ends_with(".wasm"))
            .map(|name| format!("/assets/{name}"));
        let wasm = wasm.expect("the editor script names loro's wasm");
        let response = app.client.get(app.url(&wasm)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/wasm");
    })
    .await;
}
