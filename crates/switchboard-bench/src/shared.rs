//! What a group of connections (one process's receivers, or its publishers) saw, added up.
//!
//! Owns the counters, the end-to-end latency histogram with its sampling rule and measurement
//! window, and [`Tally`], the counters' serializable snapshot. Connections add to it once per
//! read, never per frame, except for the sampled stamps.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::histogram::AtomicHistogram;
use crate::payload::{self, Format, Kind};

/// Counters and latency samples of a group of connections.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The frames that count as deliveries (none for idle and connect runs).
    kind: Option<Kind>,
    /// How the group's connections encode frames.
    format: Format,
    /// One delivery in this many has its stamp read.
    sample_every: u64,
    /// Stamps in `[start, end)` (ns since the epoch) are recorded; `end` 0 means no end.
    window: [AtomicU64; 2],
    /// End-to-end latency of sampled deliveries, in ns.
    pub(crate) latency: AtomicHistogram,
    delivered: AtomicU64,
    other: AtomicU64,
    pings: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    /// Connections the server ended, by close code (1006: TCP closed without a close frame).
    /// Locked only when a connection ends.
    closes: Mutex<BTreeMap<u16, u64>>,
}

/// A snapshot of a group's counters; sums across groups and processes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tally {
    /// Frames of the counted kind received.
    pub(crate) delivered: u64,
    /// Other data frames received (replies, `user_joined`, ...).
    pub(crate) other_frames: u64,
    /// WebSocket pings received (and answered).
    pub(crate) pings: u64,
    /// Bytes read from sockets.
    pub(crate) bytes: u64,
    /// Connections that ended on a socket or framing error.
    pub(crate) errors: u64,
    /// Connections the server ended, by close code.
    pub(crate) server_closes: BTreeMap<u16, u64>,
}

impl Tally {
    /// Adds another tally to this one.
    pub(crate) fn add(&mut self, other: &Tally) {
        self.delivered += other.delivered;
        self.other_frames += other.other_frames;
        self.pings += other.pings;
        self.bytes += other.bytes;
        self.errors += other.errors;
        for (code, n) in &other.server_closes {
            *self.server_closes.entry(*code).or_default() += n;
        }
    }
}

impl Shared {
    /// Counts deliveries of `kind` and reads the stamp of one in `sample_every` (at least 1).
    pub(crate) fn new(kind: Option<Kind>, sample_every: u64) -> Self {
        Self {
            kind,
            format: Format::Json,
            sample_every: sample_every.max(1),
            window: [AtomicU64::new(0), AtomicU64::new(0)],
            latency: AtomicHistogram::default(),
            delivered: AtomicU64::new(0),
            other: AtomicU64::new(0),
            pings: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            closes: Mutex::new(BTreeMap::new()),
        }
    }

    /// The same, for connections that speak `format`.
    pub(crate) fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// How the group's connections encode frames.
    pub(crate) fn format(&self) -> Format {
        self.format
    }

    /// Records only stamps in `[start_ns, end_ns)` from now on.
    pub(crate) fn set_window(&self, start_ns: u64, end_ns: u64) {
        self.window[0].store(start_ns, Ordering::Relaxed);
        self.window[1].store(end_ns, Ordering::Relaxed);
    }

    /// Whether a data frame is a delivery.
    pub(crate) fn is_delivery(&self, json: &[u8]) -> bool {
        self.kind
            .is_some_and(|kind| self.format.has_type(json, kind.server_kind()))
    }

    /// Whether the `n`th delivery (offset by connection) is sampled.
    pub(crate) fn samples(&self, n: u64) -> bool {
        n.is_multiple_of(self.sample_every)
    }

    /// Records the latency of a delivery received at `now_ns`, when its stamp is in the window.
    pub(crate) fn record_stamp(&self, json: &[u8], now_ns: u64) {
        let Some(stamp) = payload::find_stamp(json) else {
            return;
        };
        let start = self.window[0].load(Ordering::Relaxed);
        let end = self.window[1].load(Ordering::Relaxed);
        if stamp >= start && (end == 0 || stamp < end) {
            self.latency.record(now_ns.saturating_sub(stamp));
        }
    }

    /// Adds the frames of one read.
    pub(crate) fn add(&self, delivered: u64, other: u64) {
        if delivered > 0 {
            self.delivered.fetch_add(delivered, Ordering::Relaxed);
        }
        if other > 0 {
            self.other.fetch_add(other, Ordering::Relaxed);
        }
    }

    pub(crate) fn add_bytes(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_ping(&self) {
        self.pings.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_close(&self, code: u16) {
        let mut closes = self
            .closes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        *closes.entry(code).or_default() += 1;
    }

    /// Deliveries so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// A snapshot of the counters.
    pub(crate) fn tally(&self) -> Tally {
        let closes = self
            .closes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        Tally {
            delivered: self.delivered(),
            other_frames: self.other.load(Ordering::Relaxed),
            pings: self.pings.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            server_closes: closes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stamps_in_the_window_are_recorded() {
        let shared = Shared::new(Some(Kind::Message), 1);
        let frame = |t: u64| format!(r#"{{"type":"message","payload":{{"content":"t={t};x"}}}}"#);
        shared.set_window(1_000, 2_000);
        for stamp in [999, 1_000, 1_500, 2_000] {
            assert!(shared.is_delivery(frame(stamp).as_bytes()));
            shared.record_stamp(frame(stamp).as_bytes(), 3_000);
        }
        let h = shared.latency.snapshot();
        assert_eq!(h.count(), 2);
        assert_eq!(h.quantile(1.0), 2_000);
        assert!(!Shared::new(None, 1).is_delivery(frame(1).as_bytes()));
    }

    #[test]
    fn tallies_add_up_close_codes() {
        let shared = Shared::new(None, 16);
        assert!(shared.samples(32) && !shared.samples(33));
        shared.add(3, 2);
        shared.add_close(1008);
        shared.add_close(1008);
        let mut total = shared.tally();
        total.add(&shared.tally());
        assert_eq!(total.delivered, 6);
        assert_eq!(total.other_frames, 4);
        assert_eq!(total.server_closes, BTreeMap::from([(1008, 4)]));
    }
}
