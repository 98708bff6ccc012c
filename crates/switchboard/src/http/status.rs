//! `/stats`, `/health`, `/ready` and `/metrics`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::api::ApiError;
use crate::broker::BrokerStatus;

#[derive(Deserialize)]
pub(super) struct StatsQuery {
    scope: Option<String>,
}

/// `GET /stats` (this node) and `GET /stats?scope=cluster` (every live node).
pub(super) async fn stats(
    State(state): State<AppState>,
    Query(query): Query<StatsQuery>,
) -> Response {
    match query.scope.as_deref() {
        None | Some("node") => Json(state.hub.stats()).into_response(),
        Some("cluster") => match state.hub.cluster_stats().await {
            Ok(stats) => Json(stats).into_response(),
            Err(error) => ApiError::StateStore(error).into_response(),
        },
        Some(other) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"code": "INVALID_REQUEST", "message": format!("unknown scope {other:?}: use node or cluster")}})),
        )
            .into_response(),
    }
}

/// `GET /metrics`: the Prometheus text exposition, read from the hub's counters now.
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    match crate::metrics::render(&state.hub) {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Liveness: the process answers.
pub(super) async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 503 while draining, while over `--max-memory` (new connections would be refused,
/// so a load balancer should send them elsewhere) or while the broker cannot reach the other
/// nodes.
pub(super) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let hub = &state.hub;
    if hub.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        );
    }
    if hub.is_under_memory_pressure() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "memory_pressure" })),
        );
    }
    match hub.broker().status() {
        BrokerStatus::Connected => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        BrokerStatus::Degraded => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "degraded", "broker": hub.broker().name() })),
        ),
    }
}
