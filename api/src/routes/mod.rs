//! The HTTP surface.

mod assets;
mod graphql;
mod health;

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::map_response;
use axum::response::Response;
use axum::routing::get;
use schema::{AppSchema, Services};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    pub services: Services,
    /// Largest WebSocket message (an `applyUpdate` carries a base64 update).
    pub max_ws_message_bytes: usize,
}

pub fn router(state: AppState, max_body_bytes: usize, cors: CorsLayer) -> Router {
    Router::new()
        .route("/graphql", get(graphql::graphql_get).post(graphql::graphql))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(assets::serve)
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(map_response(coded_payload_too_large))
        .layer(cors)
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
}

/// Cross-origin browser access: the listed origins (or any, for `*`) may send the two
/// headers the API reads. Tokens travel in headers, never cookies, so no credentials mode.
pub fn cors(origins: &[String]) -> anyhow::Result<CorsLayer> {
    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    let allow = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        let list = origins
            .iter()
            .map(|origin| {
                HeaderValue::from_str(origin.trim_end_matches('/'))
                    .with_context(|| format!("CORS_ORIGINS: {origin:?} is not a valid origin"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        AllowOrigin::list(list)
    };
    Ok(CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600)))
}

/// The body limit answers 413 with plain text; give it the GraphQL error shape clients parse.
async fn coded_payload_too_large(response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return graphql::error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is too large".into(),
        );
    }
    response
}
