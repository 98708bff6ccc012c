//! The WebSocket upgrade: validates the handshake and the identity, answers 101, and runs the
//! connection on the upgraded stream.
//!
//! When the stream under hyper is a plain `TcpStream` (our server, and `axum::serve`), it is
//! taken back from hyper after the upgrade so the connection runs on the bare socket, with no
//! boxing and no buffer kept by the HTTP layer. Other streams (TLS, custom servers) run through
//! hyper's upgraded I/O.

use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

use super::AppState;
use crate::connection::{self, Mode, Prefixed};
use crate::hub::Hub;
use crate::ids::UserId;
use crate::ws::handshake::{self, HandshakeError};

/// Query parameters of the upgrade request.
#[derive(Debug, Deserialize)]
pub(super) struct ConnectParams {
    #[serde(rename = "userId")]
    user_id: Option<String>,
}

/// `GET /`: the WebSocket endpoint, or the landing page for a plain browser visit.
pub(super) async fn upgrade_or_landing(
    state: State<AppState>,
    params: Query<ConnectParams>,
    request: Request,
) -> Response {
    match handshake::check(request.method(), request.headers()) {
        Err(HandshakeError::NotUpgrade) => super::assets::landing(),
        _ => upgrade_to(state, params, request, Mode::Protocol),
    }
}

/// `GET /ws`: the WebSocket endpoint.
pub(super) async fn upgrade(
    state: State<AppState>,
    params: Query<ConnectParams>,
    request: Request,
) -> Response {
    upgrade_to(state, params, request, Mode::Protocol)
}

/// `GET /echo` (when enabled): a WebSocket that echoes every message.
pub(super) async fn echo(
    state: State<AppState>,
    params: Query<ConnectParams>,
    request: Request,
) -> Response {
    upgrade_to(state, params, request, Mode::Echo)
}

fn upgrade_to(
    State(state): State<AppState>,
    Query(params): Query<ConnectParams>,
    mut request: Request,
    mode: Mode,
) -> Response {
    let upgrade = match handshake::check(request.method(), request.headers()) {
        Ok(upgrade) => upgrade,
        Err(error) => {
            let status = match error {
                HandshakeError::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
                _ => StatusCode::BAD_REQUEST,
            };
            let mut response = (status, error.to_string()).into_response();
            if status == StatusCode::UPGRADE_REQUIRED {
                response.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            return response;
        }
    };
    let max_name = state.hub.config().limits.max_name_length;
    let user = match params.user_id.as_deref() {
        None | Some("") => UserId::anonymous(),
        Some(name) => match UserId::parse(name, max_name) {
            Ok(user) => user,
            Err(e) => {
                return (StatusCode::BAD_REQUEST, format!("invalid userId: {e}")).into_response();
            }
        },
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "this connection cannot be upgraded",
        )
            .into_response();
    };
    let hub = state.hub.clone();
    state.tasks.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run_upgraded(upgraded, hub, user, mode).await,
            Err(error) => tracing::debug!(%error, "upgrade failed"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, upgrade.accept);
    if upgrade.subprotocol {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(handshake::SUBPROTOCOL),
        );
    }
    response
}

async fn run_upgraded(upgraded: hyper::upgrade::Upgraded, hub: Hub, user: UserId, mode: Mode) {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let stream = parts.io.into_inner();
            // Latency matters more than packet count for a message server.
            let _ = stream.set_nodelay(true);
            if parts.read_buf.is_empty() {
                connection::serve(stream, hub, user, mode).await;
            } else {
                connection::serve(Prefixed::new(parts.read_buf, stream), hub, user, mode).await;
            }
        }
        Err(upgraded) => connection::serve(TokioIo::new(upgraded), hub, user, mode).await,
    }
}
