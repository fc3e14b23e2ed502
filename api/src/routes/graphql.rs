//! `/graphql` over HTTP (GraphQL over HTTP: POST with a JSON body, or GET with `?query=`,
//! queries only) and the WebSocket upgrade to graphql-ws (see `graphql_ws`).

use std::sync::Arc;

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{Response, ServerError, Value};
use async_graphql_axum::GraphQLRequest;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use schema::Viewer;
use schema::error::codes;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::AppState;
use super::graphql_ws;

/// The media type of GraphQL over HTTP, and the older one clients may ask for instead.
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const APPLICATION_JSON: &str = "application/json";

/// What a connection's writes gather before a system call; the connection flushes after each
/// event it handles, so this bounds a burst's writes, never delays a frame. tungstenite's
/// write buffer never shrinks, so this (with `graphql_ws::FRAGMENT`) is also about what a
/// socket keeps after the largest message it was ever sent.
const WS_WRITE_BUFFER: usize = 4 * 1024;
/// What a WebSocket reads at a time. tungstenite zero-fills its read buffer up to its capacity
/// before every read, so all of it is resident in every connection, idle or not. A receiver
/// is sent pings and little else; a frame larger than this (an edit, typically a few hundred
/// bytes) arrives whole, in more reads, and the buffer keeps the size of the largest.
const WS_READ_BUFFER: usize = 256;

pub async fn graphql(
    State(state): State<Arc<AppState>>,
    client: Option<axum::Extension<schema::budgets::ClientIp>>,
    method: Method,
    headers: HeaderMap,
    request: Result<GraphQLRequest, async_graphql_axum::rejection::GraphQLRejection>,
) -> HttpResponse {
    let media = ResponseMedia::accepted(&headers);
    let mut request = match request {
        Ok(request) => request.into_inner(),
        Err(rejection) => {
            let message = format!("the request is not a GraphQL request: {}", rejection.0);
            return error_response(StatusCode::BAD_REQUEST, message);
        }
    };
    if method == Method::GET {
        // Checked here too: deciding whether a GET is a query parses the document.
        if let Err(error) = schema::limits::scan(&request.query) {
            return media.respond(Response::from_errors(vec![error]));
        }
        if !is_query_only(&mut request) {
            let mut response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "mutations and subscriptions must be sent with POST".into(),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
    }
    let viewer = viewer_from(&headers, &state.services);
    let operation = request.operation_name.clone();
    let mut request = schema::prepare(request, &state.services, viewer);
    if let Some(axum::Extension(client)) = client {
        request = request.data(client);
    }
    // A task of its own: when the client goes away or the request times out, a mutation
    // still finishes (stopping one between its commit and its broadcast would lose the
    // broadcast); queries are cut off by their own timeout.
    let schema = state.schema.clone();
    // (In the request's span, which the task would otherwise leave.)
    let execution =
        tracing::Instrument::in_current_span(async move { schema.execute(request).await });
    let mut answer = match tokio::spawn(execution).await {
        Ok(response) => media.respond(response),
        Err(error) => {
            tracing::error!(%error, "a GraphQL execution failed");
            coded_error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                codes::INTERNAL,
                "the server failed to answer; try again".into(),
            )
        }
    };
    if let Some(name) = operation {
        let name: String = name.chars().take(100).collect();
        answer
            .extensions_mut()
            .insert(crate::observe::OperationName(name));
    }
    answer
}

/// The media type of the answer, from the request's `Accept` (GraphQL over HTTP): the new
/// `application/graphql-response+json` unless the client accepts only `application/json`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ResponseMedia {
    GraphqlResponseJson,
    Json,
}

impl ResponseMedia {
    fn accepted(headers: &HeaderMap) -> Self {
        let accept = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .collect::<Vec<_>>();
        let json_only = accept.iter().any(|m| m == APPLICATION_JSON)
            && !accept
                .iter()
                .any(|m| m == GRAPHQL_RESPONSE_JSON || m == "*/*" || m == "application/*");
        if json_only {
            Self::Json
        } else {
            Self::GraphqlResponseJson
        }
    }

