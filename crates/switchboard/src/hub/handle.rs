//! The hub's handle to one connection: its ids, its outbox, its activity clock and when its
//! token expires. The hub's
//! maps hold these; the socket and the per-connection protocol state live in the connection's
//! task and are never reachable from here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use bytes::Bytes;
use serde::Serialize;

use super::UserState;
use super::outbox::{CloseRequest, Outbox, Pushed};
use super::shard::Keyed;
use crate::ids::{ConnId, UserId};
use crate::ws::deflate::Deflate;

/// What a connection's client reads, which decides what may be sent to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// Protocol v1 JSON frames (and the echo endpoint's messages): it gets broadcasts, sends
    /// to its user and app-level pings.
    Json,
    /// Protocol v1 frames in their MessagePack form, as binary frames (subprotocol
    /// `switchboard.v1.msgpack`): it gets everything a JSON client gets, transcoded.
    MsgPack,
    /// y-websocket binary messages only (`/yjs`): no JSON frame may reach it.
    Yjs,
    /// Protocol v1 JSON frames as server-sent events (`GET /sse`): it gets what a `Json`
    /// connection gets, each frame in its SSE form (`crate::sse`), never a WebSocket frame.
    Sse,
}

/// A cheap, cloneable reference to a connection's shared half.
#[derive(Clone)]
pub(crate) struct ConnHandle(Arc<ConnShared>);

/// The registry's and the rooms' tables key handles by their connection's id.
impl Keyed for ConnHandle {
    type Key = ConnId;
    fn key(&self) -> &ConnId {
        &self.0.id
    }
}

/// Its size is guarded (`tests::the_handle_stays_small`): one of these per connection.
pub(crate) struct ConnShared {
    id: ConnId,
    wire: Wire,
    /// permessage-deflate as negotiated at the upgrade (`Deflate::window_bits`; 0: not), set once
    /// right after registration. A frame queued before it is set goes uncompressed, which
    /// RFC 7692 allows for any message.
    deflate: AtomicU8,
    /// Shared by all of the user's connections on this node; it holds the user's id.
    user_state: Arc<UserState>,
    outbox: Outbox,
    /// Milliseconds (hub clock) when the connection was registered.
    connected_at: u64,
    /// Hub-clock ms of the last frame of any kind from the client (heartbeat liveness).
    last_seen: AtomicU64,
    /// Hub-clock ms of the last traffic, for the idle timeout. Idle means no traffic in either
    /// direction (DESIGN.md §4): a data frame from the client (`touch`) or a data frame taken
    /// to be written to it (`sent_traffic`, once per batch the connection's task takes).
    /// Heartbeats do not count: WebSocket pings and pongs, and the app-level `ping`.
    last_active: AtomicU64,
    /// Hub-clock ms when a close was first requested; 0 while open.
    closing_since: AtomicU64,
    /// The `exp` of the connection's token, in ms since the epoch (wall clock, as `exp` is);
    /// 0 when it has none (authentication off). Written by the connection's session when it
    /// authenticates or refreshes, read by the hub's token sweep.
    token_expires_at: AtomicU64,
    /// When the sweep sends `token_expiring` (ms since the epoch); 0 once sent, or when there is
    /// no token.
    token_warn_at: AtomicU64,
}

/// When a connection's token expires, and when its client is to be warned (ms since the
/// epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenDeadline {
    pub(crate) expires_at: u64,
    pub(crate) warn_at: u64,
}

/// A snapshot of a connection, as the library API and the server API report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnInfo {
    /// The connection's id.
    pub connection_id: ConnId,
    /// The user it belongs to.
    pub user_id: UserId,
    /// Milliseconds since the connection was registered.
    pub connected_for_ms: u64,
    /// Milliseconds since the last message in either direction (heartbeats do not count).
    pub idle_for_ms: u64,
    /// Outbound bytes waiting to be written.
    pub queued_bytes: usize,
}

impl ConnHandle {
    pub(crate) fn new(id: ConnId, wire: Wire, user_state: Arc<UserState>, now: u64) -> Self {
        Self(Arc::new(ConnShared {
            id,
            wire,
            deflate: AtomicU8::new(0),
            user_state,
            outbox: Outbox::default(),
            connected_at: now,
            last_seen: AtomicU64::new(now),
            last_active: AtomicU64::new(now),
            closing_since: AtomicU64::new(0),
            token_expires_at: AtomicU64::new(0),
            token_warn_at: AtomicU64::new(0),
        }))
    }

    pub(crate) fn id(&self) -> ConnId {
        self.0.id
    }

