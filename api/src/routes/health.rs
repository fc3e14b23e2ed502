//! Liveness and readiness probes.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use super::AppState;

/// The process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// The process can serve: its database answers. With `REDIS_URL`, the link to the other
/// nodes is reported too, but a node whose Redis is away still serves (edits are stored and
/// reach the other nodes through the database within seconds), so it stays ready, with
/// `"status": "degraded"`: a proxy must not take every node out because Redis is down.
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<serde_json::Value>) {
    let database = match state.services.db.ping().await {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: database unreachable");
            false
        }
    };
    let redis = state.services.bus.redis_connected();
    let status = match (database, redis) {
        (false, _) => "unavailable",
        (true, Some(false)) => "degraded",
        (true, _) => "ready",
    };
    let mut body = json!({
        "status": status,
        "database": if database { "ok" } else { "unreachable" },
    });
    if let Some(connected) = redis {
        body["redis"] = json!(if connected { "ok" } else { "unreachable" });
    }
    let code = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// Prometheus text (see `schema::metrics` for the families).
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl axum::response::IntoResponse {
    schema::metrics::observe(&state.services).await;
    crate::observe::metrics_response(crate::observe::render_metrics())
}
