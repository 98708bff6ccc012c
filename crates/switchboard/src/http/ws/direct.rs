//! Upgrades the standalone server's accept path read itself (`http/head.rs`), without hyper:
//! the same admission as the hyper path (`check_upgrade`, `admit_upgrade` in the parent
//! module), then a connection task that writes the 101 and the `connect` frame in one write.

use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpStream;

use super::{
    Accepted, Admission, ConnectParams, ServeUpgraded, Upgraded, admit_upgrade, boxed,
    check_upgrade, spawn_connection,
};
use crate::connection::{self, Answered, Mode, Prefixed};
use crate::http::AppState;
use crate::per_ip::IpSlot;

/// What [`answer`] did with a WebSocket upgrade to `/` or `/ws` that our accept path read
/// itself.
pub(crate) enum Answer {
    /// Upgraded: the connection's task is spawned, and owns the socket.
    Upgraded,
    /// Refused: the response to send, after which the connection carries on as HTTP.
    Refused(TcpStream, Response),
}

/// Answers a WebSocket upgrade to `/` or `/ws` that the accept path parsed itself (no hyper):
/// the same admission as [`upgrade`], then the connection's task, which writes the 101 and
/// the `connect` frame in one write. `read_ahead` is what the client sent after the request
/// head. The request carries the [`ClientAddr`] and [`IpSlot`] hyper's path would give it.
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
    let task = async move {
        let _ip_slot = ip_slot;
        serve_direct(stream, read_ahead, head, upgraded).await;
    };
    spawn_connection(state, &request, task);
    Answer::Upgraded
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
