//! Counters and the `/stats` snapshot. Counters are relaxed atomics bumped once per event or
//! once per fan-out (never once per recipient); rates are sampled once a second by the
//! maintenance task. `/metrics` reads the same counters at scrape time (see
//! [`EXPORTED_COUNTERS`]), so nothing is counted twice.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::latency::FanoutLatency;
use crate::broker::BrokerStatus;
use crate::ids::RoomId;
use crate::protocol::{CloseCode, Command, ErrorCode};

/// Event counters of one node.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Client messages received, by [`InKind`].
    messages_in: [AtomicU64; InKind::ALL.len()],
    /// Frames queued to connections, by [`Target`].
    messages_out: [AtomicU64; Target::ALL.len()],
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) connections_opened: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) slow_consumers: AtomicU64,
    /// Connections refused while over `--max-memory`.
    pub(crate) memory_refused: AtomicU64,
    /// Connections closed to free their queues while over `--max-memory`.
    pub(crate) memory_shed: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    /// `error` frames sent, by code (index: [`error_index`]).
    errors_sent: [AtomicU64; ERROR_CODES.len()],
    /// Close frames that ended connections, by [`Initiator`] and code (index: [`close_index`]).
    closes: [[AtomicU64; CloseCode::ALL.len() + 1]; 2],
    pub(crate) heartbeat_timeouts: AtomicU64,
    pub(crate) idle_timeouts: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) document_updates: AtomicU64,
    pub(crate) webhook_events_sent: AtomicU64,
    pub(crate) webhook_events_dropped: AtomicU64,
    pub(crate) webhook_events_failed: AtomicU64,
    pub(crate) webhook_requests_failed: AtomicU64,
    /// Requests to the backend proxies.
    pub(crate) proxy: super::proxy_counts::ProxyCounters,
    /// SSE connections opened (also in `connections_opened`).
    pub(crate) sse_connections_opened: AtomicU64,
    /// POSTs to `/sse/{connectionId}` refused (404, 403, 400, 413, 415).
    pub(crate) sse_posts_refused: AtomicU64,
    pub(crate) fanout_latency: FanoutLatency,
}

/// A plain event counter as `/metrics` exposes it.
pub(crate) struct ExportedCounter {
    /// The metric name after the `switchboard_` prefix.
    pub(crate) name: &'static str,
    /// The metric's help text.
    pub(crate) help: &'static str,
    /// The counter.
    pub(crate) counter: fn(&Counters) -> &AtomicU64,
}

