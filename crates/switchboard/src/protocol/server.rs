//! Encoding of server frames (DESIGN.md §2), once per message.
//!
//! A [`ServerFrame`] is the wire envelope: `type`, `payload`, and where they apply `room`,
//! `channel`, `userId`, `timestamp` and `id`. [`ServerFrame::encode`] serializes it straight into
//! a complete WebSocket text frame; the resulting [`Bytes`] is what every recipient's queue
//! holds a reference to.

use bytes::{BufMut, Bytes};
use serde::Serialize;
use serde_json::value::RawValue;

use super::ErrorCode;
use crate::ids::{ConnId, UserId};
use crate::ws::frame::{self, OpCode};

/// A server frame before encoding. Build it with [`ServerFrame::new`] and the setters.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerFrame<'a, P> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<u64>,
    payload: P,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RawValue>,
}

impl<'a, P: Serialize> ServerFrame<'a, P> {
    /// A frame of type `kind` with `payload` and no other fields.
    pub fn new(kind: &'a str, payload: P) -> Self {
        Self {
            kind,
            room: None,
            channel: None,
            user_id: None,
            timestamp: None,
            payload,
            id: None,
        }
    }

    /// Sets `room`.
    pub fn room(mut self, room: &'a str) -> Self {
        self.room = Some(room);
        self
    }

    /// Sets `channel`.
    pub fn channel(mut self, channel: &'a str) -> Self {
        self.channel = Some(channel);
        self
    }

    /// Sets `userId` (the sender or the subject of the event).
    pub fn user(mut self, user: &'a str) -> Self {
        self.user_id = Some(user);
        self
    }

    /// Sets `timestamp` to now.
    pub fn stamped(mut self) -> Self {
        self.timestamp = Some(now_ms());
        self
    }

    /// Sets `timestamp` to `epoch_ms`.
    pub fn at(mut self, epoch_ms: u64) -> Self {
        self.timestamp = Some(epoch_ms);
        self
    }

    /// Sets `id` (the client's id this frame answers), when there is one.
    pub fn reply_to(mut self, id: Option<&'a RawValue>) -> Self {
        self.id = id;
        self
    }

    /// Encodes the frame as one complete WebSocket text frame.
    pub fn encode(&self) -> Bytes {
        let encoded = frame::build(OpCode::Text, 96, |buf| {
            serde_json::to_writer(buf.writer(), self)
        });
        encoded.unwrap_or_else(|error| {
            // Only a payload type with a failing `Serialize` impl can get here.
            tracing::error!(%error, kind = self.kind, "could not encode a server frame");
            error_frame(ErrorCode::Internal, "could not encode a server frame", None)
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Payload of `connect`, the first frame of every connection.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectPayload<'a> {
    /// This connection's id.
    pub connection_id: ConnId,
    /// The user the connection belongs to.
    pub user_id: &'a UserId,
    /// How often the server pings, in milliseconds.
    pub heartbeat_interval: u64,
    /// The node serving the connection.
    pub node: &'a str,
}

/// Payload of `error`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorPayload<'a> {
    /// What went wrong.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: &'a str,
    /// For `RATE_LIMITED`: milliseconds until a frame would be accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// The client's id, when the failed frame had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a RawValue>,
}

/// Payload of `ack`.
#[derive(Debug, Serialize)]
pub struct AckPayload<'a> {
    /// The id of the processed client frame.
    pub id: &'a RawValue,
}

/// An `error` frame.
pub fn error_frame(code: ErrorCode, message: &str, id: Option<&RawValue>) -> Bytes {
    error_frame_with_retry(code, message, id, None)
}

/// An `error` frame, with `retryAfter` when given.
pub fn error_frame_with_retry(
    code: ErrorCode,
    message: &str,
    id: Option<&RawValue>,
    retry_after: Option<u64>,
) -> Bytes {
    let payload = ErrorPayload {
        code,
        message,
        retry_after,
        id,
    };
    ServerFrame::new("error", payload)
        .stamped()
        .reply_to(id)
        .encode()
}

/// An `ack` frame for the client frame with `id`.
pub fn ack_frame(id: &RawValue) -> Bytes {
    ServerFrame::new("ack", AckPayload { id })
        .reply_to(Some(id))
        .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(frame: &Bytes) -> serde_json::Value {
        let header = if frame[1] & 0x7F == 126 { 4 } else { 2 };
        serde_json::from_slice(&frame[header..]).unwrap()
    }

    #[test]
    fn frames_are_camel_case_and_skip_absent_fields() {
        let payload = RawValue::from_string(r#"{"content":"Hello"}"#.to_owned()).unwrap();
        let frame = ServerFrame::new("message", &*payload)
            .room("general")
            .user("alice")
            .encode();
        assert_eq!(frame[0], 0x81);
        assert_eq!(
            json(&frame),
            serde_json::json!({"type":"message","room":"general","userId":"alice","payload":{"content":"Hello"}})
        );
    }

    #[test]
    fn errors_carry_code_retry_and_id() {
        let id = RawValue::from_string("7".to_owned()).unwrap();
        let frame = json(&error_frame_with_retry(
            ErrorCode::RateLimited,
            "slow down",
            Some(&id),
            Some(250),
        ));
        assert_eq!(frame["type"], "error");
        assert_eq!(frame["id"], 7);
        assert_eq!(frame["payload"]["code"], "RATE_LIMITED");
        assert_eq!(frame["payload"]["retryAfter"], 250);
        assert_eq!(frame["payload"]["id"], 7);
        assert!(frame["timestamp"].as_u64().unwrap() > 1_700_000_000_000);
    }

    #[test]
    fn acks_echo_the_id_verbatim() {
        let id = RawValue::from_string(r#""req-1""#.to_owned()).unwrap();
        let frame = json(&ack_frame(&id));
        assert_eq!(
            frame,
            serde_json::json!({"type":"ack","payload":{"id":"req-1"},"id":"req-1"})
        );
    }
}
