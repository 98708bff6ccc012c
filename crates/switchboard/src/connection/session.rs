//! The protocol state of one connection and what each client message does.
//!
//! A `Session` lives inside its connection's task; nothing else can reach it. It knows which
//! rooms and channels the connection is in and which ids it has processed; the user's rate
//! limiter and presence are shared with the user's other connections through `UserState`.
//! It never touches the socket: replies go through the connection's own outbox, so they are
//! written in order with everything else and count against the same byte limit. This file
//! takes a frame from the socket to a decoded command and its acknowledgement; what the
//! commands do lives in sibling files: the plain ones (`session_commands.rs`), streams
//! (`session_streams.rs`), documents (`session_document.rs`), token refresh
//! (`session_tokens.rs`) and backend proxy calls (`session_calls.rs`).

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use super::dedup::{AckOffset, DedupWindow};
use super::refused::Refused;
use super::{Endpoint, Mode};
use crate::auth::Grants;
use crate::hub::{CloseRequest, ConnHandle, Counters, Hub, InKind, LaterOffset, Offset, Wire};
use crate::ids::{ChannelSpec, RoomId};
use crate::limits::Violations;
use crate::protocol::{
    self, CloseCode, Command, Connect, ConnectPayload, ErrorCode, Inbound, Rejection, ServerFrame,
    ServerKind,
};
use crate::ws::frame::{self, OpCode};
use calls::Call;
use document::DocClient;

pub(crate) struct Session {
    /// The hub and the application's handlers (one pointer in every connection's task).
    endpoint: Arc<Endpoint>,
    handle: ConnHandle,
    /// Rooms this connection is in (at most `max_rooms_per_connection`, so a scan is cheap),
    /// at exact size (`crate::exact`).
    rooms: Box<[RoomId]>,
    /// Channels and patterns this connection subscribes to (at most
    /// `max_channels_per_connection`), at exact size.
    channels: Box<[ChannelSpec]>,
    /// What only some sessions need; `None` until one of its parts is.
    rare: Option<Box<Rare>>,
}

/// The parts of a session that an idle protocol connection without a token does not need,
/// in one box: one word in every connection's task, which keeps the task in its allocator
/// size class (`the_connection_task_stays_small`). It is allocated when the first part is:
/// the token's grants (authentication on), a document or echo connection, a frame with an
/// `id`, a bad frame, a call to the backend.
#[derive(Default)]
struct Rare {
    /// What the session speaks; protocol v1 when there is no `Rare`.
    kind: Kind,
    /// What the token allows; `None` when authentication is off.
    grants: Option<Grants>,
    dedup: DedupWindow,
    /// Bad frames in the current window; too many close the connection.
    violations: Violations,
    /// The open document of a document connection, or the request to the backend that a
    /// protocol connection has out (`session_calls.rs`); `None` otherwise. Boxed: with
    /// authentication on every connection has a `Rare`, few have one of these.
    aside: Option<Box<Aside>>,
}

/// What a session may hold besides its protocol state: a connection needs one or the other,
/// never both, so one pointer holds either.
enum Aside {
    /// A document connection's document (none when it could not be opened: the connection
    /// is then closing).
    Document(DocClient),
    /// A request to the backend, out on behalf of one client frame.
    Call(Call),
}

