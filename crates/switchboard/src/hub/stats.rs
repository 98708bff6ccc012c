//! Counters and the `/stats` snapshot. Counters are relaxed atomics bumped once per event or
//! once per fan-out (never once per recipient); rates are sampled once a second by the
//! maintenance task.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

use crate::broker::BrokerStatus;

/// Event counters of one node.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) connections_opened: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) slow_consumers: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) errors_sent: AtomicU64,
    pub(crate) heartbeat_timeouts: AtomicU64,
    pub(crate) idle_timeouts: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
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
        let messages_in = Counters::get(&counters.messages_in);
        let messages_out = Counters::get(&counters.messages_out);
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
/// DESIGN.md promises first.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
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
    /// Seconds since the node started.
    pub uptime_seconds: u64,
    /// This node's id.
    pub node_id: String,
    /// The broker's name (`local`, `redis`).
    pub broker: &'static str,
    /// The broker's state.
    pub broker_status: BrokerStatus,
    /// Whether every broker subscription change is in effect.
    pub broker_settled: bool,
}

/// The live gauges that go into a snapshot next to the counters.
pub(crate) struct Gauges {
    pub(crate) connections: usize,
    pub(crate) rooms: usize,
    pub(crate) online_users: usize,
    pub(crate) channels: usize,
    pub(crate) uptime_seconds: u64,
    pub(crate) node_id: String,
    pub(crate) broker: &'static str,
    pub(crate) broker_status: BrokerStatus,
    pub(crate) broker_settled: bool,
}

impl Counters {
    pub(crate) fn snapshot(&self, rates: &Rates, gauges: Gauges) -> StatsSnapshot {
        let (messages_in_per_sec, messages_out_per_sec) = rates.get();
        StatsSnapshot {
            connections: gauges.connections,
            rooms: gauges.rooms,
            online_users: gauges.online_users,
            channels: gauges.channels,
            messages_in: Self::get(&self.messages_in),
            messages_out: Self::get(&self.messages_out),
            messages_in_per_sec,
            messages_out_per_sec,
            bytes_in: Self::get(&self.bytes_in),
            bytes_out: Self::get(&self.bytes_out),
            connections_opened: Self::get(&self.connections_opened),
            connections_refused: Self::get(&self.connections_refused),
            slow_consumers_dropped: Self::get(&self.slow_consumers),
            rate_limited: Self::get(&self.rate_limited),
            errors_sent: Self::get(&self.errors_sent),
            heartbeat_timeouts: Self::get(&self.heartbeat_timeouts),
            idle_timeouts: Self::get(&self.idle_timeouts),
            auth_failures: Self::get(&self.auth_failures),
            uptime_seconds: gauges.uptime_seconds,
            node_id: gauges.node_id,
            broker: gauges.broker,
            broker_status: gauges.broker_status,
            broker_settled: gauges.broker_settled,
        }
    }
}
