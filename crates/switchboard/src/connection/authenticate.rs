//! A connection that brought no token to its upgrade while authentication is on. Before it
//! enters the hub it must send `{"type":"auth","payload":{"token":"…"}}` within the deadline
//! (`--auth-timeout`), or its MessagePack form on a `switchboard.v1.msgpack` connection.
//!
//! Until then it is nowhere in the hub: no `connect` frame, no presence, not counted as a
//! connection. This task reads one frame at a time and never past a frame's end, so whatever
//! the client sends after its `auth` frame stays in the socket for the session. It answers
//! pings, answers every other frame with `UNAUTHORIZED`, and closes with 1008 when the token
//! does not verify or the deadline passes, and with 1001 when the server shuts down. With a
//! connect proxy the token goes to the backend instead, with what the upgrade request told
//! (`crate::proxy`); a refusal closes with 1008 or the backend's own code (4000–4999), and a
//! backend that gives no answer with 1013 (try again later) or 1011 (a nonsensical one). Frames
//! are limited to [`PENDING_MAX_FRAME`] bytes until then, so an unauthenticated client holds
//! little memory; replies are written before the next frame is read, so nothing queues.

use std::borrow::Cow;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Endpoint, Peer, Stream, Terms, driver};
use crate::auth::{JwtConfig, MAX_TOKEN_BYTES};
use crate::hub::{Counters, Hub, Outgoing, Wire};
use crate::protocol::{self, CloseCode, Command, ErrorCode, Inbound};
use crate::proxy::{ConnectRequest, ConnectVerdict, Proxy, ProxyError};
use crate::ws::Violation;
use crate::ws::decoder::{Decoder, Flow, Limits, Message};
use crate::ws::frame::{self, OpCode};

/// Largest frame accepted before authentication: a token of [`MAX_TOKEN_BYTES`] and its
/// envelope.
pub(crate) const PENDING_MAX_FRAME: usize = MAX_TOKEN_BYTES + 1024;

/// Who decides whether an `auth` frame's token is good.
pub(crate) enum Verifier {
    /// The token is a JWT, verified with this key.
    Jwt(Arc<JwtConfig>),
    /// The backend's connect proxy, told what the upgrade request said (boxed: a pending
    /// connection is rare next to open ones, and this keeps the variants small).
    Proxy(Arc<Proxy>, Box<ConnectRequest>),
}

/// What a connection waiting for its `auth` frame needs.
pub(crate) struct Pending {
    /// Decides on the token.
    pub(crate) verifier: Verifier,
    /// When the connection is closed if it has not authenticated.
    pub(crate) deadline: Instant,
    /// The instance's shutdown token.
    pub(crate) shutdown: CancellationToken,
}

/// How waiting for the token ended.
enum Outcome {
    Authenticated(Peer),
    /// Close with this code and reason, and wait for the client's close.
    Refuse(u16, String),
    /// The client closed (answered already) or the socket failed.
    Gone,
}

/// One message read before authentication, owned (the frame buffer is reused).
enum Received {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>),
}

/// Waits for the `auth` frame, then serves the connection like one that came with a token.
pub(crate) async fn authenticate<S>(
    mut io: S,
    endpoint: Arc<Endpoint>,
    pending: Pending,
    terms: Terms,
) where
    S: Stream + Send + 'static,
{
    let hub = &endpoint.hub;
    let max = PENDING_MAX_FRAME.min(hub.config().limits.max_frame_size);
    let max = u32::try_from(max).unwrap_or(u32::MAX);
    let limits = Limits {
        max_frame: max,
        max_message: max,
        deflate: terms.deflate.is_some(),
    };
    let outcome = tokio::select! {
        waited = tokio::time::timeout_at(pending.deadline, wait_for_token(&mut io, hub, &pending.verifier, (limits, terms.msgpack))) => {
            waited.unwrap_or_else(|_| {
                Counters::add(&hub.counters().auth_failures, 1);
                Outcome::Refuse(CloseCode::Policy.as_u16(), "authentication timed out".to_owned())
            })
        }
        () = pending.shutdown.cancelled() => {
            Outcome::Refuse(CloseCode::GoingAway.as_u16(), "server shutting down".to_owned())
        }
    };
    match outcome {
        Outcome::Authenticated(peer) => super::serve(io, endpoint, peer, terms).await,
        Outcome::Refuse(code, reason) => driver::refuse(io, code, &reason, limits).await,
        Outcome::Gone => {}
    }
}

