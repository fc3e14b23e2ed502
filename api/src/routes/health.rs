//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use super::AppState;

/// The process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// The process can serve: its database answers and, with `REDIS_URL`, its link to the other
/// nodes is up.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let database = match state.services.db.ping().await {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: database unreachable");
            false
        }
    };
    let redis = state.services.bus.redis_connected();
    let mut body = json!({
        "status": "ready",
        "database": if database { "ok" } else { "unreachable" },
    });
    if let Some(connected) = redis {
        body["redis"] = json!(if connected { "ok" } else { "unreachable" });
    }
    if database && redis != Some(false) {
        (StatusCode::OK, Json(body))
    } else {
        body["status"] = json!("unavailable");
        (StatusCode::SERVICE_UNAVAILABLE, Json(body))
    }
}

/// Prometheus text: connections, documents in memory, updates, runs.
pub async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        schema::metrics::render(&state.services),
    )
}
