//! Application hooks: handlers for custom message types (`on_message("typing", …)`) and
//! connect/disconnect hooks, registered on [`crate::switchboard::Builder`].
//!
//! Handlers run on the connection's task, in order with the connection's other messages, after
//! validation and rate limiting. They are synchronous and must not block; for slow work clone
//! [`MessageContext::hub`] and the connection id into a spawned task and answer later with
//! [`Hub::send_to_connection`].

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::broker::Topic;
use crate::hub::{ConnHandle, ConnInfo, Hub};
use crate::ids::{ConnId, RoomId, UserId};
use crate::protocol::{ErrorCode, ServerFrame};

/// Handles one custom message type. Returning `Err` sends the client an `error` frame.
pub type MessageHandler =
    Arc<dyn Fn(&MessageContext<'_>, &Value) -> Result<(), Reject> + Send + Sync>;

/// Observes connections opening or closing.
pub type ConnectionHook = Arc<dyn Fn(&ConnInfo) + Send + Sync>;

/// Everything the application registered; the connections of an instance share it.
#[derive(Default)]
pub(crate) struct Extensions {
    pub(crate) messages: HashMap<String, MessageHandler>,
    pub(crate) on_connect: Vec<ConnectionHook>,
    pub(crate) on_disconnect: Vec<ConnectionHook>,
}

/// A handler's refusal: the client gets an `error` frame with this code and message (and its
/// `id`, if the frame had one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    code: ErrorCode,
    message: String,
}

impl Reject {
    /// A refusal with `code` and a human-readable `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// What a custom message handler knows about the message's connection, and how it answers.
pub struct MessageContext<'a> {
    pub(crate) hub: &'a Hub,
    pub(crate) conn: &'a ConnHandle,
    pub(crate) rooms: &'a [RoomId],
    pub(crate) id: Option<&'a RawValue>,
    pub(crate) kind: &'a str,
}

impl MessageContext<'_> {
    /// The connection that sent the message.
    pub fn connection_id(&self) -> ConnId {
        self.conn.id()
    }

    /// The sending user.
    pub fn user_id(&self) -> &UserId {
        self.conn.user()
    }

    /// The message's type.
    pub fn message_type(&self) -> &str {
        self.kind
    }

    /// The rooms the connection is in.
    pub fn rooms(&self) -> &[RoomId] {
        self.rooms
    }

    /// Whether the connection is in `room`.
    pub fn in_room(&self, room: &RoomId) -> bool {
        self.rooms.contains(room)
    }

    /// The hub, for anything else (other rooms, users, pub/sub, presence).
    pub fn hub(&self) -> &Hub {
        self.hub
    }

    /// Sends `{type: kind, payload}` to this connection, carrying the message's `id`.
    pub fn reply<P: Serialize>(&self, kind: &str, payload: &P) {
        let frame = ServerFrame::custom(kind, payload)
            .stamped()
            .reply_to(self.id)
            .encode();
        self.hub.deliver_counted(self.conn, &frame);
    }

    /// Sends `{type: kind, room, userId: sender, payload}` to the other members of `room` on
    /// every node; of kind `message`, it is a room message with an offset, kept in history.
    /// Returns the local recipients.
    pub fn send_to_room<P: Serialize>(&self, room: &RoomId, kind: &str, payload: &P) -> usize {
        let frame = ServerFrame::custom(kind, payload)
            .room(room.as_str())
            .user(self.user_id().as_str())
            .stamped();
        self.hub.send_to_room(room, &frame, Some(self.conn.id()))
    }

    /// Sends `{type: kind, userId: sender, payload}` to every connection on every node, this
    /// one included. Returns the local recipients.
    pub fn broadcast<P: Serialize>(&self, kind: &str, payload: &P) -> usize {
        let frame = ServerFrame::custom(kind, payload)
            .user(self.user_id().as_str())
            .stamped()
            .encode();
        self.hub.publish(Topic::Broadcast, frame, None)
    }
}
