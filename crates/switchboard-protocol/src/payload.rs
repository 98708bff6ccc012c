//! The payloads that the server writes and clients read: `connect`, `error`, `history` and
//! `token_expiring`, and
//! a client's position in a stream (`since`). Their field names (camelCase on the wire) are
//! declared once, here.
//!
//! Payloads only the server builds, or that a client passes through without reading, stay
//! with their owner.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ErrorCode;

/// Payload of `connect`, the first frame of every connection: who this connection is.
///
/// Generic over how its strings are held: the server writes borrowed ones (and its own
/// connection-id type, which serializes as a string); a client reads the defaults, owned
/// `String`s. A server sends every field ([`ConnectPayload::new`]); a reader accepts a
/// payload without `heartbeatInterval` or `node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ConnectPayload<Id = String, S = String> {
    /// The server's id for this connection.
    pub connection_id: Id,
    /// The user the server took this connection for.
    pub user_id: S,
    /// The server's heartbeat period, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<u64>,
    /// The node serving this connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<S>,
}

impl<Id, S> ConnectPayload<Id, S> {
    /// The payload as a server sends it, every field set.
    pub fn new(connection_id: Id, user_id: S, heartbeat_interval_ms: u64, node: S) -> Self {
        Self {
            connection_id,
            user_id,
            heartbeat_interval: Some(heartbeat_interval_ms),
            node: Some(node),
        }
    }
}

/// Payload of `error`: a client frame was refused (and the connection stays open).
///
/// Generic over the code: the server writes an [`ErrorCode`]; a reader that must accept codes
/// it does not know (from a newer server) reads a `String`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorPayload<'a, C = ErrorCode> {
    /// What went wrong.
    pub code: C,
    /// A human-readable explanation.
    #[serde(default)]
    pub message: Cow<'a, str>,
    /// For `RATE_LIMITED`: milliseconds until a frame would be accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// The client's id, when the refused frame had one, echoed verbatim. Only written: a reader
    /// finds the same id at the top level of the frame.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a RawValue>,
}

/// A position in a room's or channel's stream (DESIGN.md §7): the offset of a message, and the
/// epoch of the stream's history it belongs to. A client sends the last one it saw as `since`
/// when it rejoins or resubscribes; `room_joined`, `subscribed` and `history` carry the
/// stream's latest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamPosition {
    /// The offset: 1 for a stream's first message, one more for each next; 0 before any.
    pub offset: u64,
    /// The history the offset belongs to; a different epoch means that history was lost.
    pub epoch: String,
}

/// Longest epoch a server accepts in `since`, in bytes; its own are far shorter.
pub const MAX_EPOCH_LEN: usize = 64;

/// Payload of `history`: a stream's retained messages, oldest first, each the frame exactly as
/// it was delivered (with its `offset`), and the stream's latest position.
///
/// Generic over how a publication is held: the server writes raw JSON it kept, a client reads
/// whatever it likes (`serde_json::Value` by default).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryPayload<P = serde_json::Value> {
    /// The stream's epoch.
    pub epoch: String,
    /// The stream's latest offset (0 when it has had no message).
    pub offset: u64,
    /// The messages, oldest first.
    pub publications: Vec<P>,
}

/// Payload of `token_expiring`: the connection's token expires at `expires_at`, and the
/// connection is closed (1008, "token expired") a grace period after that unless the client
/// sends a `refresh` frame with a newer token first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenExpiringPayload {
    /// When the token expires (its `exp`), in ms since the epoch.
    pub expires_at: u64,
}

/// Payload of the client's `refresh` frame: a newer token for the same user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshPayload<S = String> {
    /// The JWT.
    pub token: S,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn connect_is_camel_case_both_ways() {
        let written = ConnectPayload::new("00000000000000ff", "alice", 30_000, "node-a");
        let json = serde_json::to_value(&written).unwrap();
        assert_eq!(
            json,
            json!({"connectionId": "00000000000000ff", "userId": "alice",
                   "heartbeatInterval": 30000, "node": "node-a"})
        );
        let read: ConnectPayload = serde_json::from_value(json).unwrap();
        assert_eq!(read.connection_id, "00000000000000ff");
        assert_eq!(read.node.as_deref(), Some("node-a"));
        let minimal: ConnectPayload =
            serde_json::from_value(json!({"connectionId": "1", "userId": "bob"})).unwrap();
        assert_eq!((minimal.heartbeat_interval, minimal.node), (None, None));
    }

    #[test]
    fn token_frames_are_camel_case() {
        let expiring = TokenExpiringPayload {
            expires_at: 1_732_000_000_000,
        };
        let json = serde_json::to_value(expiring).unwrap();
        assert_eq!(json, json!({"expiresAt": 1_732_000_000_000_u64}));
        assert_eq!(
            serde_json::from_value::<TokenExpiringPayload>(json).unwrap(),
            expiring
        );
        let refresh = RefreshPayload { token: "t" };
        assert_eq!(
            serde_json::to_value(refresh).unwrap(),
            json!({"token": "t"})
        );
    }

    #[test]
    fn positions_are_exactly_an_offset_and_an_epoch() {
        let since: StreamPosition =
            serde_json::from_value(json!({"offset": 7, "epoch": "e1"})).unwrap();
        assert_eq!(
            since,
            StreamPosition {
                offset: 7,
                epoch: "e1".into()
            }
        );
        for bad in [
            json!({"offset": -1, "epoch": "e1"}),
            json!({"offset": 1.5, "epoch": "e1"}),
            json!({"offset": 1}),
            json!({"epoch": "e1"}),
            json!({"offset": 1, "epoch": 2}),
            json!({"offset": 1, "epoch": "e1", "extra": true}),
        ] {
            assert!(
                serde_json::from_value::<StreamPosition>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn errors_write_a_code_and_read_any_code() {
        let id = RawValue::from_string("7".to_owned()).unwrap();
        let written = ErrorPayload {
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            retry_after: Some(250),
            id: Some(&id),
        };
        let json = serde_json::to_value(&written).unwrap();
        assert_eq!(
            json,
            json!({"code": "RATE_LIMITED", "message": "slow down", "retryAfter": 250, "id": 7})
        );
        let read: ErrorPayload<'_, String> = serde_json::from_value(json).unwrap();
        assert_eq!(
            (read.code.as_str(), &*read.message, read.retry_after),
            ("RATE_LIMITED", "slow down", Some(250))
        );
        let newer: ErrorPayload<'_, String> =
            serde_json::from_value(json!({"code": "SOMETHING_NEW"})).unwrap();
        assert_eq!(
            (newer.code.as_str(), &*newer.message),
            ("SOMETHING_NEW", "")
        );
        let unmentioned = json!({"code": "FORBIDDEN", "message": "no"});
        let written = ErrorPayload {
            code: ErrorCode::Forbidden,
            message: "no".into(),
            retry_after: None,
            id: None,
        };
        assert_eq!(serde_json::to_value(&written).unwrap(), unmentioned);
    }
}
