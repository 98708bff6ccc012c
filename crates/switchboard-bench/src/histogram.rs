//! Latency histograms: fixed memory, lock-free recording, mergeable across processes.
//!
//! Values (nanoseconds) go into log-linear buckets: exact below 128, then 128 buckets per power
//! of two, so a reported percentile is within 0.8 % of the true value (it is the upper bound of
//! its bucket, clamped to the exact maximum). [`AtomicHistogram`] is what connections record
//! into; [`Histogram`] is its sparse snapshot, which travels between processes as JSON and merges.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;

fn bucket(value: u64) -> usize {
    if value < SUB as u64 {
        return value as usize;
    }
    let shift = 63 - value.leading_zeros() - SUB_BITS;
    let top = (value >> shift) as usize;
    SUB + shift as usize * SUB + (top - SUB)
}

fn upper_bound(index: usize) -> u64 {
    if index < SUB {
        return index as u64;
    }
    let shift = (index - SUB) / SUB;
    let top = (index - SUB) % SUB + SUB;
    let bound = ((top as u128 + 1) << shift) - 1;
    u64::try_from(bound).unwrap_or(u64::MAX)
}

/// A histogram many tasks record into at once (about 60 KiB).
#[derive(Debug)]
pub(crate) struct AtomicHistogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

impl AtomicHistogram {
    /// Records one value.
    pub(crate) fn record(&self, value: u64) {
        self.buckets[bucket(value)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
    }

    /// A copy of what was recorded so far.
    pub(crate) fn snapshot(&self) -> Histogram {
        let counts = self
            .buckets
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let n = b.load(Ordering::Relaxed);
                (n > 0).then_some((i as u32, n))
            })
            .collect();
        Histogram {
            counts,
            count: self.count.load(Ordering::Relaxed),
            sum: self.sum.load(Ordering::Relaxed),
            max: self.max.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot: non-empty buckets as `(index, count)`, sorted by index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Histogram {
    counts: Vec<(u32, u64)>,
    count: u64,
    sum: u64,
    max: u64,
}

/// Percentiles of a histogram of nanoseconds, in microseconds, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Summary {
    /// Values recorded.
    pub(crate) samples: u64,
    /// Mean.
    pub(crate) mean: f64,
    /// Median.
    pub(crate) p50: f64,
    /// 90th percentile.
    pub(crate) p90: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// 99.9th percentile.
    pub(crate) p999: f64,
    /// Largest value (exact).
    pub(crate) max: f64,
}

impl Histogram {
    /// Values recorded.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Adds another histogram's values to this one.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        let (ours, theirs) = (&self.counts, &other.counts);
        let mut merged = Vec::with_capacity(ours.len() + theirs.len());
        let (mut i, mut j) = (0, 0);
        loop {
            match (ours.get(i), theirs.get(j)) {
                (Some(&(x, n)), Some(&(y, m))) if x == y => {
                    merged.push((x, n + m));
                    i += 1;
                    j += 1;
                }
                (Some(&a), Some(&b)) if a.0 < b.0 => {
                    merged.push(a);
                    i += 1;
                }
                (_, Some(&b)) => {
                    merged.push(b);
                    j += 1;
                }
                (Some(&a), None) => {
                    merged.push(a);
                    i += 1;
                }
                (None, None) => break,
            }
        }
        self.counts = merged;
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0..=1): the upper bound of its bucket, at most the maximum.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for &(index, n) in &self.counts {
            seen += n;
            if seen >= rank {
                return upper_bound(index as usize).min(self.max);
            }
        }
        self.max
    }

    /// Percentiles in microseconds (values recorded in nanoseconds).
    pub(crate) fn summary_us(&self) -> Summary {
        let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
        Summary {
            samples: self.count,
            mean: self.sum.checked_div(self.count).map_or(0.0, us),
            p50: us(self.quantile(0.5)),
            p90: us(self.quantile(0.9)),
            p99: us(self.quantile(0.99)),
            p999: us(self.quantile(0.999)),
            max: us(self.max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_monotonic_and_tight() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(127), 127);
        assert_eq!(bucket(128), 128);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert_eq!(upper_bound(BUCKETS - 1), u64::MAX);
        let mut last = 0;
        for v in (0..1_000_000u64).step_by(7).chain([u64::MAX / 3, u64::MAX]) {
            let b = bucket(v);
            assert!(b >= last, "monotonic at {v}");
            last = b;
            let hi = upper_bound(b);
            assert!(hi >= v, "{v} within its bucket");
            assert!((hi - v) as f64 <= v as f64 / 128.0 + 1.0, "tight at {v}");
        }
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let h = AtomicHistogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 10_000);
        let p50 = s.quantile(0.5) as f64;
        assert!((p50 - 5_000_000.0).abs() / 5_000_000.0 < 0.01, "{p50}");
        let p99 = s.quantile(0.99) as f64;
        assert!((p99 - 9_900_000.0).abs() / 9_900_000.0 < 0.01, "{p99}");
        assert_eq!(s.quantile(1.0), 10_000_000);
        let summary = s.summary_us();
        assert_eq!(summary.max, 10_000.0);
        assert!((summary.mean - 5000.5).abs() < 0.1);
    }

    #[test]
    fn merging_equals_recording_together() {
        let (a, b, both) = (
            AtomicHistogram::default(),
            AtomicHistogram::default(),
            AtomicHistogram::default(),
        );
        for v in [5u64, 900, 70_000, 70_001, 3_000_000_000] {
            a.record(v);
            both.record(v);
        }
        for v in [5u64, 1, 70_000, 12_345_678] {
            b.record(v);
            both.record(v);
        }
        let mut merged = a.snapshot();
        merged.merge(&b.snapshot());
        assert_eq!(merged, both.snapshot());
        let json = serde_json::to_string(&merged).unwrap();
        assert_eq!(serde_json::from_str::<Histogram>(&json).unwrap(), merged);
        assert_eq!(Histogram::default().summary_us(), Summary::default());
    }
}
