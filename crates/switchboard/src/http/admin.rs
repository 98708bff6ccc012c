//! The admin routes: what operators read about a node (`/stats`, `/metrics`). With `--admin-key` they
//! require it (`Authorization: Bearer KEY` or `X-API-Key: KEY`, compared in constant time);
//! without one they are open. A new admin route is one `.route` line in [`routes`].

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::{AppState, keys, status};

/// The admin routes, behind the admin key when one is configured.
pub(super) fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/stats", get(status::stats))
        .route("/metrics", get(status::metrics))
        .route_layer(middleware::from_fn_with_state(state, require_admin_key))
}

/// Refuses requests that do not present the admin key with 401.
async fn require_admin_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if keys::authorized(request.headers(), state.auth.admin_key.as_deref()) {
        return next.run(request).await;
    }
    let body = json!({"error": {"code": "UNAUTHORIZED", "message": "missing or wrong admin key"}});
    let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}