/// Reads frames until a valid `auth` frame; `msgpack`: the client speaks MessagePack (its
/// frames are transcoded to JSON, and the replies to MessagePack).
async fn wait_for_token<S: Stream>(
    io: &mut S,
    hub: &Hub,
    verifier: &Verifier,
    (limits, msgpack): (Limits, bool),
) -> Outcome {
    let mut decoder = Decoder::new(limits);
    let parse_limits = super::parse_limits(hub);
    loop {
        let received = match read_message(io, &mut decoder, limits).await {
            Ok(Some(received)) => received,
            Ok(None) => continue,
            Err(ReadError::Io) => return Outcome::Gone,
            Err(ReadError::Violation(violation)) => {
                return Outcome::Refuse(
                    violation.close_code().as_u16(),
                    violation.close_reason().to_owned(),
                );
            }
        };
        let text = match received {
            Received::Text(text) if !msgpack => Ok(text),
            Received::Binary(data) if msgpack => switchboard_protocol::msgpack::to_json(&data)
                .map_err(|error| {
                    hub.counters().count_error(ErrorCode::InvalidJson);
                    protocol::error_frame(ErrorCode::InvalidJson, &error.to_string(), None)
                }),
            // The other encoding's frames: no command can be read from them.
            Received::Text(_) | Received::Binary(_) => Err(unauthorized(hub, None)),
            Received::Ping(payload) => Err(frame::frame(OpCode::Pong, &payload)),
            Received::Pong => continue,
            Received::Close(code) => {
                let echo = code.unwrap_or(CloseCode::Normal.as_u16());
                let _ = io.write_all(&frame::close_frame(echo, "")).await;
                return Outcome::Gone;
            }
        };
        let reply = match text {
            Ok(text) => match protocol::parse(&text, &parse_limits) {
                Ok(Inbound {
                    command: Command::Auth { token },
                    ..
                }) => {
                    return match verifier {
                        Verifier::Jwt(jwt) => verify(hub, jwt, &token),
                        Verifier::Proxy(proxy, request) => ask(hub, proxy, request, token).await,
                    };
                }
                Ok(Inbound {
                    command: Command::Pong,
                    ..
                }) => continue,
                Ok(Inbound { id, .. }) => unauthorized(hub, id),
                Err(rejection) => {
                    hub.counters().count_error(rejection.code);
                    protocol::error_frame(rejection.code, &rejection.message, rejection.id)
                }
            },
            Err(reply) => reply,
        };
        let wire = if msgpack { Wire::MsgPack } else { Wire::Json };
        let reply = Outgoing::new(&reply);
        let reply = reply.for_wire(wire, None, 0);
        if io.write_all(&reply).await.is_err() {
            return Outcome::Gone;
        }
    }
}

/// Verifies a JWT from an `auth` frame.
fn verify(hub: &Hub, jwt: &JwtConfig, token: &str) -> Outcome {
    match jwt.verify(token, hub.config().limits.max_name_length) {
        Ok(identity) => Outcome::Authenticated(Peer::from(identity)),
        Err(error) => {
            Counters::add(&hub.counters().auth_failures, 1);
            tracing::debug!(%error, "auth frame refused");
            Outcome::Refuse(
                CloseCode::Policy.as_u16(),
                format!("invalid token: {error}"),
            )
        }
    }
}