/// Every plain counter `/metrics` exposes: exposing a new counter is one line here (kept one
/// line each, as a table, by `rustfmt::skip`).
#[rustfmt::skip]
pub(crate) const EXPORTED_COUNTERS: &[ExportedCounter] = &[
    ExportedCounter { name: "messages_in_bytes_total", help: "Payload bytes received in client text messages.", counter: |c| &c.bytes_in },
    ExportedCounter { name: "messages_out_bytes_total", help: "Bytes of frames queued to connections.", counter: |c| &c.bytes_out },
    ExportedCounter { name: "connections_opened_total", help: "WebSocket connections accepted.", counter: |c| &c.connections_opened },
    ExportedCounter { name: "connections_refused_total", help: "WebSocket connections refused at capacity.", counter: |c| &c.connections_refused },
    ExportedCounter { name: "slow_consumers_dropped_total", help: "Connections dropped because their outbound queue overflowed.", counter: |c| &c.slow_consumers },
    ExportedCounter { name: "memory_refused_connections_total", help: "WebSocket connections refused (1013) while resident memory was over max_memory (also in connections_refused_total).", counter: |c| &c.memory_refused },
    ExportedCounter { name: "memory_shed_connections_total", help: "Connections closed (1013) to free the largest outbound queues while resident memory was over max_memory.", counter: |c| &c.memory_shed },
    ExportedCounter { name: "rate_limited_total", help: "Client frames refused by the rate limiter.", counter: |c| &c.rate_limited },
    ExportedCounter { name: "heartbeat_timeouts_total", help: "Connections closed for missing heartbeats.", counter: |c| &c.heartbeat_timeouts },
    ExportedCounter { name: "idle_timeouts_total", help: "Connections closed for inactivity.", counter: |c| &c.idle_timeouts },
    ExportedCounter { name: "document_updates_total", help: "Yjs updates applied to documents.", counter: |c| &c.document_updates },
    ExportedCounter { name: "webhook_events_sent_total", help: "Webhook events the backend accepted (2xx).", counter: |c| &c.webhook_events_sent },
    ExportedCounter { name: "webhook_events_dropped_total", help: "Webhook events dropped, oldest first, because the queue was full.", counter: |c| &c.webhook_events_dropped },
    ExportedCounter { name: "webhook_events_failed_total", help: "Webhook events given up after every retry failed.", counter: |c| &c.webhook_events_failed },
    ExportedCounter { name: "webhook_requests_failed_total", help: "Webhook requests that failed (each retry counts).", counter: |c| &c.webhook_requests_failed },
    ExportedCounter { name: "sse_connections_opened_total", help: "SSE connections accepted (also counted in connections_opened_total).", counter: |c| &c.sse_connections_opened },
    ExportedCounter { name: "sse_posts_refused_total", help: "POSTs of client frames to SSE connections refused (unknown connection, wrong session, bad or oversize body; relayed ones refused by the holder).", counter: |c| &c.sse_posts_refused },
    ExportedCounter { name: "auth_failures_total", help: "Refused tokens: at the upgrade (401), in auth frames, or missed auth deadlines.", counter: |c| &c.auth_failures },
];

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts one client message of `kind`.
    pub(crate) fn count_in(&self, kind: InKind) {
        Self::add(&self.messages_in[kind as usize], 1);
    }

    /// Counts `n` frames queued to connections by one send to `target`.
    pub(crate) fn count_out(&self, target: Target, n: usize) {
        if n > 0 {
            Self::add(&self.messages_out[target as usize], n as u64);
        }
    }

    /// Client messages received of `kind`.
    pub(crate) fn messages_in(&self, kind: InKind) -> u64 {
        Self::get(&self.messages_in[kind as usize])
    }

    /// Frames queued for sends to `target`.
    pub(crate) fn messages_out(&self, target: Target) -> u64 {
        Self::get(&self.messages_out[target as usize])
    }

    /// Counts one `error` frame of `code` sent to a client.
    pub(crate) fn count_error(&self, code: ErrorCode) {
        Self::add(&self.errors_sent[error_index(code)], 1);
    }

    /// `error` frames of `code` sent.
    pub(crate) fn errors_sent(&self, code: ErrorCode) -> u64 {
        Self::get(&self.errors_sent[error_index(code)])
    }

    /// Counts the close frame that ended a connection: sent first by `initiator`, with `code`.
    pub(crate) fn count_close(&self, initiator: Initiator, code: u16) {
        Self::add(&self.closes[initiator as usize][close_index(code)], 1);
    }

    /// Connections `initiator` closed with `code` (`None`: a code the server does not send).
    pub(crate) fn closes(&self, initiator: Initiator, code: Option<CloseCode>) -> u64 {
        let index = code.map_or(CloseCode::ALL.len(), |code| close_index(code.as_u16()));
        Self::get(&self.closes[initiator as usize][index])
    }

    fn errors_sent_total(&self) -> u64 {
        self.errors_sent.iter().map(Self::get).sum()
    }

    fn messages_in_total(&self) -> u64 {
        self.messages_in.iter().map(Self::get).sum()
    }

    fn messages_out_total(&self) -> u64 {
        self.messages_out.iter().map(Self::get).sum()
    }
}

/// Every error code, in counter index order ([`error_index`]).
pub(crate) const ERROR_CODES: [ErrorCode; ErrorCode::ALL.len()] = ErrorCode::ALL;

