//! Error codes of `error` frames and WebSocket close codes (DESIGN.md §2): each enum has the
//! one exhaustive `match` from a variant to its wire value.

use serde::Serialize;

/// The `code` of an `error` frame. A client mistake is answered with one of these and the
/// connection stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The frame is not valid JSON.
    InvalidJson,
    /// Valid JSON, but not a valid message: not an object, a missing or mistyped field, a bad
    /// name, or a binary frame.
    InvalidMessage,
    /// The `type` is not one the server (or a registered handler) knows.
    UnknownType,
    /// The content is longer than the configured maximum.
    MessageTooLarge,
    /// The user sent faster than the rate limit; the frame carries `retryAfter` (ms).
    RateLimited,
    /// The action needs authentication.
    Unauthorized,
    /// The user may not do this.
    Forbidden,
    /// The sender is not a member of the room it addressed.
    NotInRoom,
    /// A per-connection limit (such as rooms per connection) would be exceeded.
    LimitExceeded,
    /// The server failed; the client did nothing wrong.
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [Self; 10] = [
        Self::InvalidJson,
        Self::InvalidMessage,
        Self::UnknownType,
        Self::MessageTooLarge,
        Self::RateLimited,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotInRoom,
        Self::LimitExceeded,
        Self::Internal,
    ];

    /// The wire form, e.g. `"NOT_IN_ROOM"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "INVALID_JSON",
            Self::InvalidMessage => "INVALID_MESSAGE",
            Self::UnknownType => "UNKNOWN_TYPE",
            Self::MessageTooLarge => "MESSAGE_TOO_LARGE",
            Self::RateLimited => "RATE_LIMITED",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotInRoom => "NOT_IN_ROOM",
            Self::LimitExceeded => "LIMIT_EXCEEDED",
            Self::Internal => "INTERNAL",
        }
    }
}

/// WebSocket close codes the server sends (RFC 6455 §7.4.1).
///
/// The ranges (RFC 6455 §7.4.2): 0-999 are never used; 1000-2999 belong to the WebSocket
/// protocol and its extensions (the codes below all come from there; 1005, 1006 and 1015 are
/// never sent in a close frame); 3000-3999 are registered with IANA by libraries and
/// frameworks; 4000-4999 are private to an application. Switchboard defines none of its own
/// in 3000-4999: each reason it closes for maps onto one of the protocol's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: the purpose of the connection is fulfilled (also idle and heartbeat timeouts).
    Normal,
    /// 1001: the server is shutting down.
    GoingAway,
    /// 1002: the client broke the WebSocket protocol.
    ProtocolError,
    /// 1003: the client sent a kind of data the endpoint cannot accept.
    Unsupported,
    /// 1007: a text message was not valid UTF-8.
    InvalidPayload,
    /// 1008: policy: authentication failed, abuse, or a consumer too slow to keep up.
    Policy,
    /// 1009: a frame or message exceeded the size limit.
    TooBig,
    /// 1011: the server hit an unexpected condition.
    Internal,
    /// 1013: the server or the user is at capacity; try again later.
    TryAgainLater,
}

impl CloseCode {
    /// Every code, in declaration order.
    pub const ALL: [Self; 9] = [
        Self::Normal,
        Self::GoingAway,
        Self::ProtocolError,
        Self::Unsupported,
        Self::InvalidPayload,
        Self::Policy,
        Self::TooBig,
        Self::Internal,
        Self::TryAgainLater,
    ];

    /// The code with this number, if it is one of ours.
    pub fn from_u16(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|known| known.as_u16() == code)
    }

    /// The numeric code on the wire.
    pub const fn as_u16(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::ProtocolError => 1002,
            Self::Unsupported => 1003,
            Self::InvalidPayload => 1007,
            Self::Policy => 1008,
            Self::TooBig => 1009,
            Self::Internal => 1011,
            Self::TryAgainLater => 1013,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_serialize_as_their_wire_names() {
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
    }
}