    pub(crate) fn user(&self) -> &UserId {
        self.0.user_state.user()
    }

    /// Whether the client reads protocol v1 frames: JSON ones, which the hub queues as they
    /// are or transcodes to MessagePack for it (`Outgoing::for_wire`).
    pub(crate) fn speaks_json(&self) -> bool {
        matches!(self.0.wire, Wire::Json | Wire::MsgPack | Wire::Sse)
    }

    /// What the client reads.
    pub(crate) fn wire(&self) -> Wire {
        self.0.wire
    }

    /// What permessage-deflate the client negotiated, if any.
    pub(crate) fn deflate(&self) -> Option<Deflate> {
        Deflate::from_bits(self.0.deflate.load(Ordering::Relaxed))
    }

    /// Records the permessage-deflate agreement of the upgrade.
    pub(crate) fn set_deflate(&self, deflate: Option<Deflate>) {
        let bits = deflate.map_or(0, Deflate::window_bits);
        self.0.deflate.store(bits, Ordering::Relaxed);
    }

    pub(crate) fn user_state(&self) -> &Arc<UserState> {
        &self.0.user_state
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.0.outbox
    }

    /// Queues a frame, bounded by `limit` queued bytes.
    pub(crate) fn push(&self, frame: &Bytes, limit: usize) -> Pushed {
        self.0.outbox.push(frame, limit)
    }

    /// Requests a close at hub-clock time `now`; returns whether this request was the first.
    pub(crate) fn close(&self, request: CloseRequest, now: u64) -> bool {
        let first = self.0.outbox.close(request);
        if first {
            self.0.closing_since.store(now.max(1), Ordering::Relaxed);
        }
        first
    }

    /// Hub-clock ms since which the connection is closing, if it is.
    pub(crate) fn closing_since(&self) -> Option<u64> {
        Some(self.0.closing_since.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// Records a frame from the client; `message` says whether it counts as activity.
    pub(crate) fn touch(&self, now: u64, message: bool) {
        self.0.last_seen.store(now, Ordering::Relaxed);
        if message {
            self.0.last_active.store(now, Ordering::Relaxed);
        }
    }

    /// Records traffic to the client: the connection's task took data frames to write.
    pub(crate) fn sent_traffic(&self, now: u64) {
        self.0.last_active.store(now, Ordering::Relaxed);
    }

    pub(crate) fn last_seen(&self) -> u64 {
        self.0.last_seen.load(Ordering::Relaxed)
    }

    pub(crate) fn last_active(&self) -> u64 {
        self.0.last_active.load(Ordering::Relaxed)
    }

    /// Sets when the connection's token expires and when its client is warned, replacing what
    /// an earlier token set. The expiry is stored first, so a sweep that sees the new warning
    /// time announces the new `exp`.
    pub(crate) fn set_token_deadline(&self, deadline: TokenDeadline) {
        self.0
            .token_expires_at
            .store(deadline.expires_at, Ordering::Release);
        self.0
            .token_warn_at
            .store(deadline.warn_at.max(1), Ordering::Release);
    }

    /// When the connection's token expires (ms since the epoch), if it has one.
    pub(crate) fn token_expires_at(&self) -> Option<u64> {
        Some(self.0.token_expires_at.load(Ordering::Acquire)).filter(|&t| t != 0)
    }

    /// Takes the warning that is due at `now` (ms since the epoch): true once per token, when
    /// its warning time has come.
    pub(crate) fn take_token_warning(&self, now: u64) -> bool {
        let warn_at = self.0.token_warn_at.load(Ordering::Acquire);
        warn_at != 0
            && now >= warn_at
            && self
                .0
                .token_warn_at
                .compare_exchange(warn_at, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    pub(crate) fn info(&self, now: u64) -> ConnInfo {
        ConnInfo {
            connection_id: self.0.id,
            user_id: self.user().clone(),
            connected_for_ms: now.saturating_sub(self.0.connected_at),
            idle_for_ms: now.saturating_sub(self.last_active()),
            queued_bytes: self.0.outbox.queued_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::*;

    /// Every connection holds one `ConnShared` in an `Arc` (16 bytes of counts before it), in
    /// one jemalloc size class: at 144 bytes the `ArcInner` is 160, exactly a class; the
    /// handle was 184 bytes (a 224-byte class) while it held its user's id and an inline close
    /// request (BENCHMARKS.md, "Idle memory"). Adding a field means making room first.
    #[test]
    fn the_handle_stays_small() {
        let shared = size_of::<ConnShared>();
        assert!(shared <= 144, "ConnShared grew to {shared} bytes");
    }
}
