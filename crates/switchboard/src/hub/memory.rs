//! Memory pressure (`--max-memory`): what the node does when its resident memory passes the
//! limit. It refuses new connections (close 1013, "try again later") and closes the connections
//! with the largest outbound queues (1013 too; their queues are freed at once), until the
//! resident memory is back under the low-water mark ([`low_water`]).
//!
//! Owns the pressure flag and the decision of whom to shed. The resident memory is read by the
//! memory sweep (`maintenance`), once per [`MEMORY_SWEEP_PERIOD`], and passed in: nothing on the
//! message path reads it, and admission only loads an atomic flag.
//!
//! Why only queues: they are the memory a node gains fastest and the only part that one slow
//! client can grow (to `max_queued_bytes` each). Connections, rooms and history grow with
//! admitted load, which refusing new connections already stops. And only when the queues can
//! cover the excess: when the memory is elsewhere, closing clients would not bring the node
//! back under the mark, so it only refuses new connections.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{CloseRequest, ConnHandle, Counters, Hub};
use crate::protocol::CloseCode;

/// How often the memory sweep reads the resident memory.
pub(crate) const MEMORY_SWEEP_PERIOD: Duration = Duration::from_millis(250);

/// Queues shorter than this are never shed: closing them frees next to nothing, and a node
/// over its limit for other reasons (many connections) must not close healthy clients.
pub(crate) const MIN_SHED_QUEUE: usize = 64 << 10;

/// The close of a connection shed under memory pressure: abortive, so that its queue is
/// dropped now; the close frame itself is still sent.
const SHED: CloseRequest = CloseRequest {
    code: CloseCode::TryAgainLater,
    reason: Cow::Borrowed("server low on memory"),
    graceful: false,
};

/// The resident memory under which a node under pressure accepts connections again: 90 % of
/// the limit. The gap keeps it from flapping at the limit.
pub(crate) fn low_water(limit: u64) -> u64 {
    limit - limit / 10
}

/// The limit and whether the node is under pressure now.
pub(super) struct MemoryGuard {
    limit: u64,
    pressure: AtomicBool,
}

impl MemoryGuard {
    pub(super) fn new(limit: u64) -> Self {
        Self {
            limit,
            pressure: AtomicBool::new(false),
        }
    }

    pub(super) fn is_under_pressure(&self) -> bool {
        self.pressure.load(Ordering::Relaxed)
    }
}

/// What one memory sweep saw and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct MemoryReport {
    /// The node went under pressure in this sweep.
    pub(crate) entered: bool,
    /// The node came back under the low-water mark in this sweep.
    pub(crate) left: bool,
    /// Connections closed to free their queues.
    pub(crate) shed: usize,
    /// Bytes their queues held.
    pub(crate) shed_bytes: usize,
}

impl Hub {
    /// Whether new connections are refused for memory (always `false` without a limit).
    pub(crate) fn is_under_memory_pressure(&self) -> bool {
        self.inner
            .memory
            .as_ref()
            .is_some_and(MemoryGuard::is_under_pressure)
    }

    /// Applies the limit to a reading of `resident` bytes: enters pressure above the limit,
    /// leaves it at or under the low-water mark, and while under pressure and above the mark
    /// sheds the largest queues, largest first, until their bytes cover the excess. Logs the
    /// start and the end of each episode once.
    pub(crate) fn memory_sweep(&self, resident: u64) -> MemoryReport {
        let Some(guard) = &self.inner.memory else {
            return MemoryReport::default();
        };
        let (limit, low) = (guard.limit, low_water(guard.limit));
        let was = guard.is_under_pressure();
        let now = if resident > limit {
            true
        } else if resident <= low {
            false
        } else {
            was
        };
        guard.pressure.store(now, Ordering::Relaxed);
        let mut report = MemoryReport {
            entered: now && !was,
            left: was && !now,
            ..MemoryReport::default()
        };
        if report.entered {
            tracing::warn!(
                resident,
                max_memory = limit,
                low_water = low,
                "resident memory above max_memory: refusing new connections and shedding the \
                 largest outbound queues until under the low-water mark"
            );
        }
        if report.left {
            tracing::info!(
                resident,
                low_water = low,
                "resident memory under the low-water mark: accepting connections again"
            );
        }
        if now {
            let excess = usize::try_from(resident.saturating_sub(low)).unwrap_or(usize::MAX);
            (report.shed, report.shed_bytes) = self.shed_queues(excess);
        }
        report
    }