    /// Under `application/graphql-response+json` a request that failed before execution
    /// (it does not parse, validate or fit the limits) is 400 and has no `data`; under
    /// `application/json` every well-formed request is 200.
    fn respond(self, response: Response) -> HttpResponse {
        let request_error = response.data == Value::Null
            && !response.errors.is_empty()
            && response.errors.iter().all(|e| e.path.is_empty());
        let retry_after = limited(&response);
        let (status, content_type) = match self {
            _ if retry_after.is_some() => (StatusCode::TOO_MANY_REQUESTS, self.media_type()),
            Self::GraphqlResponseJson if request_error => {
                (StatusCode::BAD_REQUEST, GRAPHQL_RESPONSE_JSON)
            }
            Self::GraphqlResponseJson => (StatusCode::OK, GRAPHQL_RESPONSE_JSON),
            Self::Json => (StatusCode::OK, APPLICATION_JSON),
        };
        let mut body = serde_json::Map::new();
        if !request_error {
            body.insert(
                "data".into(),
                serde_json::to_value(&response.data).unwrap_or_default(),
            );
        }
        if !response.errors.is_empty() {
            body.insert(
                "errors".into(),
                serde_json::to_value(&response.errors).unwrap_or_default(),
            );
        }
        if !response.extensions.is_empty() {
            body.insert(
                "extensions".into(),
                serde_json::to_value(&response.extensions).unwrap_or_default(),
            );
        }
        let mut answer = (
            status,
            [(header::CONTENT_TYPE, content_type)],
            serde_json::Value::Object(body).to_string(),
        )
            .into_response();
        answer.headers_mut().extend(response.http_headers);
        if let Some(seconds) = retry_after {
            answer
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        answer
    }

    fn media_type(self) -> &'static str {
        match self {
            Self::GraphqlResponseJson => GRAPHQL_RESPONSE_JSON,
            Self::Json => APPLICATION_JSON,
        }
    }
}

/// When nothing was done because a budget ran out (no data, every error RATE_LIMITED): the
/// seconds to wait, for HTTP's 429 and `Retry-After`.
fn limited(response: &Response) -> Option<u64> {
    if response.data != Value::Null || response.errors.is_empty() {
        return None;
    }
    response
        .errors
        .iter()
        .map(|error| {
            let extensions = error.extensions.as_ref()?;
            match (extensions.get("code"), extensions.get("retryAfter")) {
                (Some(Value::String(code)), Some(Value::Number(after)))
                    if code == codes::RATE_LIMITED =>
                {
                    after.as_u64()
                }
                _ => None,
            }
        })
        .collect::<Option<Vec<u64>>>()?
        .into_iter()
        .max()
}

/// GET `/graphql`: a WebSocket upgrade (graphql-ws), or a query in the URL.
pub async fn graphql_get(State(state): State<Arc<AppState>>, request: Request) -> HttpResponse {
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
    let client = parts
        .extensions
        .get::<schema::budgets::ClientIp>()
        .copied()
        .map(axum::Extension);
    let graphql_request =
        GraphQLRequest::from_request(Request::from_parts(parts, body), &state).await;
    graphql(State(state), client, method, headers, graphql_request).await
}

