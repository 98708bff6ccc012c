//! Our RFC 6455 WebSocket layer: the opening handshake, frame parsing and encoding, message
//! assembly, and permessage-deflate (RFC 7692: `extension` negotiates it, `deflate` does it).
//!
//! Why our own and not tungstenite or fastwebsockets: Switchboard's two hardest targets need
//! control that those crates do not give. An idle connection must cost under 2 KiB, so a
//! connection must not own a read buffer (both crates keep one per connection, 4-128 KiB); and a
//! message to 10 000 recipients must be framed once, with the same bytes written to every socket
//! (both crates copy each message into a per-connection write buffer). The layer is small, has
//! no I/O of its own (the connection driver does the I/O) and is checked with the Autobahn suite.

pub(crate) mod decoder;
pub(crate) mod deflate;
pub(crate) mod extension;
pub(crate) mod frame;
pub(crate) mod handshake;

use switchboard_protocol::CloseCode;

/// A client broke the WebSocket protocol; the connection is closed with [`Violation::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Violation {
    /// A framing rule was broken (close 1002).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A text message or close reason is not valid UTF-8 (close 1007).
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// A frame or message exceeds the configured size limit (close 1009).
    #[error("frame or message too big")]
    TooBig,
}

impl Violation {
    /// The close code RFC 6455 assigns to this violation.
    pub(crate) fn close_code(self) -> CloseCode {
        match self {
            Self::Protocol(_) => CloseCode::ProtocolError,
            Self::InvalidUtf8 => CloseCode::InvalidPayload,
            Self::TooBig => CloseCode::TooBig,
        }
    }

    /// The reason sent in the close frame.
    pub(crate) fn close_reason(self) -> &'static str {
        match self {
            Self::Protocol(rule) => rule,
            Self::InvalidUtf8 => "invalid UTF-8",
            Self::TooBig => "frame or message too big",
        }
    }
}
