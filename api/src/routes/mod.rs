//! The HTTP surface.

mod graphql;
mod graphql_ws;
mod health;

pub use graphql_ws::WsSettings;

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware::map_response;
use axum::response::Response;
use axum::routing::get;
use schema::{AppSchema, Services};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::CorsLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    pub services: Services,
    /// Largest WebSocket message (an `applyUpdate` carries a base64 update).
    pub max_ws_message_bytes: usize,
    pub ws: WsSettings,
    /// Cancelled when the server stops: WebSockets complete their operations and close.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The WebSocket connections being served, awaited on shutdown.
    pub connections: tokio_util::task::TaskTracker,
}

pub fn router(state: AppState, max_body_bytes: usize, request_timeout: Duration) -> Router {
    Router::new()
        .route("/graphql", get(graphql::graphql_get).post(graphql::graphql))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(map_response(coded_errors))
        // Tokens travel in headers, not cookies, so any origin may call the API.
        .layer(CorsLayer::permissive())
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
}

/// The body limit and the request timeout answer with an empty or plain-text body; give
/// them the GraphQL error shape clients parse.
async fn coded_errors(response: Response) -> Response {
    let message = match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large",
        StatusCode::REQUEST_TIMEOUT => "the request took too long and was stopped",
        _ => return response,
    };
    graphql::error_response(response.status(), message.into())
}
