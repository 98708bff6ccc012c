//! The token sweep: one pass over every open connection each [`TOKEN_SWEEP_PERIOD`] that warns
//! the clients whose token expires soon (`token_expiring`) and closes the connections whose
//! token expired more than the grace period ago (1008, "token expired").
//!
//! It owns no state: each connection's deadline sits in its handle (`TokenDeadline`), set by
//! the connection's session when it authenticates or refreshes. It runs only when
//! authentication is on, so a node without tokens pays nothing for it; a connection without a
//! token (deadline 0) is skipped. Times are wall-clock milliseconds, as `exp` is.

use std::time::Duration;

use super::{CloseRequest, Hub};
use crate::auth::TokenExpiry;
use crate::protocol::{CloseCode, ServerFrame, ServerKind, TokenExpiringPayload};

/// How often the sweep runs: `exp` has a granularity of one second, so a finer sweep would
/// gain nothing, and a coarser one would close connections late.
pub(super) const TOKEN_SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// How a connection whose token expired is closed: 1008, the auth-failure code (DESIGN.md §2),
/// after what is queued for it (the client may still read its last messages).
const TOKEN_EXPIRED: CloseRequest = CloseRequest {
    code: CloseCode::Policy,
    reason: std::borrow::Cow::Borrowed("token expired"),
    graceful: true,
};

/// What a token sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TokenReport {
    /// Connections sent `token_expiring`.
    pub(crate) warned: usize,
    /// Connections closed because their token expired.
    pub(crate) expired: usize,
}

impl Hub {
    /// Warns and closes connections by their token's expiry, at `now` (ms since the epoch).
    /// A document connection (`/yjs`) reads no JSON frames: it is closed without a warning.
    pub(crate) fn token_sweep(&self, expiry: &TokenExpiry, now: u64) -> TokenReport {
        let grace = expiry.grace.as_millis() as u64;
        let mut report = TokenReport::default();
        self.for_each_open(|handle| {
            let Some(expires_at) = handle.token_expires_at() else {
                return;
            };
            if now >= expires_at.saturating_add(grace) {
                if handle.close(TOKEN_EXPIRED, self.now_ms()) {
                    report.expired += 1;
                }
                return;
            }
            if !handle.take_token_warning(now) || !handle.speaks_json() {
                return;
            }
            // Read again: a refresh between the two reads set a later `exp`, announced here.
            let expires_at = handle.token_expires_at().unwrap_or(expires_at);
            let frame = ServerFrame::new(
                ServerKind::TokenExpiring,
                TokenExpiringPayload { expires_at },
            )
            .stamped()
            .encode();
            if self.deliver(handle, &frame) {
                report.warned += 1;
            }
        });
        report
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::broker::LocalBroker;
    use crate::cluster::NoPeers;
    use crate::config::Config;
    use crate::hub::TokenDeadline;
    use crate::ids::UserId;

    fn hub() -> Hub {
        Hub::new(
            Config::default().hub,
            Arc::new(LocalBroker::standalone()),
            Arc::new(NoPeers),
            None,
            Box::new(crate::docstore::MemoryDocs::default()),
        )
    }

    #[test]
    fn a_connection_is_warned_once_then_closed_after_the_grace() {
        let hub = hub();
        let expiry = TokenExpiry {
            warning: Duration::from_secs(60),
            grace: Duration::from_secs(5),
        };
        let alice = hub.register(UserId::from_trusted("alice")).unwrap();
        let bob = hub.register(UserId::from_trusted("bob")).unwrap();
        alice.set_token_deadline(TokenDeadline {
            expires_at: 100_000,
            warn_at: 40_000,
        });
        let quiet = TokenReport::default();
        assert_eq!(hub.token_sweep(&expiry, 39_999), quiet);
        let warned = hub.token_sweep(&expiry, 40_000);
        assert_eq!((warned.warned, warned.expired), (1, 0));
        assert_eq!(hub.token_sweep(&expiry, 104_999), quiet);
        assert!(alice.closing_since().is_none());
        let closed = hub.token_sweep(&expiry, 105_000);
        assert_eq!((closed.warned, closed.expired), (0, 1));
        assert!(alice.closing_since().is_some());
        assert!(bob.closing_since().is_none(), "no token, no expiry");
    }

    #[test]
    fn a_new_deadline_replaces_the_old_one_and_warns_again() {
        let hub = hub();
        let expiry = TokenExpiry::default();
        let alice = hub.register(UserId::from_trusted("alice")).unwrap();
        alice.set_token_deadline(TokenDeadline {
            expires_at: 100_000,
            warn_at: 40_000,
        });
        assert_eq!(hub.token_sweep(&expiry, 50_000).warned, 1);
        alice.set_token_deadline(TokenDeadline {
            expires_at: 500_000,
            warn_at: 440_000,
        });
        assert_eq!(hub.token_sweep(&expiry, 200_000), TokenReport::default());
        assert_eq!(hub.token_sweep(&expiry, 440_000).warned, 1);
        assert!(alice.closing_since().is_none());
    }
}