/// The index of `code` in [`ERROR_CODES`]; exhaustive, so a new code cannot go uncounted.
fn error_index(code: ErrorCode) -> usize {
    match code {
        ErrorCode::InvalidJson => 0,
        ErrorCode::InvalidMessage => 1,
        ErrorCode::UnknownType => 2,
        ErrorCode::MessageTooLarge => 3,
        ErrorCode::RateLimited => 4,
        ErrorCode::Unauthorized => 5,
        ErrorCode::Forbidden => 6,
        ErrorCode::NotInRoom => 7,
        ErrorCode::LimitExceeded => 8,
        ErrorCode::Internal => 9,
    }
}

/// The index of close code `code` among [`CloseCode::ALL`], or one past them for another.
fn close_index(code: u16) -> usize {
    CloseCode::ALL
        .iter()
        .position(|known| known.as_u16() == code)
        .unwrap_or(CloseCode::ALL.len())
}

/// Who sent the first close frame of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Initiator {
    /// The server closed it (a limit, a timeout, shutdown, the API, a protocol error).
    Server,
    /// The client did; the server echoed its code.
    Client,
}

impl Initiator {
    /// Both, in counter order.
    pub(crate) const ALL: [Self; 2] = [Self::Server, Self::Client];

    /// The `initiator` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// What a client message was, for counting: its protocol type, or why it had none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InKind {
    JoinRoom,
    LeaveRoom,
    Message,
    Broadcast,
    Subscribe,
    Unsubscribe,
    Publish,
    Presence,
    Ping,
    Pong,
    Auth,
    Refresh,
    History,
    /// A type handled by an application handler, or an unknown one.
    Custom,
    /// Not a valid protocol message (bad JSON, bad fields, a binary frame).
    Invalid,
    /// A message to the `/echo` endpoint.
    Echo,
    /// A y-websocket message on a document connection (`/yjs`).
    Document,
}

impl InKind {
    /// Every kind, in index order.
    pub(crate) const ALL: [InKind; 17] = [
        Self::JoinRoom,
        Self::LeaveRoom,
        Self::Message,
        Self::Broadcast,
        Self::Subscribe,
        Self::Unsubscribe,
        Self::Publish,
        Self::Presence,
        Self::Ping,
        Self::Pong,
        Self::Auth,
        Self::Refresh,
        Self::History,
        Self::Custom,
        Self::Invalid,
        Self::Echo,
        Self::Document,
    ];

    /// The kind of a parsed command.
    pub(crate) fn of(command: &Command<'_>) -> Self {
        match command {
            Command::JoinRoom { .. } => Self::JoinRoom,
            Command::LeaveRoom { .. } => Self::LeaveRoom,
            Command::Message { .. } => Self::Message,
            Command::Broadcast { .. } => Self::Broadcast,
            Command::Subscribe { .. } => Self::Subscribe,
            Command::Unsubscribe { .. } => Self::Unsubscribe,
            Command::Publish { .. } => Self::Publish,
            Command::Presence { .. } => Self::Presence,
            Command::Ping { .. } => Self::Ping,
            Command::Pong => Self::Pong,
            Command::Auth { .. } => Self::Auth,
            Command::Refresh { .. } => Self::Refresh,
            Command::History(_) => Self::History,
            Command::Other { .. } => Self::Custom,
        }
    }

    /// The `type` label in `/metrics`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::JoinRoom => "join_room",
            Self::LeaveRoom => "leave_room",
            Self::Message => "message",
            Self::Broadcast => "broadcast",
            Self::Subscribe => "subscribe",
            Self::Unsubscribe => "unsubscribe",
            Self::Publish => "publish",
            Self::Presence => "presence",
            Self::Ping => "ping",
            Self::Pong => "pong",
            Self::Auth => "auth",
            Self::Refresh => "refresh",
            Self::History => "history",
            Self::Custom => "custom",
            Self::Invalid => "invalid",
            Self::Echo => "echo",
            Self::Document => "document",
        }
    }
}

