//! The servers' resident memory sampled at a fixed period through a message phase
//! (`--rss-every`), for soak runs: does memory level off under a steady load, or grow?
//!
//! The summary gives, per server, the first and last samples, the largest, and the growth over
//! the second half of the run (last sample minus the sample at the half-way point): a server
//! that levels off shows a growth near 0 there, whatever its warm-up.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::measure::Probe;

/// One sample: seconds since the measurement started, and each server's RSS in bytes.
#[derive(Debug, Clone, Serialize)]
pub(super) struct RssSample {
    t_s: f64,
    rss: Vec<Option<u64>>,
}

/// Samples every `every` from `from` until `to` (the first at `from`, the last at `to`).
pub(super) async fn sample(
    probe: &Probe,
    every: Duration,
    from: Instant,
    to: Instant,
) -> Vec<RssSample> {
    let mut samples = Vec::new();
    let mut at = from;
    loop {
        tokio::time::sleep_until(at).await;
        samples.push(RssSample {
            t_s: super::round(at.duration_since(from).as_secs_f64(), 3),
            rss: probe.server_rss(),
        });
        if at >= to {
            return samples;
        }
        at = (at + every).min(to);
    }
}

/// A line per server: first, last, largest, and the growth over the second half (MB).
pub(super) fn summary(samples: &[RssSample], pids: &[u32]) -> Vec<String> {
    let Some(first) = samples.first() else {
        return Vec::new();
    };
    let half = &samples[samples.len() / 2];
    let last = &samples[samples.len() - 1];
    let mb = |bytes: Option<u64>| bytes.map_or(f64::NAN, |b| b as f64 / 1e6);
    pids.iter()
        .enumerate()
        .map(|(i, pid)| {
            let at = |sample: &RssSample| sample.rss.get(i).copied().flatten();
            let max = samples.iter().filter_map(at).max();
            format!(
                "  server {pid} RSS every {:.0} s: {:.1} MB at start, {:.1} MB at the end, max {:.1} MB, second half {:+.2} MB ({} samples)",
                samples.get(1).map_or(0.0, |s| s.t_s),
                mb(at(first)),
                mb(at(last)),
                mb(max),
                mb(at(last)) - mb(at(half)),
                samples.len()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn samples_cover_the_whole_interval_at_the_period() {
        let probe = Probe::new(&[std::process::id()]);
        let from = Instant::now();
        let to = from + Duration::from_millis(250);
        let samples = sample(&probe, Duration::from_millis(100), from, to).await;
        let times: Vec<f64> = samples.iter().map(|s| s.t_s).collect();
        assert_eq!(times, [0.0, 0.1, 0.2, 0.25]);
        assert!(samples.iter().all(|s| s.rss[0].is_some_and(|rss| rss > 0)));
        let lines = summary(&samples, &[std::process::id()]);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("(4 samples)"), "{}", lines[0]);
    }
}
