//! The HTTP surface.

mod assets;
mod graphql;
mod health;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware::map_response;
use axum::response::Response;
use axum::routing::get;
use schema::{AppSchema, Services};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::CorsLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    pub services: Services,
    /// Largest WebSocket message (an `applyUpdate` carries a base64 update).
    pub max_ws_message_bytes: usize,
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/graphql", get(graphql::graphql_get).post(graphql::graphql))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(assets::serve)
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(map_response(coded_payload_too_large))
        // Tokens travel in headers, not cookies, so any origin may call the API.
        .layer(CorsLayer::permissive())
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
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
