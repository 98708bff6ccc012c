//! Encoding of server frames (DESIGN.md §2), once per message.
//!
//! A [`ServerFrame`] is the wire envelope: `type`, `payload`, and where they apply `room`,
//! `channel`, `userId`, `timestamp` and `id`. Its `type` is a [`ServerKind`] for the frames the
//! protocol defines, or an application's own string. [`ServerFrame::encode`] serializes it
//! straight into a complete WebSocket text frame; the resulting [`Bytes`] is what every
//! recipient's queue holds a reference to.

use bytes::{BufMut, Bytes};
use serde::Serialize;
use serde_json::value::RawValue;

use super::{ErrorCode, ErrorPayload, ServerKind};
use crate::ws::frame::{self, OpCode};

/// A server frame before encoding. Build it with [`ServerFrame::new`] (a kind the protocol
/// defines) or [`ServerFrame::custom`] (an application's type), then the setters.
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
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    payload: P,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RawValue>,
}

impl<'a, P: Serialize> ServerFrame<'a, P> {
    /// A frame of the protocol's kind `kind` with `payload` and no other fields.
    pub fn new(kind: ServerKind, payload: P) -> Self {
        Self::custom(kind.as_str(), payload)
    }

    /// A frame of an application-defined type (a custom handler's reply, the server API's
    /// `type`) with `payload` and no other fields. Whether `kind` may be used is the caller's
    /// check: see [`ServerKind::is_reserved`].
    pub fn custom(kind: &'a str, payload: P) -> Self {
        Self {
            kind,
            room: None,
            channel: None,
            user_id: None,
            timestamp: None,
            offset: None,
            payload,
            id: None,
        }
    }

    /// The frame's `type`.
    pub fn kind(&self) -> &str {
        self.kind
    }

    /// The same frame, borrowing its payload (to set more fields on a frame one was given by
    /// reference).
    pub fn by_ref(&self) -> ServerFrame<'a, &P> {
        ServerFrame {
            kind: self.kind,
            room: self.room,
            channel: self.channel,
            user_id: self.user_id,
            timestamp: self.timestamp,
            offset: self.offset,
            payload: &self.payload,
            id: self.id,
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

    /// Sets `offset`: the message's place in its room's or channel's stream.
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// Sets `id` (the client's id this frame answers), when there is one.
    pub fn reply_to(mut self, id: Option<&'a RawValue>) -> Self {
        self.id = id;
        self
    }

    /// The frame's JSON text (what [`ServerFrame::encode`] frames).
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|error| {
            tracing::error!(%error, kind = self.kind, "could not encode a server frame");
            String::new()
        })
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

/// Payload of `ack`.
#[derive(Debug, Serialize)]
pub struct AckPayload<'a> {
    /// The id of the processed client frame.
    pub id: &'a RawValue,
    /// For a `message` or `publish` kept in history: the offset it was given, so the sender
    /// (which does not receive its own room message) knows its place in the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
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
        message: message.into(),
        retry_after,
        id,
    };
    ServerFrame::new(ServerKind::Error, payload)
        .stamped()
        .reply_to(id)
        .encode()
}

/// An `ack` frame for the client frame with `id`, with the `offset` its message was given.
pub fn ack_frame(id: &RawValue, offset: Option<u64>) -> Bytes {
    ServerFrame::new(ServerKind::Ack, AckPayload { id, offset })
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
        let frame = ServerFrame::new(ServerKind::Message, &*payload)
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
    fn custom_frames_carry_the_applications_type() {
        let frame = ServerFrame::custom("game_state", serde_json::json!({"turn": 2})).encode();
        assert_eq!(
            json(&frame),
            serde_json::json!({"type":"game_state","payload":{"turn":2}})
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
        let frame = json(&ack_frame(&id, None));
        assert_eq!(
            frame,
            serde_json::json!({"type":"ack","payload":{"id":"req-1"},"id":"req-1"})
        );
    }
}
