//! The hub's handle to one connection: its ids, its outbox, its activity clock and when its
//! token expires. The hub's
//! maps hold these; the socket and the per-connection protocol state live in the connection's
//! task and are never reachable from here.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use triomphe::Arc;

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

/// A cheap, cloneable reference to a connection's shared half. Nothing holds a weak
/// reference to it, so it is a `triomphe::Arc`, without the weak count
/// (`tests::the_handle_stays_small`).
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
    /// The connection's token deadline in whole seconds since the epoch, in one word so that
    /// the sweep reads both halves of one token: the `exp` (rounded up; 0: no token, as with
    /// authentication off) in the high half, when the sweep sends `token_expiring` (rounded
    /// down; 0 once sent) in the low half. Written by the connection's session when it
    /// authenticates or refreshes, read by the hub's token sweep, which runs once a second
    /// (`exp` itself is in seconds).
    token: AtomicU64,
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
            token: AtomicU64::new(0),
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
        self.0.outbox.close(request, now)
    }

    /// Hub-clock ms since which the connection is closing, if it is.
    pub(crate) fn closing_since(&self) -> Option<u64> {
        self.0.outbox.closing_since()
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
    /// an earlier token set, both at once. Kept in whole seconds: the expiry rounded up, the
    /// warning rounded down (never late).
    pub(crate) fn set_token_deadline(&self, deadline: TokenDeadline) {
        let seconds = |s: u64| s.clamp(1, u64::from(u32::MAX));
        let expires = seconds(deadline.expires_at.div_ceil(1000));
        let warn = seconds(deadline.warn_at / 1000);
        self.0.token.store(expires << 32 | warn, Ordering::Release);
    }

    /// When the connection's token expires (ms since the epoch), if it has one.
    pub(crate) fn token_expires_at(&self) -> Option<u64> {
        let expires = self.0.token.load(Ordering::Acquire) >> 32;
        (expires != 0).then_some(expires * 1000)
    }

    /// Takes the warning that is due at `now` (ms since the epoch): true once per token, when
    /// its warning time has come.
    pub(crate) fn take_token_warning(&self, now: u64) -> bool {
        const WARN: u64 = u32::MAX as u64;
        let token = self.0.token.load(Ordering::Acquire);
        let warn_at = (token & WARN) * 1000;
        warn_at != 0
            && now >= warn_at
            && self
                .0
                .token
                .compare_exchange(token, token & !WARN, Ordering::AcqRel, Ordering::Acquire)
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

    /// Every connection holds one `ConnShared` in a `triomphe::Arc` (8 bytes of count before
    /// it), in one jemalloc size class: at 120 bytes or less the allocation is in the 128-byte
    /// class. At 144 bytes in a `std::sync::Arc` (16 bytes of counts) it was in the 160-byte
    /// one, and at 184 bytes (its user's id and an inline close request) in the 224-byte one
    /// (BENCHMARKS.md, "Idle memory"). Adding a field means making room first.
    #[test]
    fn the_handle_stays_small() {
        let shared = size_of::<ConnShared>();
        assert!(shared <= 120, "ConnShared grew to {shared} bytes");
    }

    #[test]
    fn a_token_deadline_is_kept_in_whole_seconds_and_warns_once() {
        let user = Arc::new(UserState::new(UserId::anonymous(), None, 0));
        let handle = ConnHandle::new(ConnId::next(), Wire::Json, user, 0);
        assert_eq!(handle.token_expires_at(), None);
        assert!(!handle.take_token_warning(u64::MAX));
        handle.set_token_deadline(TokenDeadline {
            expires_at: 60_500,
            warn_at: 30_700,
        });
        assert_eq!(handle.token_expires_at(), Some(61_000), "rounded up");
        assert!(!handle.take_token_warning(29_999));
        assert!(handle.take_token_warning(30_000), "rounded down");
        assert!(!handle.take_token_warning(30_000), "once");
        assert_eq!(handle.token_expires_at(), Some(61_000));
        handle.set_token_deadline(TokenDeadline {
            expires_at: 120_000,
            warn_at: 0,
        });
        assert!(handle.take_token_warning(1000), "a refresh warns again");
        assert_eq!(handle.token_expires_at(), Some(120_000));
    }
}