impl Session {
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_default()
    }

    /// What the session speaks.
    fn mode(&self) -> Kind {
        self.rare.as_ref().map_or(Kind::Protocol, |rare| rare.kind)
    }

    /// What the token allows; `None` when authentication is off.
    fn grants(&self) -> Option<&Grants> {
        self.rare.as_ref()?.grants.as_ref()
    }

    fn aside(&self) -> Option<&Aside> {
        self.rare.as_ref()?.aside.as_deref()
    }

    fn set_aside(&mut self, aside: Aside) {
        self.rare().aside = Some(Box::new(aside));
    }

    fn document(&self) -> Option<&DocClient> {
        match self.aside() {
            Some(Aside::Document(client)) => Some(client),
            _ => None,
        }
    }

    fn document_mut(&mut self) -> Option<&mut DocClient> {
        match self.rare.as_mut()?.aside.as_deref_mut() {
            Some(Aside::Document(client)) => Some(client),
            _ => None,
        }
    }

    fn call_mut(&mut self) -> Option<&mut Call> {
        match self.rare.as_mut()?.aside.as_deref_mut() {
            Some(Aside::Call(call)) => Some(call),
            _ => None,
        }
    }

    /// Takes what is aside when `wanted` says it is the kind asked for.
    fn take_aside(&mut self, wanted: impl FnOnce(&Aside) -> bool) -> Option<Aside> {
        if self.aside().is_some_and(wanted) {
            self.rare.as_mut()?.aside.take().map(|aside| *aside)
        } else {
            None
        }
    }
}

/// What a session speaks ([`Mode`] without the document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Kind {
    #[default]
    Protocol,
    Echo,
    Document,
}

/// How a processed command is acknowledged (when it carried an `id`).
enum Done {
    /// Now, with the offset its message was given, if any.
    Ack(Option<u64>),
    /// Later, by the hub, once the cluster's store has answered (with the offset it gives,
    /// for a stream message).
    AckedLater(Option<LaterOffset>),
}

impl Done {
    fn of(offset: Offset) -> Self {
        match offset {
            Offset::None => Self::Ack(None),
            Offset::Given(offset) => Self::Ack(Some(offset)),
            Offset::Later(later) => Self::AckedLater(Some(later)),
        }
    }
}

/// How a connection that keeps sending bad frames is closed.
const TOO_MANY_VIOLATIONS: CloseRequest = CloseRequest {
    code: CloseCode::Policy,
    reason: std::borrow::Cow::Borrowed("too many invalid messages"),
    graceful: true,
};

/// `{}`: the `pong` payload answering a `ping` that carried none.
#[derive(Serialize)]
struct EmptyPayload {}

#[derive(Serialize)]
struct RoomPayload<'a> {
    room: &'a RoomId,
}

/// Payload of `unsubscribed`.
#[derive(Serialize)]
struct ChannelPayload<'a> {
    channel: &'a ChannelSpec,
}

impl Session {
    /// Starts the session of a registered connection: runs the application's connect hooks,
    /// then sends `connect` (protocol mode), or opens the document (document mode).
    pub(crate) fn start(
        endpoint: Arc<Endpoint>,
        handle: ConnHandle,
        mode: Mode,
        grants: Option<Box<Grants>>,
    ) -> Self {
        let (kind, access) = match mode {
            Mode::Protocol => (Kind::Protocol, None),
            Mode::Echo => (Kind::Echo, None),
            Mode::Document(access) => (Kind::Document, Some(access)),
        };
        let mut session = Self::connected(endpoint, handle, kind, grants);
        if let Some(access) = access {
            session.open_document(access);
            return session;
        }
        if kind == Kind::Echo {
            return session;
        }
        session.send_connect(None);
        session
    }

    /// Starts the session of a registered SSE connection (protocol v1): as [`Session::start`],
    /// with `secret` added to the `connect` payload as `session`, the secret its client's
    /// POSTs prove themselves with.
    pub(crate) fn start_sse(
        endpoint: Arc<Endpoint>,
        handle: ConnHandle,
        grants: Option<Box<Grants>>,
        secret: &str,
    ) -> Self {
        let session = Self::connected(endpoint, handle, Kind::Protocol, grants);
        session.send_connect(Some(secret));
        session
    }