/// Asks the connect proxy about an `auth` frame's token.
async fn ask(
    hub: &Hub,
    proxy: &Arc<Proxy>,
    request: &ConnectRequest,
    token: Cow<'_, str>,
) -> Outcome {
    let request = ConnectRequest {
        token: Some(token.into_owned()),
        ..request.clone()
    };
    let refused = match proxy.connect(&request).await {
        Ok(ConnectVerdict::Allowed { user, grants }) => {
            return Outcome::Authenticated(Peer {
                user,
                grants: Some(Box::new(grants)),
                expires_at: None,
            });
        }
        Ok(ConnectVerdict::Refused { message, .. }) => (CloseCode::Policy.as_u16(), message),
        Ok(ConnectVerdict::Disconnect { code, reason }) => (code, reason),
        Err(error) => {
            let code = match error {
                ProxyError::NotSet
                | ProxyError::Timeout
                | ProxyError::Unavailable(_)
                | ProxyError::Status(_) => CloseCode::TryAgainLater,
                ProxyError::TooLarge | ProxyError::Malformed(_) | ProxyError::Invalid(_) => {
                    CloseCode::Internal
                }
            };
            return Outcome::Refuse(code.as_u16(), error.to_string());
        }
    };
    Counters::add(&hub.counters().auth_failures, 1);
    Outcome::Refuse(refused.0, refused.1)
}

fn unauthorized(hub: &Hub, id: Option<&serde_json::value::RawValue>) -> bytes::Bytes {
    hub.counters().count_error(ErrorCode::Unauthorized);
    protocol::error_frame(
        ErrorCode::Unauthorized,
        "authenticate first: send {\"type\":\"auth\",\"payload\":{\"token\":\"…\"}}",
        id,
    )
}

enum ReadError {
    Io,
    Violation(Violation),
}

impl From<std::io::Error> for ReadError {
    fn from(_: std::io::Error) -> Self {
        Self::Io
    }
}

/// Reads exactly one frame and decodes it; `None` for a fragment of a message not yet whole.
async fn read_message<S: Stream>(
    io: &mut S,
    decoder: &mut Decoder,
    limits: Limits,
) -> Result<Option<Received>, ReadError> {
    let mut head = [0u8; 14];
    io.read_exact(&mut head[..2]).await?;
    let length_bytes = match head[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask_bytes = if head[1] & 0x80 == 0 { 0 } else { 4 };
    let header_len = 2 + length_bytes + mask_bytes;
    io.read_exact(&mut head[2..header_len]).await?;
    let payload_len = match length_bytes {
        2 => u64::from(u16::from_be_bytes([head[2], head[3]])),
        8 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&head[2..10]);
            u64::from_be_bytes(bytes)
        }
        _ => u64::from(head[1] & 0x7F),
    };
    // Checked here, before anything is allocated for the payload.
    let payload_len = usize::try_from(payload_len)
        .ok()
        .filter(|&len| len <= limits.max_frame as usize)
        .ok_or(ReadError::Violation(Violation::TooBig))?;
    let mut frame = Vec::with_capacity(header_len + payload_len);
    frame.extend_from_slice(&head[..header_len]);
    frame.resize(header_len + payload_len, 0);
    io.read_exact(&mut frame[header_len..]).await?;
    let mut received = None;
    decoder
        .feed(&mut frame, &mut |message| {
            received = Some(match message {
                Message::Text(text) => Received::Text(text.to_owned()),
                Message::Binary(data) => Received::Binary(data.to_vec()),
                Message::Ping(payload) => Received::Ping(payload.to_vec()),
                Message::Pong(_) => Received::Pong,
                Message::Close(status) => Received::Close(status.map(|(code, _)| code)),
            });
            Flow::Stop
        })
        .map_err(ReadError::Violation)?;
    Ok(received)
}

#[cfg(test)]
#[path = "authenticate_tests.rs"]
mod tests;
