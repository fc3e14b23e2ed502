//! `/graphql` over HTTP: POST with a JSON body, or GET with `?query=` (queries only).

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{Response, ServerError};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use schema::Viewer;
use schema::error::codes;

use super::AppState;

pub async fn graphql(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    request: Result<GraphQLRequest, async_graphql_axum::rejection::GraphQLRejection>,
) -> HttpResponse {
    let mut request = match request {
        Ok(request) => request.into_inner(),
        Err(rejection) => {
            let message = format!("the request is not a GraphQL request: {}", rejection.0);
            return error_response(StatusCode::BAD_REQUEST, message);
        }
    };
    if method == Method::GET && !is_query_only(&mut request) {
        return error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations and subscriptions must be sent with POST".into(),
        );
    }
    let viewer = viewer_from(&headers, &state.services);
    let request = schema::prepare(request, &state.services, viewer);
    GraphQLResponse::from(state.schema.execute(request).await).into_response()
}

/// GET `/graphql`: a WebSocket upgrade (graphql-ws, or the older subscriptions-transport-ws),
/// or a query in the URL.
pub async fn graphql_get(State(state): State<AppState>, request: Request) -> HttpResponse {
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        return websocket(state, request).await;
    }
    let (parts, body) = request.into_parts();
    let (method, headers) = (parts.method.clone(), parts.headers.clone());
    let graphql_request =
        GraphQLRequest::from_request(Request::from_parts(parts, body), &state).await;
    graphql(State(state), method, headers, graphql_request).await
}

async fn websocket(state: AppState, request: Request) -> HttpResponse {
    let (mut parts, _) = request.into_parts();
    let Ok(protocol) = GraphQLProtocol::from_request_parts(&mut parts, &state).await else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "ask for the graphql-transport-ws (or graphql-ws) WebSocket subprotocol".into(),
        );
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(state.max_ws_message_bytes)
        // Small buffers: an idle connection should cost kilobytes, not the 128 KiB defaults;
        // frames are written out at once.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            use std::sync::atomic::Ordering;
            let services = state.services.clone();
            let metrics = services.metrics.clone();
            metrics
                .websocket_connections
                .fetch_add(1, Ordering::Relaxed);
            GraphQLWebSocket::new(socket, state.schema.clone(), protocol)
                .on_connection_init(move |payload| async move {
                    let viewer = viewer_from_init(&payload, &services);
                    Ok(schema::connection_data(&services, viewer))
                })
                .serve()
                .await;
            metrics
                .websocket_connections
                .fetch_sub(1, Ordering::Relaxed);
        })
}

/// The graphql-ws `connection_init` payload: `{ "authorization": "Bearer <access token>" }`.
fn viewer_from_init(payload: &serde_json::Value, services: &schema::Services) -> Viewer {
    let value = payload
        .get("authorization")
        .or_else(|| payload.get("Authorization"))
        .and_then(|v| v.as_str());
    match value {
        None => Viewer::Anonymous,
        Some(value) => viewer_from_bearer(value, services),
    }
}

/// Read `Authorization: Bearer <access token>`.
pub fn viewer_from(headers: &HeaderMap, services: &schema::Services) -> Viewer {
    match headers.get(header::AUTHORIZATION) {
        None => Viewer::Anonymous,
        Some(value) => match value.to_str() {
            Ok(value) => viewer_from_bearer(value, services),
            Err(_) => Viewer::InvalidToken,
        },
    }
}

fn viewer_from_bearer(value: &str, services: &schema::Services) -> Viewer {
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "));
    match token.and_then(|t| services.tokens.verify_access(t.trim())) {
        Some(user) => Viewer::User(user),
        None => Viewer::InvalidToken,
    }
}

/// GET must not change anything (it is cached, prefetched and sent by links).
/// A document that does not parse is let through: execution reports the syntax error.
fn is_query_only(request: &mut async_graphql::Request) -> bool {
    let Ok(document) = request.parsed_query() else {
        return true;
    };
    match &document.operations {
        DocumentOperations::Single(op) => op.node.ty == OperationType::Query,
        DocumentOperations::Multiple(ops) => {
            ops.values().all(|op| op.node.ty == OperationType::Query)
        }
    }
}

pub(super) fn error_response(status: StatusCode, message: String) -> HttpResponse {
    let mut error = ServerError::new(message, None);
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", codes::BAD_USER_INPUT);
    let response = Response::from_errors(vec![error]);
    (status, GraphQLResponse::from(response)).into_response()
}
