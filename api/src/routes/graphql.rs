//! `/graphql` over HTTP: POST with a JSON body, or GET with `?query=` (queries only).

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{Response, ServerError};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
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

/// Read `Authorization: Bearer <access token>`.
pub fn viewer_from(headers: &HeaderMap, services: &schema::Services) -> Viewer {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Viewer::Anonymous;
    };
    let token = value.to_str().ok().and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    });
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