/// Whom a send addressed, for counting outbound frames. A frame is counted once per fan-out
/// with its recipient count, so the label comes from the send, not from the frame's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The members of a room (messages, `user_joined`/`user_left`, server API room sends).
    Room,
    /// The connections of one user.
    User,
    /// Every connection.
    Broadcast,
    /// The subscribers of a channel or pattern.
    Channel,
    /// Presence updates to rooms and watchers.
    Presence,
    /// One connection: replies (`room_joined`, `ack`, `error`, `pong`, …) and direct sends.
    Reply,
    /// The clients of a document: sync replies, relayed updates and awareness.
    Document,
}

impl Target {
    /// Every target, in index order.
    pub(crate) const ALL: [Target; 7] = [
        Self::Room,
        Self::User,
        Self::Broadcast,
        Self::Channel,
        Self::Presence,
        Self::Reply,
        Self::Document,
    ];

    /// The `target` label in `/metrics`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Room => "room",
            Self::User => "user",
            Self::Broadcast => "broadcast",
            Self::Channel => "channel",
            Self::Presence => "presence",
            Self::Reply => "reply",
            Self::Document => "document",
        }
    }
}

/// Messages per second over the last sampling period.
#[derive(Debug, Default)]
pub(crate) struct Rates(Mutex<RateState>);

#[derive(Debug, Default)]
struct RateState {
    last_in: u64,
    last_out: u64,
    last_ms: u64,
    in_per_sec: f64,
    out_per_sec: f64,
}

impl Rates {
    /// Records the counters at hub-clock time `now_ms` and updates the rates.
    pub(crate) fn sample(&self, counters: &Counters, now_ms: u64) {
        let mut state = self.0.lock();
        let messages_in = counters.messages_in_total();
        let messages_out = counters.messages_out_total();
        let elapsed = now_ms.saturating_sub(state.last_ms);
        if elapsed > 0 {
            let per_sec = |now: u64, last: u64| (now - last) as f64 * 1000.0 / elapsed as f64;
            state.in_per_sec = per_sec(messages_in, state.last_in);
            state.out_per_sec = per_sec(messages_out, state.last_out);
        }
        state.last_in = messages_in;
        state.last_out = messages_out;
        state.last_ms = now_ms;
    }

    fn get(&self) -> (f64, f64) {
        let state = self.0.lock();
        (state.in_per_sec, state.out_per_sec)
    }
}

/// The node's statistics, as `GET /stats` returns them. The first four fields are the ones
/// DESIGN.md promises first. Each node publishes its own for the cluster's `/stats`, which
/// reads them back with this type (fields a peer lacks read as zero).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StatsSnapshot {
    /// Open WebSocket connections.
    pub connections: usize,
    /// Rooms with at least one member.
    pub rooms: usize,
    /// Distinct users with at least one connection.
    pub online_users: usize,
    /// Pub/sub channels with at least one subscriber.
    pub channels: usize,
    /// Client messages received.
    pub messages_in: u64,
    /// Frames queued to connections.
    pub messages_out: u64,
    /// Client messages per second, over the last second.
    pub messages_in_per_sec: f64,
    /// Frames queued per second, over the last second.
    pub messages_out_per_sec: f64,
    /// Payload bytes received in client messages.
    pub bytes_in: u64,
    /// Bytes queued to connections.
    pub bytes_out: u64,
    /// Connections accepted since start.
    pub connections_opened: u64,
    /// Connections refused at capacity since start.
    pub connections_refused: u64,
    /// Connections dropped because their outbound queue overflowed.
    pub slow_consumers_dropped: u64,
    /// Whether resident memory is over `--max-memory` (new connections refused, largest
    /// queues shed) and not yet back under the low-water mark.
    pub memory_pressure: bool,
    /// Connections refused while over `--max-memory` (also in `connections_refused`).
    pub memory_refused: u64,
    /// Connections closed to free their queues while over `--max-memory`.
    pub memory_shed: u64,
    /// Frames refused by the rate limiter.
    pub rate_limited: u64,
    /// `error` frames sent.
    pub errors_sent: u64,
    /// Connections closed for missing heartbeats.
    pub heartbeat_timeouts: u64,
    /// Connections closed for inactivity.
    pub idle_timeouts: u64,
    /// Connections refused for their token: 401 at the upgrade, or close 1008 for a bad
    /// `auth` frame or none before the deadline.
    pub auth_failures: u64,
    /// Rooms and channels with a history stream on this node.
    pub history_streams: usize,
    /// Messages kept in those streams, for recovery and `history`.
    pub history_messages: usize,
    /// Yjs documents open on this node.
    pub documents: usize,
    /// Connections to those documents.
    pub document_clients: usize,
    /// Yjs updates applied to documents since start.
    pub document_updates: u64,
    /// Seconds since the node started.
    pub uptime_seconds: u64,
    /// This node's id.
    pub node_id: String,
    /// The broker's name (`local`, `redis`).
    pub broker: String,
    /// The broker's state.
    pub broker_status: BrokerStatus,
    /// Whether every broker subscription change is in effect.
    pub broker_settled: bool,
    /// Publications the broker dropped instead of reaching the other nodes (during outages).
    pub broker_dropped: u64,
    /// The rooms with the most members, most first (ties by name), at most
    /// [`TOP_ROOMS`](crate::hub::TOP_ROOMS).
    pub top_rooms: Vec<RoomMembers>,
}