    /// Closes the open connections with the largest queues (at least [`MIN_SHED_QUEUE`]),
    /// largest first, until their queued bytes reach `excess`; none when all of them together
    /// hold less than `excess`. Returns how many were closed and their queued bytes.
    fn shed_queues(&self, excess: usize) -> (usize, usize) {
        let mut queues: Vec<(usize, ConnHandle)> = Vec::new();
        let mut total = 0usize;
        self.for_each_open(|handle| {
            let queued = handle.outbox().queued_bytes();
            if queued >= MIN_SHED_QUEUE {
                total = total.saturating_add(queued);
                queues.push((queued, handle.clone()));
            }
        });
        if total < excess {
            return (0, 0);
        }
        queues.sort_unstable_by_key(|&(queued, _)| std::cmp::Reverse(queued));
        let now = self.now_ms();
        let (mut shed, mut freed) = (0, 0);
        for (queued, handle) in queues {
            if freed >= excess {
                break;
            }
            if handle.close(SHED, now) {
                tracing::debug!(conn = %handle.id(), user = %handle.user(), queued, "shed under memory pressure");
                shed += 1;
                freed += queued;
            }
        }
        Counters::add(&self.inner.counters.memory_shed, shed as u64);
        (shed, freed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::broker::LocalBroker;
    use crate::config::Config;
    use crate::hub::registry::Refusal;
    use crate::hub::{UserId, Wire};

    const LIMIT: u64 = 100 << 20;

    fn hub_with(max_memory: Option<u64>) -> Hub {
        let mut config = Config::default().hub;
        config.limits.max_memory = max_memory;
        config.limits.max_queued_bytes = 16 << 20;
        Hub::new(
            config,
            Arc::new(LocalBroker::standalone()),
            Arc::new(crate::cluster::NoPeers),
            None,
            Box::new(crate::docstore::MemoryDocs::default()),
        )
    }

    fn hub() -> Hub {
        hub_with(Some(LIMIT))
    }

    fn connect(hub: &Hub, user: &str) -> ConnHandle {
        hub.register_as(UserId::from_trusted(user), Wire::Json)
            .unwrap()
    }

    fn queue(hub: &Hub, handle: &ConnHandle, bytes: usize) {
        let frame = Bytes::from(vec![b'x'; bytes]);
        assert!(hub.push(handle, &frame));
    }

    #[test]
    fn the_low_water_mark_is_nine_tenths_of_the_limit() {
        assert_eq!(low_water(100), 90);
        assert_eq!(low_water(16 << 20), (16 << 20) - (16 << 20) / 10);
    }

    #[test]
    fn pressure_starts_above_the_limit_and_ends_at_the_low_water_mark() {
        let hub = hub();
        assert_eq!(hub.memory_sweep(LIMIT), MemoryReport::default());
        assert!(
            !hub.is_under_memory_pressure(),
            "at the limit is not above it"
        );
        let entered = hub.memory_sweep(LIMIT + 1);
        assert!(entered.entered && !entered.left);
        assert!(hub.is_under_memory_pressure());
        let refused = hub.register_as(UserId::from_trusted("late"), Wire::Json);
        assert!(matches!(refused, Err(Refusal::MemoryPressure)));
        // Between the marks: still under pressure, and no new episode.
        assert_eq!(
            hub.memory_sweep(low_water(LIMIT) + 1),
            MemoryReport::default()
        );
        assert!(hub.is_under_memory_pressure());
        let left = hub.memory_sweep(low_water(LIMIT));
        assert!(left.left && !left.entered);
        assert!(!hub.is_under_memory_pressure());
        connect(&hub, "late");
        let stats = hub.stats();
        assert_eq!(stats.memory_refused, 1);
        assert_eq!(stats.connections_refused, 1);
    }

    #[test]
    fn the_largest_queues_are_shed_first_until_they_cover_the_excess() {
        let hub = hub();
        let small = connect(&hub, "small");
        let middle = connect(&hub, "middle");
        let large = connect(&hub, "large");
        let tiny = connect(&hub, "tiny");
        queue(&hub, &small, 4 << 20);
        queue(&hub, &middle, 7 << 20);
        queue(&hub, &large, 9 << 20);
        queue(&hub, &tiny, MIN_SHED_QUEUE - 1);
        // Just over the limit is 10 MiB over the low-water mark: the 9 MiB queue is not enough,
        // the 7 MiB one is added, the 4 MiB one stays.
        let report = hub.memory_sweep(LIMIT + 1);
        assert_eq!((report.shed, report.shed_bytes), (2, 16 << 20));
        for (handle, shed) in [
            (&large, true),
            (&middle, true),
            (&small, false),
            (&tiny, false),
        ] {
            assert_eq!(handle.closing_since().is_some(), shed, "{}", handle.user());
        }
        assert_eq!(
            large.outbox().queued_bytes(),
            0,
            "a shed queue is freed at once"
        );
        assert_eq!(hub.stats().memory_shed, 2);
    }

    #[test]
    fn queues_below_the_minimum_are_never_shed() {
        let hub = hub();
        let tiny = connect(&hub, "tiny");
        queue(&hub, &tiny, MIN_SHED_QUEUE - 1);
        let report = hub.memory_sweep(LIMIT * 2);
        assert!(report.entered);
        assert_eq!(report.shed, 0);
        assert!(tiny.closing_since().is_none());
    }

    #[test]
    fn queues_that_cannot_cover_the_excess_are_left_alone() {
        let hub = hub();
        let a = connect(&hub, "a");
        let b = connect(&hub, "b");
        queue(&hub, &a, 6 << 20);
        queue(&hub, &b, 4 << 20);
        // 10 MiB + 1 over the low-water mark, 10 MiB queued: the memory is elsewhere.
        let report = hub.memory_sweep(LIMIT + 1);
        assert!(report.entered);
        assert_eq!((report.shed, report.shed_bytes), (0, 0));
        assert!(a.closing_since().is_none() && b.closing_since().is_none());
        // One byte less over the mark: they cover it, both go.
        let report = hub.memory_sweep(LIMIT);
        assert_eq!((report.shed, report.shed_bytes), (2, 10 << 20));
    }

    #[test]
    fn without_a_limit_nothing_happens() {
        let hub = hub_with(None);
        let conn = connect(&hub, "a");
        queue(&hub, &conn, 1 << 20);
        assert_eq!(hub.memory_sweep(u64::MAX), MemoryReport::default());
        assert!(!hub.is_under_memory_pressure());
        assert!(conn.closing_since().is_none());
    }
}
