//! The fan-out latency histogram: how long the hub takes from accepting an encoded frame for
//! delivery to pushing it onto the last local recipient's queue.
//!
//! Recording is lock-free and cheap enough for the hot path: the caller reads the clock once
//! before the fan-out and once after it (never per recipient), and an observation is two
//! relaxed atomic adds after a binary search over the bucket bounds. Buckets hold plain
//! (non-cumulative) counts; a reader cumulates them, so a scrape never blocks a fan-out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in nanoseconds: 1 µs to 1 s in 1-2.5-5 steps. Anything slower
/// lands in the implicit `+Inf` bucket.
const BOUNDS_NS: [u64; 19] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// Fan-out latencies of one node.
#[derive(Debug, Default)]
pub(crate) struct FanoutLatency {
    /// Observations per bucket; the last one is `+Inf`.
    buckets: [AtomicU64; BOUNDS_NS.len() + 1],
    /// Sum of every observation, in nanoseconds (wraps after about 584 years of latency).
    sum_ns: AtomicU64,
}

/// A consistent-enough copy of the histogram for an exposition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LatencySnapshot {
    /// `(upper bound in seconds, observations at or below it)`, ascending, without `+Inf`.
    pub(crate) cumulative: Vec<(f64, u64)>,
    /// Every observation (the `+Inf` bucket's cumulative count).
    pub(crate) count: u64,
    /// Sum of the observations, in seconds.
    pub(crate) sum_seconds: f64,
}

impl FanoutLatency {
    /// Records one fan-out that took `elapsed`.
    pub(crate) fn observe(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let index = BOUNDS_NS.partition_point(|&bound| bound < ns);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Reads the histogram. Counts are read bucket by bucket while fan-outs go on, so `count`
    /// is computed from the buckets read (never smaller than a cumulative bucket).
    pub(crate) fn snapshot(&self) -> LatencySnapshot {
        let mut running = 0;
        let mut cumulative = Vec::with_capacity(BOUNDS_NS.len());
        for (bound, bucket) in BOUNDS_NS.iter().zip(&self.buckets) {
            running += bucket.load(Ordering::Relaxed);
            cumulative.push((*bound as f64 / 1e9, running));
        }
        let count = running + self.buckets[BOUNDS_NS.len()].load(Ordering::Relaxed);
        LatencySnapshot {
            cumulative,
            count,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_they_do_not_exceed() {
        let histogram = FanoutLatency::default();
        histogram.observe(Duration::from_nanos(0));
        histogram.observe(Duration::from_nanos(1_000)); // exactly on the first bound
        histogram.observe(Duration::from_nanos(1_001));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(5)); // beyond the last bound: +Inf only
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 5);
        assert_eq!(snapshot.cumulative[0], (1e-6, 2));
        assert_eq!(snapshot.cumulative[1], (2.5e-6, 3));
        let at = |seconds: f64| {
            snapshot
                .cumulative
                .iter()
                .find(|(bound, _)| (*bound - seconds).abs() < 1e-12)
                .map(|(_, count)| *count)
        };
        assert_eq!(at(2.5e-3), Some(3));
        assert_eq!(at(5e-3), Some(4));
        assert_eq!(at(1.0), Some(4));
        let expected_sum = (1_000_u64 + 1_001 + 3_000_000 + 5_000_000_000) as f64 / 1e9;
        assert!((snapshot.sum_seconds - expected_sum).abs() < 1e-9);
    }

    #[test]
    fn a_duration_too_long_for_u64_nanoseconds_saturates_into_inf() {
        let histogram = FanoutLatency::default();
        histogram.observe(Duration::MAX);
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 1);
        assert!(snapshot.cumulative.iter().all(|(_, count)| *count == 0));
    }
}
