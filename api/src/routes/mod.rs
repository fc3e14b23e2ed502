//! The HTTP surface.

mod graphql;
mod health;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use schema::{AppSchema, Services};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::CorsLayer;
use tower_http::trace::TraceLayer;

#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    pub services: Services,
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/graphql", get(graphql::graphql).post(graphql::graphql))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // Tokens travel in headers, not cookies, so any origin may call the API.
        .layer(CorsLayer::permissive())
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
}