/// The WebSocket handshake (RFC 6455, section 4.2), then the connection's own task.
///
/// Done here rather than with axum's `WebSocketUpgrade`: its socket type cannot send a
/// message in fragments, so every connection would keep a write buffer as large as the largest
/// message it was ever sent (a document's catch-up, for every subscriber), and its upgrade task
/// wraps the connection's future in state of its own for the connection's life.
async fn websocket(state: Arc<AppState>, request: Request) -> HttpResponse {
    let (mut parts, _) = request.into_parts();
    let headers = &parts.headers;
    let offers_protocol =
        tokens(headers, header::SEC_WEBSOCKET_PROTOCOL).any(|p| p == graphql_ws::PROTOCOL);
    if !offers_protocol {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!("ask for the {} WebSocket subprotocol", graphql_ws::PROTOCOL),
        );
    }
    let asks_upgrade =
        tokens(headers, header::CONNECTION).any(|token| token.eq_ignore_ascii_case("upgrade"));
    if !asks_upgrade {
        return error_response(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs `Connection: upgrade`".to_owned(),
        );
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut refused = error_response(
            StatusCode::UPGRADE_REQUIRED,
            "this server speaks WebSocket version 13".to_owned(),
        );
        refused.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return refused;
    }
    // The key is a base64 nonce of 16 bytes: 24 characters, the last two `==`.
    let accept = match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if is_websocket_key(key.as_bytes()) => derive_accept_key(key.as_bytes()),
        _ => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "a WebSocket upgrade needs a `Sec-WebSocket-Key` of 16 bytes in base64".to_owned(),
            );
        }
    };
    let (Some(on_upgrade), Ok(accept)) = (
        parts.extensions.remove::<OnUpgrade>(),
        HeaderValue::try_from(accept),
    ) else {
        return error_response(
            StatusCode::UPGRADE_REQUIRED,
            "this connection cannot be upgraded".to_owned(),
        );
    };

    let config = WebSocketConfig::default()
        .max_message_size(Some(state.max_ws_message_bytes))
        // A frame's length is reserved when its header arrives: no frame beyond a message.
        .max_frame_size(Some(state.max_ws_message_bytes))
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER);
    let client = parts.extensions.get::<schema::budgets::ClientIp>().copied();
    state
        .connections
        .clone()
        .spawn(connection(on_upgrade, config, state, client));

    let mut switching = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = switching.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(graphql_ws::PROTOCOL),
    );
    switching
}

/// The task of one WebSocket connection, from the upgrade to its close. It lives as long as
/// the connection, so what it holds is part of every idle connection's cost: an async block
/// keeps what it captures for its whole life, so its arguments arrive in a box, emptied and
/// freed as it starts.
fn connection(
    on_upgrade: OnUpgrade,
    config: WebSocketConfig,
    state: Arc<AppState>,
    client: Option<schema::budgets::ClientIp>,
) -> impl Future<Output = ()> + Send + 'static {
    let mut setup = Some(Box::new((on_upgrade, config, state, client)));
    async move {
        // The box is freed at the end of the arm that empties it.
        let (on_upgrade, config, state, client) = match setup.take() {
            Some(setup) => *setup,
            None => return,
        };
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        let metrics = state.services.metrics.clone();
        let (settings, shutdown) = (state.ws, state.shutdown.clone());
        metrics.websocket_opened();
        graphql_ws::serve(socket, state, settings, shutdown, client).await;
        metrics.websocket_closed();
    }
}

/// The comma-separated tokens of every `name` header, trimmed.
fn tokens(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// `Sec-WebSocket-Key`: 16 bytes in base64, which is 22 characters of the alphabet and `==`.
fn is_websocket_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
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

pub(super) fn viewer_from_bearer(value: &str, services: &schema::Services) -> Viewer {
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
    coded_error_response(status, codes::BAD_USER_INPUT, message)
}

fn coded_error_response(status: StatusCode, code: &str, message: String) -> HttpResponse {
    let mut error = ServerError::new(message, None);
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    let body = serde_json::json!({ "errors": [error] }).to_string();
    (
        status,
        [(header::CONTENT_TYPE, GRAPHQL_RESPONSE_JSON)],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    /// A connection's task holds this future for the connection's life: little beyond the
    /// connection's own (see `graphql_ws::tests`).
    #[test]
    fn a_connections_task_stays_small() {
        fn output_size<A, B, C, D, R>(_: fn(A, B, C, D) -> R) -> usize {
            std::mem::size_of::<R>()
        }
        let size = output_size(super::connection);
        assert!(
            size <= 768 + 128,
            "the connection's task takes {size} bytes"
        );
    }

    #[test]
    fn websocket_keys_are_16_bytes_in_base64() {
        assert!(super::is_websocket_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        for bad in [
            &b""[..],
            b"dGhlIHNhbXBsZSBub25jZQ",
            b"dGhlIHNhbXBsZSBub25jZQ=",
            b"dGhlIHNhbXBsZSBub25jZ-==",
            b"dGhlIHNhbXBsZSBub25jZQ===",
        ] {
            assert!(
                !super::is_websocket_key(bad),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
