//! Why a client command was refused: each refusal is one variant, which gives the `error`
//! frame's code (one exhaustive match) and its message (the variant's `Display`).

use std::fmt;

use crate::auth::TokenError;
use crate::handlers::Reject;
use crate::ids::{ChannelId, ChannelSpec, RoomId, StreamId};
use crate::protocol::ErrorCode;
use crate::proxy::ProxyError;

/// A refused command; the client gets an `error` frame and the connection stays open.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    /// The sender addressed a room it is not in.
    #[error("not a member of room {0:?}")]
    NotInRoom(RoomId),
    /// The connection's token does not grant the action.
    #[error("your token does not allow you to {0}")]
    Forbidden(Action),
    /// Pattern subscriptions are off for clients (`--allow-client-patterns`).
    #[error("pattern subscriptions are not allowed for clients")]
    PatternsNotAllowed,
    /// `presence:` channels are written by the server only.
    #[error("presence channels carry presence updates only")]
    PresenceChannel,
    /// The connection is in as many rooms as it may be.
    #[error("a connection may be in at most {0} rooms")]
    TooManyRooms(usize),
    /// The connection subscribes to as many channels as it may.
    #[error("a connection may subscribe to at most {0} channels")]
    TooManyChannels(usize),
    /// An `auth` frame on a connection that has its identity already.
    #[error("this connection is already authenticated")]
    AlreadyAuthenticated,
    /// A `refresh` frame whose token does not verify.
    #[error("invalid token: {0}")]
    InvalidToken(#[source] TokenError),
    /// A `refresh` frame whose token is another user's.
    #[error("the token is for another user")]
    OtherUser,
    /// An `auth` or `refresh` frame while authentication is off.
    #[error("authentication is off on this server")]
    AuthenticationOff,
    /// A `refresh` frame on a connection whose identity the backend's connect proxy gave.
    #[error(
        "tokens are not refreshed here: the backend decides who connects; reconnect with a new token"
    )]
    DecidedByBackend,
    /// A `history` request while history is off.
    #[error("history is off on this server (--history-size 0)")]
    HistoryOff,
    /// A type neither the protocol nor an application handler knows.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A payload whose JSON could not be read as the command needs.
    #[error("{0}")]
    InvalidData(#[source] serde_json::Error),
    /// An application handler, or the backend's RPC proxy, refused the message.
    #[error("{}", .0.message())]
    Handler(Reject),
    /// Refused by the backend's join or subscribe proxy, with its message (bounded).
    #[error("{0}")]
    ByBackend(String),
    /// The backend gave no usable answer (down, slow, non-2xx, not the documented JSON).
    #[error("{0}")]
    Backend(#[source] ProxyError),
}

impl Refused {
    /// The `code` of the `error` frame.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Self::NotInRoom(_) => ErrorCode::NotInRoom,
            Self::Forbidden(_) | Self::PatternsNotAllowed | Self::PresenceChannel => {
                ErrorCode::Forbidden
            }
            Self::TooManyRooms(_) | Self::TooManyChannels(_) => ErrorCode::LimitExceeded,
            Self::AlreadyAuthenticated
            | Self::AuthenticationOff
            | Self::DecidedByBackend
            | Self::HistoryOff
            | Self::InvalidData(_) => ErrorCode::InvalidMessage,
            Self::UnknownType(_) => ErrorCode::UnknownType,
            Self::InvalidToken(_) | Self::OtherUser => ErrorCode::Unauthorized,
            Self::Handler(reject) => reject.code(),
            Self::ByBackend(_) => ErrorCode::Forbidden,
            Self::Backend(_) => ErrorCode::Internal,
        }
    }
}

/// An action a token may or may not grant.
#[derive(Debug)]
pub(crate) enum Action {
    JoinRoom(RoomId),
    Message(RoomId),
    Subscribe(ChannelSpec),
    Publish(ChannelId),
    Broadcast,
    ReadHistory(StreamId),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::JoinRoom(room) => write!(f, "join room {room}"),
            Self::Message(room) => write!(f, "send messages to room {room}"),
            Self::Subscribe(channel) => write!(f, "subscribe to {channel}"),
            Self::Publish(channel) => write!(f, "publish to {channel}"),
            Self::Broadcast => f.write_str("broadcast"),
            Self::ReadHistory(stream) => write!(f, "read the history of {stream}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_their_code_and_a_message_naming_what_was_refused() {
        let room = RoomId::from_trusted("general");
        let cases = [
            (
                Refused::NotInRoom(room.clone()),
                ErrorCode::NotInRoom,
                "not a member of room \"general\"",
            ),
            (
                Refused::Forbidden(Action::Message(room)),
                ErrorCode::Forbidden,
                "your token does not allow you to send messages to room general",
            ),
            (
                Refused::TooManyRooms(100),
                ErrorCode::LimitExceeded,
                "a connection may be in at most 100 rooms",
            ),
            (
                Refused::UnknownType("typing".to_owned()),
                ErrorCode::UnknownType,
                "unknown message type \"typing\"",
            ),
            (
                Refused::Handler(Reject::new(ErrorCode::Forbidden, "muted")),
                ErrorCode::Forbidden,
                "muted",
            ),
            (
                Refused::ByBackend("members only".to_owned()),
                ErrorCode::Forbidden,
                "members only",
            ),
            (
                Refused::Backend(ProxyError::Timeout),
                ErrorCode::Internal,
                "backend timeout",
            ),
        ];
        for (refused, code, message) in cases {
            assert_eq!(refused.code(), code);
            assert_eq!(refused.to_string(), message);
        }
    }
}