    /// A new session, after the application's connect hooks ran; nothing sent yet.
    fn connected(
        endpoint: Arc<Endpoint>,
        handle: ConnHandle,
        kind: Kind,
        grants: Option<Box<Grants>>,
    ) -> Self {
        tracing::debug!(conn = %handle.id(), user = %handle.user(), "connected");
        let now = endpoint.hub.now_ms();
        for hook in &endpoint.extensions.on_connect {
            hook(&handle.info(now));
        }
        let rare = (kind != Kind::Protocol || grants.is_some()).then(|| {
            Box::new(Rare {
                kind,
                grants: grants.map(|grants| *grants),
                ..Rare::default()
            })
        });
        Self {
            endpoint,
            handle,
            rooms: Box::default(),
            channels: Box::default(),
            rare,
        }
    }

    /// Sends `connect`, with the SSE session secret when there is one.
    fn send_connect(&self, secret: Option<&str>) {
        /// `connect`'s payload on an SSE connection.
        #[derive(Serialize)]
        struct WithSecret<'a, P> {
            #[serde(flatten)]
            connect: P,
            session: &'a str,
        }
        let hub = self.hub();
        let heartbeat_ms = hub.config().heartbeat.interval.as_millis() as u64;
        let frame = match secret {
            // Every WebSocket handshake's frame: written by hand (`protocol::Connect`).
            None => Connect {
                connection: self.handle.id(),
                user: self.handle.user().as_str(),
                heartbeat_ms,
                node: hub.node_id().as_str(),
                timestamp: protocol::now_ms(),
            }
            .encode(),
            Some(session) => ServerFrame::new(
                ServerKind::Connect,
                WithSecret {
                    connect: ConnectPayload::new(
                        self.handle.id(),
                        self.handle.user().as_str(),
                        heartbeat_ms,
                        hub.node_id().as_str(),
                    ),
                    session,
                },
            )
            .stamped()
            .encode(),
        };
        self.reply(frame);
    }

    pub(crate) fn handle(&self) -> &ConnHandle {
        &self.handle
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.endpoint.hub
    }

    /// Handles one text message.
    pub(crate) fn on_text(&mut self, text: &str) {
        if self.closing() {
            return;
        }
        let counters = self.hub().counters();
        Counters::add(&counters.bytes_in, text.len() as u64);
        if self.mode() == Kind::Document {
            self.on_document_text();
            return;
        }
        if self.mode() == Kind::Echo {
            counters.count_in(InKind::Echo);
            self.reply(frame::frame(OpCode::Text, text.as_bytes()));
            return;
        }
        if self.handle.wire() == Wire::MsgPack {
            self.wrong_encoding("text frames are not supported on subprotocol switchboard.v1.msgpack; send MessagePack binary frames");
            return;
        }
        self.on_protocol_text(text);
    }

    /// Handles one protocol v1 frame in its JSON text form (as sent, or transcoded from
    /// MessagePack).
    fn on_protocol_text(&mut self, text: &str) {
        let counters = self.hub().counters();
        let parsed = protocol::parse(text, &super::parse_limits(self.hub()));
        let (id, kind) = match &parsed {
            Ok(inbound) => (inbound.id, InKind::of(&inbound.command)),
            Err(rejection) => (rejection.id, InKind::Invalid),
        };
        counters.count_in(kind);
        // Heartbeats are not the user's activity: a `pong` answers the server (no rate token),
        // and a client's own `ping` (every SDK sends them) must not keep its user from `away`.
        let (answers_server, heartbeat) = match &parsed {
            Ok(Inbound {
                command: Command::Pong,
                ..
            }) => (true, true),
            Ok(Inbound {
                command: Command::Ping { .. },
                ..
            }) => (false, true),
            _ => (false, false),
        };
        if !answers_server && !self.take_token(id) {
            return;
        }
        if !heartbeat {
            self.hub()
                .user_active(self.handle.user(), self.handle.user_state());
        }
        match parsed {
            Ok(inbound) => self.on_inbound(inbound),
            Err(rejection) => self.reject(&rejection),
        }
    }

    /// Handles one binary message: a MessagePack frame on a `switchboard.v1.msgpack`
    /// connection, which is transcoded and handled as its JSON text would be; an error on a
    /// JSON one.
    pub(crate) fn on_binary(&mut self, data: &[u8]) {
        if self.closing() {
            return;
        }
        match self.mode() {
            Kind::Echo => {
                self.hub().counters().count_in(InKind::Echo);
                self.reply(frame::frame(OpCode::Binary, data));
                return;
            }
            Kind::Document => {
                self.on_document_message(data);
                return;
            }
            Kind::Protocol => {}
        }
        if self.handle.wire() != Wire::MsgPack {
            self.wrong_encoding("binary frames are not supported; send JSON text frames");
            return;
        }
        Counters::add(&self.hub().counters().bytes_in, data.len() as u64);
        match switchboard_protocol::msgpack::to_json(data) {
            Ok(text) => self.on_protocol_text(&text),
            Err(error) => {
                // As malformed JSON is answered: counted, rate-limited, INVALID_JSON.
                self.hub().counters().count_in(InKind::Invalid);
                if self.take_token(None) {
                    self.error(ErrorCode::InvalidJson, &error.to_string(), None);
                }
            }
        }
    }

    /// Answers a data frame of the encoding the connection did not choose.
    fn wrong_encoding(&mut self, message: &str) {
        self.hub().counters().count_in(InKind::Invalid);
        if self.take_token(None) {
            self.error(ErrorCode::InvalidMessage, message, None);
        }
    }

    /// Handles a WebSocket ping: answered with a pong when the user's rate limiter has a token
    /// for it, like any other frame, so a ping flood cannot make the server write without
    /// limit. A ping without a token is not answered and counts as a violation (enough of them
    /// close the connection with 1008, as for other bad frames), but gets no `error` frame: a
    /// ping is a control frame, and its sender may not read text frames at all, which is what
    /// the limit protects against. A document connection's pings take its document rate
    /// tokens. In echo mode (`/echo`, conformance testing) nothing is limited.
    pub(crate) fn on_ping(&mut self, payload: &[u8]) {
        if self.closing() {
            return;
        }
        let limited = match self.mode() {
            Kind::Protocol => self.try_token().is_err(),
            Kind::Document => !self.take_document_token(),
            Kind::Echo => false,
        };
        if limited {
            if self.mode() == Kind::Protocol {
                self.violation();
            }
            return;
        }
        self.reply(frame::frame(OpCode::Pong, payload));
    }

    /// Whether a close was requested: what the client sends after it is read (to reach its
    /// close frame) but not acted on.
    fn closing(&self) -> bool {
        self.handle.closing_since().is_some()
    }

    /// Takes a rate-limit token, answering `RATE_LIMITED` when there is none.
    fn take_token(&mut self, id: Option<&RawValue>) -> bool {
        let Err(retry_after) = self.try_token() else {
            return true;
        };
        self.send_error(
            ErrorCode::RateLimited,
            protocol::error_frame_with_retry(
                ErrorCode::RateLimited,
                "rate limit exceeded",
                id,
                Some(retry_after),
            ),
        );
        false
    }

    /// Takes a token from the user's rate limiter (shared by the user's connections on this
    /// node), or says in how many milliseconds one will be available and counts the refusal.
    fn try_token(&self) -> Result<(), u64> {
        let Some(limiter) = &self.handle.user_state().limiter else {
            return Ok(());
        };
        let taken = limiter.try_take(self.hub().now_ms());
        if taken.is_err() {
            Counters::add(&self.hub().counters().rate_limited, 1);
        }
        taken
    }

    fn on_inbound(&mut self, Inbound { id, command }: Inbound<'_>) {
        let now = self.hub().now_ms();
        let window = self.hub().config().dedup_window.as_millis() as u64;
        if let Some(id) = id
            && let Some(rare) = &mut self.rare
            && let Some(offset) = rare.dedup.acked(id, now, window)
        {
            self.reply(protocol::ack_frame(id, offset));
            return;
        }
        let command = match self.ask_backend(command, id) {
            Ok(Some(command)) => command,
            // The backend's answer completes it.
            Ok(None) => return,
            Err(refused) => {
                self.error(refused.code(), &refused.to_string(), id);
                return;
            }
        };
        let result = self.execute(command, id);
        self.complete(id, result);
    }

    /// Answers a processed command: its refusal, or its acknowledgement (when it carried an
    /// `id`, which is then remembered for deduplication).
    fn complete(&mut self, id: Option<&RawValue>, result: Result<Done, Refused>) {
        let done = match result {
            Ok(done) => done,
            Err(refused) => {
                self.error(refused.code(), &refused.to_string(), id);
                return;
            }
        };
        if let Some(id) = id {
            let offset = match done {
                Done::Ack(offset) => {
                    self.reply(protocol::ack_frame(id, offset));
                    AckOffset::Now(offset)
                }
                Done::AckedLater(later) => later.map_or(AckOffset::Now(None), AckOffset::Later),
            };
            let now = self.hub().now_ms();
            self.rare().dedup.insert(id, now, offset);
        }
    }

    /// Ends the session: the hub unsubscribes every channel, unregisters the connection (the
    /// user goes offline if it was their last) and leaves every room (announcing it); then the
    /// application's disconnect hooks run.
    pub(crate) fn finish(&mut self) {
        tracing::debug!(conn = %self.handle.id(), user = %self.handle.user(), "disconnected");
        self.close_document();
        let rooms = std::mem::take(&mut self.rooms);
        let channels = std::mem::take(&mut self.channels);
        self.hub()
            .disconnect(&self.handle, rooms.into_vec(), channels.into_vec());
        let now = self.hub().now_ms();
        for hook in &self.endpoint.extensions.on_disconnect {
            hook(&self.handle.info(now));
        }
    }

    fn reject(&mut self, rejection: &Rejection<'_>) {
        self.error(rejection.code, &rejection.message, rejection.id);
    }

    fn error(&mut self, code: ErrorCode, message: &str, id: Option<&RawValue>) {
        self.send_error(code, protocol::error_frame(code, message, id));
    }

    /// Sends an `error` frame answering a client frame. Every one but `INTERNAL` (a server
    /// fault) counts as a violation; the one that reaches the limit closes the connection with
    /// 1008, after the error itself.
    fn send_error(&mut self, code: ErrorCode, frame: Bytes) {
        self.hub().counters().count_error(code);
        self.reply(frame);
        if code != ErrorCode::Internal {
            self.violation();
        }
    }

    /// Counts one bad frame; the one that reaches the repeated-violation limit closes the
    /// connection with 1008 (after anything already queued for it).
    fn violation(&mut self) {
        let Some(limit) = self.hub().config().limits.violations else {
            return;
        };
        let now = self.hub().now_ms();
        if self.rare().violations.record(limit, now) {
            tracing::debug!(conn = %self.handle.id(), user = %self.handle.user(), "too many violations");
            self.handle.close(TOO_MANY_VIOLATIONS, now);
        }
    }

    /// Replies `{type: kind, payload}` carrying the client's `id`.
    fn reply_with<P: Serialize>(&self, id: Option<&RawValue>, kind: ServerKind, payload: &P) {
        self.reply(
            ServerFrame::new(kind, payload)
                .stamped()
                .reply_to(id)
                .encode(),
        );
    }

    /// Queues a frame for this connection only.
    pub(crate) fn reply(&self, frame: Bytes) {
        self.hub().deliver_counted(&self.handle, &frame);
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

#[path = "session_streams.rs"]
mod streams;

#[path = "session_document.rs"]
mod document;

#[path = "session_tokens.rs"]
mod tokens;

#[path = "session_calls.rs"]
mod calls;

#[path = "session_commands.rs"]
mod commands;
