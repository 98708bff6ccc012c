//! `/stats`, `/health` and `/ready`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use crate::broker::BrokerStatus;
use crate::hub::StatsSnapshot;

pub(super) async fn stats(State(state): State<AppState>) -> Json<StatsSnapshot> {
    Json(state.hub.stats())
}

/// Liveness: the process answers.
pub(super) async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 503 while draining or while the broker cannot reach the other nodes.
pub(super) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let hub = &state.hub;
    if hub.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
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
