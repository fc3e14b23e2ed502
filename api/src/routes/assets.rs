//! The web playground (`web-playground/dist`, built by Vite and committed): `/` the live
//! editor, `/graphiql` GraphiQL, `/assets/*` their hashed files, and every other page path
//! answered with the editor's `index.html` so its client-side routes (`/p/<id>`,
//! `/invite/<token>`) survive a reload.
//!
//! rust-embed rather than include_dir: it computes each file's SHA-256 (our ETag) and MIME
//! type at compile time, and `debug-embed` makes debug builds embed the files too, so
//! `cargo run` behaves as the release binary does and needs no Node.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::{EmbeddedFile, RustEmbed};

#[derive(RustEmbed)]
#[folder = "../web-playground/dist"]
struct Playground;

/// Vite names these after their content: they never change under the same name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Pages name the current hashed assets, so the browser revalidates them (ETag) every time.
const REVALIDATE: &str = "no-cache";

pub async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let path = uri.path().trim_start_matches('/');
    let (name, cache) = match path {
        "" | "index.html" => ("index.html", REVALIDATE),
        "graphiql" | "graphiql/" | "graphiql.html" => ("graphiql.html", REVALIDATE),
        _ if path.starts_with("assets/") => (path, IMMUTABLE),
        // A file name that is not ours is a 404, not the editor (a missing script must fail).
        _ if path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains('.')) =>
        {
            return (StatusCode::NOT_FOUND, "not found").into_response();
        }
        _ => ("index.html", REVALIDATE),
    };
    match Playground::get(name) {
        Some(file) => respond(name, &file, cache, &headers),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

fn respond(name: &str, file: &EmbeddedFile, cache: &'static str, request: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()));
    let mut response = if request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(file.data.clone()))
    };
    let headers = response.headers_mut();
    let mime = file.metadata.mimetype();
    let content_type = if mime.starts_with("text/") || mime == "application/javascript" {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if name.ends_with(".html") {
        // The pages are not meant to be framed by other sites.
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}