/// A room and its number of distinct users, as listed in `topRooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMembers {
    /// The room.
    pub room: RoomId,
    /// Distinct users in the room.
    pub members: usize,
}

/// The live gauges that go into a snapshot next to the counters.
pub(crate) struct Gauges {
    pub(crate) connections: usize,
    pub(crate) rooms: usize,
    pub(crate) online_users: usize,
    pub(crate) channels: usize,
    pub(crate) history_streams: usize,
    pub(crate) history_messages: usize,
    pub(crate) documents: usize,
    pub(crate) document_clients: usize,
    pub(crate) uptime_seconds: u64,
    pub(crate) node_id: String,
    pub(crate) broker: &'static str,
    pub(crate) broker_status: BrokerStatus,
    pub(crate) broker_settled: bool,
    pub(crate) broker_dropped: u64,
    pub(crate) memory_pressure: bool,
    pub(crate) top_rooms: Vec<RoomMembers>,
}

impl Counters {
    pub(crate) fn snapshot(&self, rates: &Rates, gauges: Gauges) -> StatsSnapshot {
        let (messages_in_per_sec, messages_out_per_sec) = rates.get();
        StatsSnapshot {
            connections: gauges.connections,
            rooms: gauges.rooms,
            online_users: gauges.online_users,
            channels: gauges.channels,
            messages_in: self.messages_in_total(),
            messages_out: self.messages_out_total(),
            messages_in_per_sec,
            messages_out_per_sec,
            bytes_in: Self::get(&self.bytes_in),
            bytes_out: Self::get(&self.bytes_out),
            connections_opened: Self::get(&self.connections_opened),
            connections_refused: Self::get(&self.connections_refused),
            slow_consumers_dropped: Self::get(&self.slow_consumers),
            memory_pressure: gauges.memory_pressure,
            memory_refused: Self::get(&self.memory_refused),
            memory_shed: Self::get(&self.memory_shed),
            rate_limited: Self::get(&self.rate_limited),
            errors_sent: self.errors_sent_total(),
            heartbeat_timeouts: Self::get(&self.heartbeat_timeouts),
            idle_timeouts: Self::get(&self.idle_timeouts),
            auth_failures: Self::get(&self.auth_failures),
            history_streams: gauges.history_streams,
            history_messages: gauges.history_messages,
            documents: gauges.documents,
            document_clients: gauges.document_clients,
            document_updates: Self::get(&self.document_updates),
            uptime_seconds: gauges.uptime_seconds,
            node_id: gauges.node_id,
            broker: gauges.broker.to_owned(),
            broker_status: gauges.broker_status,
            broker_settled: gauges.broker_settled,
            broker_dropped: gauges.broker_dropped,
            top_rooms: gauges.top_rooms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_code_counts_at_its_own_index() {
        for (index, code) in ERROR_CODES.into_iter().enumerate() {
            assert_eq!(error_index(code), index, "{code:?}");
        }
    }
}
