//! Counters of the requests made to the application's backend proxies (`crate::proxy`): how
//! many, by what they were for and how they ended, and the time they took. `/metrics` reads
//! them at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a proxy request was for (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyKind {
    Connect,
    Join,
    Subscribe,
    Rpc,
}

impl ProxyKind {
    /// Every kind, in index order.
    pub(crate) const ALL: [Self; 4] = [Self::Connect, Self::Join, Self::Subscribe, Self::Rpc];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Join => "join",
            Self::Subscribe => "subscribe",
            Self::Rpc => "rpc",
        }
    }
}

/// How a proxy request ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyOutcome {
    /// The backend allowed it (or answered an RPC with a result).
    Allowed,
    /// The backend refused it (or answered an RPC with an error).
    Refused,
    /// No answer: the connection failed, or the status was not 2xx.
    Unavailable,
    /// No answer within `--proxy-timeout`.
    Timeout,
    /// An answer that is not the documented JSON, or too large.
    Invalid,
}

impl ProxyOutcome {
    /// Every outcome, in index order.
    pub(crate) const ALL: [Self; 5] = [
        Self::Allowed,
        Self::Refused,
        Self::Unavailable,
        Self::Timeout,
        Self::Invalid,
    ];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Refused => "refused",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::Invalid => "invalid",
        }
    }
}

/// Proxy requests by kind and outcome, and their total duration by kind.
#[derive(Debug, Default)]
pub(crate) struct ProxyCounters {
    requests: [[AtomicU64; ProxyOutcome::ALL.len()]; ProxyKind::ALL.len()],
    micros: [AtomicU64; ProxyKind::ALL.len()],
}

impl ProxyCounters {
    /// Counts one finished request.
    pub(crate) fn count(&self, kind: ProxyKind, outcome: ProxyOutcome, took: Duration) {
        self.requests[kind as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.micros[kind as usize].fetch_add(micros, Ordering::Relaxed);
    }

    /// Requests of `kind` that ended with `outcome`.
    pub(crate) fn requests(&self, kind: ProxyKind, outcome: ProxyOutcome) -> u64 {
        self.requests[kind as usize][outcome as usize].load(Ordering::Relaxed)
    }

    /// Seconds the requests of `kind` took, in total.
    pub(crate) fn seconds(&self, kind: ProxyKind) -> f64 {
        self.micros[kind as usize].load(Ordering::Relaxed) as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_kind_and_outcome_with_their_time() {
        let counters = ProxyCounters::default();
        counters.count(
            ProxyKind::Join,
            ProxyOutcome::Refused,
            Duration::from_millis(1500),
        );
        counters.count(
            ProxyKind::Join,
            ProxyOutcome::Refused,
            Duration::from_millis(500),
        );
        counters.count(
            ProxyKind::Rpc,
            ProxyOutcome::Timeout,
            Duration::from_secs(5),
        );
        assert_eq!(counters.requests(ProxyKind::Join, ProxyOutcome::Refused), 2);
        assert_eq!(counters.requests(ProxyKind::Join, ProxyOutcome::Allowed), 0);
        assert_eq!(counters.requests(ProxyKind::Rpc, ProxyOutcome::Timeout), 1);
        assert!((counters.seconds(ProxyKind::Join) - 2.0).abs() < 1e-9);
        assert!((counters.seconds(ProxyKind::Connect)).abs() < 1e-9);
    }
}
