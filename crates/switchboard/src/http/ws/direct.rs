//! Upgrades the standalone server's accept path read itself (`http/head.rs`), without hyper:
//! the same admission as the hyper path (`check_upgrade`, `admit_upgrade` in the parent
//! module), then the connection, which writes the 101 and the `connect` frame in one write.
//! The connection runs on the task that read the request ([`Opened`]): no second task is
//! spawned, so a handshake is neither handed to another worker nor moved into a new task.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpStream;

use super::{
    Accepted, Admission, ConnectParams, ServeUpgraded, Upgraded, admit_upgrade, boxed,
    check_upgrade, connection_span,
};
use crate::connection::{self, Answered, Mode, Prefixed};
use crate::http::AppState;
use crate::per_ip::IpSlot;

/// What [`answer`] did with a WebSocket upgrade to `/` or `/ws` that our accept path read
/// itself.
pub(crate) enum Answer {
    /// Upgraded: the connection, which owns the socket, to run on the caller's task.
    Upgraded(Opened),
    /// Refused: the response to send, after which the connection carries on as HTTP.
    Refused(TcpStream, Response),
}

/// An upgraded connection, to be run (polled to its end) by the task that read its request:
/// the accept path's task, which the instance's tracker tracks, so shutdown waits for it.
pub(crate) struct Opened {
    connection: ServeUpgraded,
    /// The per-IP count of this connection (`--max-connections-per-ip`) lasts as long as it.
    _ip_slot: Option<IpSlot>,
}

impl Future for Opened {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().connection).poll(cx)
    }
}

/// Answers a WebSocket upgrade to `/` or `/ws` that the accept path parsed itself (no hyper):
/// the same admission as [`upgrade`], then the connection, which writes the 101 and the
/// `connect` frame in one write. `read_ahead` is what the client sent after the request head.
/// The request carries the [`ClientAddr`] and [`IpSlot`] hyper's path would give it.
pub(crate) async fn answer(
    state: &AppState,
    stream: TcpStream,
    mut request: axum::http::Request<()>,
    read_ahead: Option<bytes::Bytes>,
) -> Answer {
    let params = match Query::<ConnectParams>::try_from_uri(request.uri()) {
        Ok(Query(params)) => params,
        Err(rejection) => return Answer::Refused(stream, rejection.into_response()),
    };
    let checked = match check_upgrade(state, &params, &request, Mode::Protocol) {
        Ok(checked) => checked,
        Err(response) => return Answer::Refused(stream, *response),
    };
    let accepted = match admit_upgrade(state, checked).await {
        Ok(accepted) => accepted,
        Err(response) => return Answer::Refused(stream, *response),
    };
    let head = switching_protocols(&accepted);
    let ip_slot = request.extensions_mut().remove::<IpSlot>();
    let upgraded = accepted.upgraded;
    let connection = match connection_span(&request) {
        None => serve_direct(stream, read_ahead, head, upgraded),
        // Debug logs on: the span covers the connection's start and goes with it, boxed.
        Some(span) => {
            let connection = span.in_scope(|| serve_direct(stream, read_ahead, head, upgraded));
            ServeUpgraded::Other(Box::pin(tracing::Instrument::instrument(connection, span)))
        }
    };
    Answer::Upgraded(Opened {
        connection,
        _ip_slot: ip_slot,
    })
}

/// The 101 response of an accepted upgrade, as written on the wire.
fn switching_protocols(accepted: &Accepted) -> bytes::Bytes {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ",
    );
    head.extend_from_slice(accepted.accept.as_bytes());
    if let Some(subprotocol) = accepted.subprotocol {
        head.extend_from_slice(b"\r\nsec-websocket-protocol: ");
        head.extend_from_slice(subprotocol.name().as_bytes());
    }
    if let Some(answer) = &accepted.extensions {
        head.extend_from_slice(b"\r\nsec-websocket-extensions: ");
        head.extend_from_slice(answer.as_bytes());
    }
    head.extend_from_slice(b"\r\n\r\n");
    head.into()
}

/// Serves a connection whose upgrade [`answer`] accepted: inline with the 101 written along
/// with the first frames when the peer is known and nothing was sent ahead, otherwise with
/// the 101 written first.
fn serve_direct(
    stream: TcpStream,
    read_ahead: Option<bytes::Bytes>,
    head: bytes::Bytes,
    upgraded: Upgraded,
) -> ServeUpgraded {
    match (read_ahead, upgraded.admission) {
        (None, Admission::Known(peer)) => ServeUpgraded::Tcp(connection::serve_answered(
            Answered { io: stream, head },
            upgraded.endpoint,
            peer,
            upgraded.terms,
        )),
        (read_ahead, admission) => {
            let upgraded = Upgraded {
                admission,
                ..upgraded
            };
            ServeUpgraded::Other(Box::pin(async move {
                let mut stream = stream;
                if tokio::io::AsyncWriteExt::write_all(&mut stream, &head)
                    .await
                    .is_err()
                {
                    return;
                }
                match read_ahead {
                    None => boxed(stream, upgraded).await,
                    Some(prefix) => boxed(Prefixed::new(prefix, stream), upgraded).await,
                }
            }))
        }
    }
}
