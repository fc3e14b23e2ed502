//! The HTTP surface.

mod assets;
mod graphql;
mod graphql_ws;
mod health;

pub use graphql_ws::WsSettings;

use std::sync::Arc;
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
use tower_http::timeout::TimeoutLayer;

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
    /// Whose forwarding headers name the client.
    pub trusted_proxies: Arc<crate::ratelimit::TrustedProxies>,
    /// The per-address budget of `/graphql`.
    pub budget: Arc<crate::ratelimit::Budget>,
    /// The selections of shared `documentUpdates` subscriptions, one copy of each.
    pub selections: schema::documents::live::Selections,
}

pub fn router(
    state: AppState,
    max_body_bytes: usize,
    request_timeout: Duration,
    cors: CorsLayer,
) -> Router {
    let governor = tower_governor::GovernorLayer::new(state.budget.clone())
        .error_handler(crate::ratelimit::refused);
    let trusted = state.trusted_proxies.clone();
    Router::new()
        .route(
            "/graphql",
            get(graphql::graphql_get)
                .post(graphql::graphql)
                .layer(governor),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(assets::serve)
        // Shared, not copied: axum hands every request its own clone of the state.
        .with_state(Arc::new(state))
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(map_response(coded_errors))
        .layer(cors)
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn_with_state(
            trusted,
            crate::ratelimit::identify,
        ))
        .layer(axum::middleware::from_fn(crate::observe::access))
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
