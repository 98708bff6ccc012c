//! The protocol state of one connection and what each client message does.
//!
//! A `Session` lives inside its connection's task; nothing else can reach it. It knows which
//! rooms the connection is in, which ids it has processed, and the user's rate limiter. It
//! never touches the socket: replies go through the connection's own outbox, so they are
//! written in order with everything else and count against the same byte limit.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use super::Mode;
use super::dedup::DedupWindow;
use crate::broker::Topic;
use crate::hub::{ConnHandle, Counters, Hub};
use crate::ids::{RoomId, UserId};
use crate::limits::RateLimiter;
use crate::protocol::{
    self, Command, ConnectPayload, ErrorCode, Inbound, ParseLimits, Rejection, ServerFrame,
};
use crate::ws::frame::{self, OpCode};

pub(crate) struct Session {
    hub: Hub,
    handle: ConnHandle,
    limiter: Option<Arc<RateLimiter>>,
    /// Rooms this connection is in (at most `max_rooms_per_connection`, so a scan is cheap).
    rooms: Vec<RoomId>,
    dedup: DedupWindow,
    mode: Mode,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Member<'a> {
    user_id: &'a UserId,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomJoinedPayload<'a> {
    room: &'a RoomId,
    members: Vec<Member<'a>>,
    member_count: usize,
}

#[derive(Serialize)]
struct RoomPayload<'a> {
    room: &'a RoomId,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MemberEvent<'a> {
    user_id: &'a UserId,
    room: &'a RoomId,
}

impl Session {
    /// Starts the session of a registered connection: sends `connect` (protocol mode).
    pub(crate) fn start(
        hub: Hub,
        handle: ConnHandle,
        limiter: Option<Arc<RateLimiter>>,
        mode: Mode,
    ) -> Self {
        let session = Self {
            hub,
            handle,
            limiter,
            rooms: Vec::new(),
            dedup: DedupWindow::default(),
            mode,
        };
        if mode == Mode::Echo {
            return session;
        }
        let config = session.hub.config();
        let payload = ConnectPayload {
            connection_id: session.handle.id(),
            user_id: session.handle.user(),
            heartbeat_interval: config.heartbeat.interval.as_millis() as u64,
            node: session.hub.node_id().as_str(),
        };
        session.reply(ServerFrame::new("connect", payload).stamped().encode());
        session
    }

