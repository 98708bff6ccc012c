//! The WebSocket upgrade: validates the handshake and the identity, answers 101, and runs the
//! connection on the upgraded stream.
//!
//! When the stream under hyper is a plain `TcpStream` (our server, and `axum::serve`), it is
//! taken back from hyper after the upgrade so the connection runs on the bare socket, with no
//! boxing and no buffer kept by the HTTP layer. Our server's TLS streams are taken back too
//! and run on their own monomorphization of the driver; other streams (custom servers) run
//! through hyper's upgraded I/O.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::AppState;
use crate::connection::{self, Connection, Mode, Prefixed};
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
            Ok(upgraded) => serve_upgraded(upgraded, hub, user, mode).await,
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

/// The future that serves one upgraded connection: the bare-socket and TLS paths inline (not
/// boxing the common case saves every connection an allocation), any other stream boxed.
enum ServeUpgraded {
    Tcp(Connection<TcpStream>),
    /// The TLS state (rustls buffers, keys) is boxed so that it does not grow the plain
    /// variant; a TLS connection allocates far more than one box anyway.
    Tls(Connection<Box<TlsStream<TcpStream>>>),
    Other(Pin<Box<dyn Future<Output = ()> + Send>>),
}

impl Future for ServeUpgraded {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Self::Tcp(connection) => Pin::new(connection).poll(cx),
            Self::Tls(connection) => Pin::new(connection).poll(cx),
            Self::Other(future) => future.as_mut().poll(cx),
        }
    }
}

fn serve_upgraded(
    upgraded: hyper::upgrade::Upgraded,
    hub: Hub,
    user: UserId,
    mode: Mode,
) -> ServeUpgraded {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let stream = parts.io.into_inner();
            // Latency matters more than packet count for a message server.
            let _ = stream.set_nodelay(true);
            // hyper's leftover bytes are a view into its whole read buffer (8 KiB or more):
            // copy out what the client sent ahead, and free the buffer before the connection
            // settles in for hours.
            let read_ahead = (!parts.read_buf.is_empty())
                .then(|| bytes::Bytes::copy_from_slice(&parts.read_buf));
            drop(parts.read_buf);
            match read_ahead {
                None => ServeUpgraded::Tcp(connection::serve(stream, hub, user, mode)),
                Some(prefix) => {
                    let io = Prefixed::new(prefix, stream);
                    ServeUpgraded::Other(Box::pin(connection::serve(io, hub, user, mode)))
                }
            }
        }
        Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
            Ok(parts) => {
                let stream = Box::new(parts.io.into_inner());
                let read_ahead = (!parts.read_buf.is_empty())
                    .then(|| bytes::Bytes::copy_from_slice(&parts.read_buf));
                drop(parts.read_buf);
                match read_ahead {
                    None => ServeUpgraded::Tls(connection::serve(stream, hub, user, mode)),
                    Some(prefix) => {
                        let io = Prefixed::new(prefix, stream);
                        ServeUpgraded::Other(Box::pin(connection::serve(io, hub, user, mode)))
                    }
                }
            }
            Err(upgraded) => {
                let io = TokioIo::new(upgraded);
                ServeUpgraded::Other(Box::pin(connection::serve(io, hub, user, mode)))
            }
        },
    }
}
