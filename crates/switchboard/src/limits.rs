//! Per-user and per-connection limits on what clients send: the limits themselves
//! ([`RateLimit`], [`ViolationLimit`], which the configuration validates and re-exports), the
//! rate limiter (a token bucket shared by all of a user's connections on a node) and the
//! violation counter (one per connection, in its session).
//!
//! This module depends on no other module of the crate: the configuration depends on it.

use std::time::Duration;

use parking_lot::Mutex;

/// A token bucket: `per_second` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained messages per second.
    pub per_second: u32,
    /// Bucket size.
    pub burst: u32,
}

/// A connection that sends `max` bad frames within `window` is closed with 1008.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViolationLimit {
    /// Bad frames tolerated in one window; the one that reaches it closes the connection.
    pub max: u32,
    /// The window, opened by the first bad frame after the previous window ended.
    pub window: Duration,
}

/// A token bucket refilled at `per_second` tokens a second up to `burst` tokens. Time is passed
/// in (milliseconds on any monotonic clock), which keeps it pure and testable.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: RateLimit,
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    pub(crate) fn new(rate: RateLimit, now_ms: u64) -> Self {
        Self {
            rate,
            tokens: f64::from(rate.burst),
            last_ms: now_ms,
        }
    }

    /// Takes one token, or says after how many milliseconds one will be available.
    pub(crate) fn try_take(&mut self, now_ms: u64) -> Result<(), u64> {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        let per_ms = f64::from(self.rate.per_second) / 1000.0;
        self.tokens = (self.tokens + elapsed as f64 * per_ms).min(f64::from(self.rate.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / per_ms).ceil().max(1.0) as u64)
        }
    }
}

/// A [`TokenBucket`] behind a lock, shared by a user's connections.
#[derive(Debug)]
pub(crate) struct RateLimiter(Mutex<TokenBucket>);

impl RateLimiter {
    pub(crate) fn new(rate: RateLimit, now_ms: u64) -> Self {
        Self(Mutex::new(TokenBucket::new(rate, now_ms)))
    }

    pub(crate) fn try_take(&self, now_ms: u64) -> Result<(), u64> {
        self.0.lock().try_take(now_ms)
    }
}

/// Counts a connection's bad frames in fixed windows: a window opens at the first bad frame
/// after the previous one ended, and the frame that brings the count to the limit within it
/// trips the counter. Time is passed in (milliseconds), as for [`TokenBucket`].
///
/// One word per connection (it lives in every connection's task): the count in the top 16 bits
/// (at most [`Violations::MAX_LIMIT`], which the configuration enforces), the window's start in
/// the low 48 bits (milliseconds of hub time: almost 9 000 years).
#[derive(Debug, Default)]
pub(crate) struct Violations(u64);

impl Violations {
    /// The largest limit a counter can reach.
    pub(crate) const MAX_LIMIT: u32 = u16::MAX as u32;
    const START_BITS: u32 = 48;
    const START_MASK: u64 = (1 << Self::START_BITS) - 1;

    /// Records one bad frame at `now_ms`; true when it reaches `limit.max` within the window.
    pub(crate) fn record(&mut self, limit: ViolationLimit, now_ms: u64) -> bool {
        let window_ms = u64::try_from(limit.window.as_millis()).unwrap_or(u64::MAX);
        let (mut count, mut start) = (self.0 >> Self::START_BITS, self.0 & Self::START_MASK);
        let now = now_ms & Self::START_MASK;
        if count == 0 || now.saturating_sub(start) >= window_ms {
            count = 0;
            start = now;
        }
        count = (count + 1).min(u64::from(Self::MAX_LIMIT));
        self.0 = (count << Self::START_BITS) | start;
        count >= u64::from(limit.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIOLATIONS: ViolationLimit = ViolationLimit {
        max: 3,
        window: Duration::from_secs(10),
    };

    #[test]
    fn the_count_saturates_at_the_largest_limit_and_still_trips_it() {
        let limit = ViolationLimit {
            max: Violations::MAX_LIMIT,
            window: Duration::from_secs(10),
        };
        let mut violations = Violations::default();
        let late = u64::from(Violations::MAX_LIMIT) * 2;
        let tripped = (0..late).filter(|_| violations.record(limit, 7)).count();
        assert_eq!(tripped as u64, late - u64::from(Violations::MAX_LIMIT) + 1);
        assert!(
            !violations.record(limit, 10_007),
            "a new window starts over"
        );
    }

    #[test]
    fn the_violation_that_reaches_the_limit_within_the_window_trips() {
        let mut violations = Violations::default();
        assert!(!violations.record(VIOLATIONS, 1_000));
        assert!(!violations.record(VIOLATIONS, 5_000));
        assert!(violations.record(VIOLATIONS, 10_999), "third within 10 s");
        assert!(violations.record(VIOLATIONS, 10_999), "stays tripped");
    }

    #[test]
    fn occasional_violations_never_trip() {
        let mut violations = Violations::default();
        // Two a window, forever: each window starts afresh.
        for window in 0..1_000u64 {
            let start = window * 10_000;
            assert!(!violations.record(VIOLATIONS, start));
            assert!(!violations.record(VIOLATIONS, start + 9_999));
        }
    }

    #[test]
    fn a_window_closes_exactly_at_its_length() {
        let mut violations = Violations::default();
        assert!(!violations.record(VIOLATIONS, 0));
        assert!(!violations.record(VIOLATIONS, 9_999));
        assert!(
            !violations.record(VIOLATIONS, 10_000),
            "a new window opened"
        );
        assert!(!violations.record(VIOLATIONS, 10_001));
        assert!(violations.record(VIOLATIONS, 10_002));
    }

    #[test]
    fn a_limit_of_one_trips_on_the_first() {
        let one = ViolationLimit {
            max: 1,
            window: Duration::from_millis(1),
        };
        assert!(Violations::default().record(one, 0));
    }

    const RATE: RateLimit = RateLimit {
        per_second: 10,
        burst: 20,
    };

    #[test]
    fn allows_the_burst_then_refuses_with_retry_after() {
        let mut bucket = TokenBucket::new(RATE, 0);
        for _ in 0..20 {
            assert_eq!(bucket.try_take(0), Ok(()));
        }
        assert_eq!(bucket.try_take(0), Err(100));
        assert_eq!(bucket.try_take(40), Err(60));
    }

    #[test]
    fn refills_at_the_rate_and_caps_at_the_burst() {
        let mut bucket = TokenBucket::new(RATE, 0);
        for _ in 0..20 {
            bucket.try_take(0).unwrap();
        }
        assert_eq!(bucket.try_take(100), Ok(()), "one token after 100 ms");
        assert!(bucket.try_take(100).is_err());
        // A long pause refills to the burst, not beyond.
        for _ in 0..20 {
            assert_eq!(bucket.try_take(60_000), Ok(()));
        }
        assert!(bucket.try_take(60_000).is_err());
    }

    #[test]
    fn sustained_rate_is_exactly_the_limit() {
        let mut bucket = TokenBucket::new(RATE, 0);
        let accepted = (0..=10_000u64)
            .step_by(10)
            .filter(|&t| bucket.try_take(t).is_ok())
            .count();
        // 20 of burst plus 10 a second for 10 seconds.
        assert_eq!(accepted, 120);
    }
}
