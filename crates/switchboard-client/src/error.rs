//! The client's one error type.

use std::time::Duration;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not a `ws://` or `wss://` URL.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The payload cannot be serialized as JSON.
    #[error("the payload is not JSON: {0}")]
    Payload(#[source] serde_json::Error),
    /// The outgoing queue holds `capacity` frames already (the server is unreachable, or
    /// slower than the sender); the frame was not queued.
    #[error("the outgoing queue is full ({capacity} frames)")]
    QueueFull {
        /// The configured capacity.
        capacity: usize,
    },
    /// No reply with the request's id arrived in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The server answered the request with an `error` frame.
    #[error("the server refused the request: {code}: {message}")]
    Server {
        /// The error code, e.g. `NOT_IN_ROOM`.
        code: String,
        /// The server's explanation.
        message: String,
        /// For `RATE_LIMITED`: milliseconds until a frame is accepted again.
        retry_after: Option<u64>,
    },
    /// The server answered with a frame of another type or shape than the request expects
    /// (e.g. `history` from a server that predates it).
    #[error("unexpected reply `{kind}` to the request")]
    UnexpectedReply {
        /// The reply's type.
        kind: String,
        /// Why its payload could not be read, when it had the expected type.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// The server refused the connection (HTTP 401/403 at the handshake, or close 1008);
    /// the client does not reconnect.
    #[error("the server refused the connection: {0}")]
    Refused(String),
    /// The reconnect policy's attempts are used up.
    #[error("gave up after {attempts} connection attempts; last error: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's failure.
        last: String,
    },
    /// The client was closed (by [`Client::close`](crate::Client::close), a refusal, or the
    /// end of its reconnect attempts) before the call completed.
    #[error("the client is closed")]
    Closed,
}

impl Error {
    /// Whether this is the server's `error` reply, with `code`.
    pub fn is_server_error(&self, code: &str) -> bool {
        matches!(self, Self::Server { code: c, .. } if c == code)
    }

    /// Whether the request timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// Whether the outgoing queue was full.
    pub fn is_queue_full(&self) -> bool {
        matches!(self, Self::QueueFull { .. })
    }

    /// Whether the client is closed for good (closed, refused or out of attempts).
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed | Self::Refused(_) | Self::GaveUp { .. })
    }
}