    pub(crate) fn handle(&self) -> &ConnHandle {
        &self.handle
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Handles one text message.
    pub(crate) fn on_text(&mut self, text: &str) {
        let counters = self.hub.counters();
        Counters::add(&counters.messages_in, 1);
        Counters::add(&counters.bytes_in, text.len() as u64);
        if self.mode == Mode::Echo {
            self.reply(frame::frame(OpCode::Text, text.as_bytes()));
            return;
        }
        let limits = &self.hub.config().limits;
        let parse_limits = ParseLimits {
            max_name_chars: limits.max_name_length,
            max_content_chars: limits.max_content_length,
        };
        let parsed = protocol::parse(text, &parse_limits);
        let id = match &parsed {
            Ok(inbound) => inbound.id,
            Err(rejection) => rejection.id,
        };
        let answers_server = matches!(
            parsed,
            Ok(Inbound {
                command: Command::Pong,
                ..
            })
        );
        if !answers_server && !self.take_token(id) {
            return;
        }
        match parsed {
            Ok(inbound) => self.on_inbound(inbound),
            Err(rejection) => self.reject(&rejection),
        }
    }

    /// Handles one binary message: the protocol is JSON text only.
    pub(crate) fn on_binary(&mut self, data: &[u8]) {
        Counters::add(&self.hub.counters().messages_in, 1);
        if self.mode == Mode::Echo {
            self.reply(frame::frame(OpCode::Binary, data));
            return;
        }
        if self.take_token(None) {
            self.error(
                ErrorCode::InvalidMessage,
                "binary frames are not supported; send JSON text frames",
                None,
            );
        }
    }

    /// Takes a rate-limit token, answering `RATE_LIMITED` when there is none.
    fn take_token(&mut self, id: Option<&RawValue>) -> bool {
        let Some(limiter) = &self.limiter else {
            return true;
        };
        match limiter.try_take(self.hub.now_ms()) {
            Ok(()) => true,
            Err(retry_after) => {
                Counters::add(&self.hub.counters().rate_limited, 1);
                self.send_error(protocol::error_frame_with_retry(
                    ErrorCode::RateLimited,
                    "rate limit exceeded",
                    id,
                    Some(retry_after),
                ));
                false
            }
        }
    }

    fn on_inbound(&mut self, Inbound { id, command }: Inbound<'_>) {
        let now = self.hub.now_ms();
        let window = self.hub.config().dedup_window.as_millis() as u64;
        if let Some(id) = id {
            if self.dedup.contains(id, now, window) {
                self.reply(protocol::ack_frame(id));
                return;
            }
        }
        if let Err((code, message)) = self.execute(command, id) {
            self.error(code, &message, id);
            return;
        }
        if let Some(id) = id {
            self.dedup.insert(id, now);
            self.reply(protocol::ack_frame(id));
        }
    }

    fn execute(
        &mut self,
        command: Command<'_>,
        id: Option<&RawValue>,
    ) -> Result<(), (ErrorCode, String)> {
        match command {
            Command::JoinRoom { room } => self.join(room, id),
            Command::LeaveRoom { room } => self.leave(&room, id),
            Command::Message { room, payload } => {
                if !self.rooms.contains(&room) {
                    return Err(not_in_room(&room));
                }
                let frame = ServerFrame::new("message", &*payload)
                    .room(room.as_str())
                    .user(self.handle.user().as_str())
                    .stamped()
                    .encode();
                self.hub
                    .publish(Topic::Room(room), frame, Some(self.handle.id()));
                Ok(())
            }
            Command::Broadcast { payload } => {
                let frame = ServerFrame::new("broadcast", payload)
                    .user(self.handle.user().as_str())
                    .stamped()
                    .encode();
                self.hub.publish(Topic::Broadcast, frame, None);
                Ok(())
            }
            Command::Ping { payload } => {
                let payload = payload.map_or("{}", RawValue::get);
                let payload = RawValue::from_string(payload.to_owned())
                    .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
                self.reply(ServerFrame::new("pong", &*payload).reply_to(id).encode());
                Ok(())
            }
            Command::Pong => Ok(()),
            Command::Other { kind, .. } => Err((
                ErrorCode::UnknownType,
                format!("unknown message type {kind:?}"),
            )),
        }
    }

    fn join(&mut self, room: RoomId, id: Option<&RawValue>) -> Result<(), (ErrorCode, String)> {
        let max = self.hub.config().limits.max_rooms_per_connection;
        if !self.rooms.contains(&room) && self.rooms.len() >= max {
            return Err((
                ErrorCode::LimitExceeded,
                format!("a connection may be in at most {max} rooms"),
            ));
        }
        let joined = self.hub.join_room(&room, &self.handle);
        let payload = RoomJoinedPayload {
            room: &room,
            members: joined
                .members
                .iter()
                .map(|user_id| Member { user_id })
                .collect(),
            member_count: joined.member_count,
        };
        self.reply(
            ServerFrame::new("room_joined", payload)
                .room(room.as_str())
                .stamped()
                .reply_to(id)
                .encode(),
        );
        if joined.new {
            tracing::debug!(conn = %self.handle.id(), user = %self.handle.user(), %room, "join");
            self.rooms.push(room.clone());
        }
        if joined.first_of_user {
            self.announce("user_joined", room);
        }
        Ok(())
    }

    fn leave(&mut self, room: &RoomId, id: Option<&RawValue>) -> Result<(), (ErrorCode, String)> {
        let Some(index) = self.rooms.iter().position(|r| r == room) else {
            return Err(not_in_room(room));
        };
        self.rooms.swap_remove(index);
        self.leave_hub_room(room.clone());
        self.reply(
            ServerFrame::new("room_left", RoomPayload { room })
                .room(room.as_str())
                .stamped()
                .reply_to(id)
                .encode(),
        );
        Ok(())
    }

    /// Leaves `room` in the hub and tells the others if the user is gone from it.
    fn leave_hub_room(&self, room: RoomId) {
        tracing::debug!(conn = %self.handle.id(), user = %self.handle.user(), %room, "leave");
        let left = self.hub.leave_room(&room, &self.handle);
        if left == (crate::hub::Left::Left { last_of_user: true }) {
            self.announce("user_left", room);
        }
    }

    /// Tells the other members of `room` that this user joined or left it.
    fn announce(&self, kind: &str, room: RoomId) {
        let user = self.handle.user();
        let frame = ServerFrame::new(
            kind,
            MemberEvent {
                user_id: user,
                room: &room,
            },
        )
        .room(room.as_str())
        .user(user.as_str())
        .stamped()
        .encode();
        self.hub
            .publish(Topic::Room(room), frame, Some(self.handle.id()));
    }

    /// Ends the session: leaves every room (announcing it) and unregisters the connection.
    pub(crate) fn finish(mut self) {
        for room in std::mem::take(&mut self.rooms) {
            self.leave_hub_room(room);
        }
        self.hub.unregister(&self.handle);
    }

    fn reject(&self, rejection: &Rejection<'_>) {
        self.error(rejection.code, &rejection.message, rejection.id);
    }

    fn error(&self, code: ErrorCode, message: &str, id: Option<&RawValue>) {
        self.send_error(protocol::error_frame(code, message, id));
    }

    fn send_error(&self, frame: Bytes) {
        Counters::add(&self.hub.counters().errors_sent, 1);
        self.reply(frame);
    }

    /// Queues a frame for this connection only.
    pub(crate) fn reply(&self, frame: Bytes) {
        if self.hub.deliver(&self.handle, &frame) {
            Counters::add(&self.hub.counters().messages_out, 1);
        }
    }
}

fn not_in_room(room: &RoomId) -> (ErrorCode, String) {
    (
        ErrorCode::NotInRoom,
        format!("not a member of room {:?}", room.as_str()),
    )
}
