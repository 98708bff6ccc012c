//! The HTTP surface (DESIGN.md §3) as axum [`Router`]s. The public routes: the WebSocket
//! upgrade on `/` and `/ws`, the SSE fallback on `/sse` and `/sse/{connectionId}`, Yjs documents on `/yjs/{document}`, `/health`, `/ready`, the pages
//! (`/demo`, `/demo/doc`), the JavaScript client (`/client.js`) and the editor's Yjs bundle
//! (`/yjs.js`); `/echo` when enabled. The admin routes, which a node may serve on a listener of
//! their own (`--admin-port`, see [`Routes`]): `/stats`, `/metrics`, `/dashboard` and the server
//! API under `/api`.

mod admin;
mod api;
mod assets;
pub(crate) mod head;
mod history;
mod keys;
mod sse;
mod status;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use api::ApiAccess;
pub(crate) use ws::{Answer, Opened, answer};

use crate::auth::AuthConfig;
use crate::connection::Endpoint;
use crate::hub::Hub;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) hub: Hub,
    /// What the WebSocket connections share (the same hub, and the application's handlers).
    pub(crate) endpoint: Arc<Endpoint>,
    /// Connection tasks are spawned here, so shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
    /// Who may use the server API.
    pub(crate) api: ApiAccess,
    /// Token verification, origins and the admin key.
    pub(crate) auth: AuthConfig,
    /// Cancelled when the instance shuts down; connections still waiting for their `auth`
    /// frame (not yet in the hub) close with 1001 then.
    pub(crate) shutdown: CancellationToken,
    /// Whether `/yjs` serves documents (not behind an application's own broker).
    pub(crate) serves_documents: bool,
}

/// Which of a node's routes a router serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Routes {
    /// Every route, on one listener.
    All,
    /// The public routes only: the admin routes are served elsewhere (404 here).
    Public,
    /// The admin routes only.
    Admin,
}

/// The routes of a node that `routes` selects.
pub(crate) fn router(state: AppState, routes: Routes) -> Router {
    let mut router = Router::new();
    if routes != Routes::Admin {
        router = router.merge(public_routes(&state));
    }
    if routes != Routes::Public {
        router = router
            .route("/dashboard", get(assets::dashboard))
            .merge(admin::routes(state.clone()))
            .merge(api::routes(state.clone()))
            // Unknown paths and methods under /api answer in the API's JSON error shape.
            .fallback(api::fallback)
            .method_not_allowed_fallback(api::method_not_allowed);
    }
    let body_limit = state.hub.config().limits.max_frame_size;
    router
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// What clients and browsers use.
fn public_routes(state: &AppState) -> Router<AppState> {
    let router = Router::new()
        .route("/", get(ws::upgrade_or_landing))
        .route("/ws", get(ws::upgrade))
        .route("/sse", get(sse::stream))
        .route("/sse/{connection}", post(sse::post).options(sse::preflight))
        .route("/yjs/{*document}", get(ws::document))
        .route("/demo", get(assets::demo))
        .route("/demo/doc", get(assets::doc_demo))
        .route("/client.js", get(assets::client_js))
        .route("/yjs.js", get(assets::yjs_js))
        .route("/health", get(status::health))
        .route("/ready", get(status::ready));
    if state.hub.config().echo_endpoint {
        router.route("/echo", get(ws::echo))
    } else {
        router
    }
}
