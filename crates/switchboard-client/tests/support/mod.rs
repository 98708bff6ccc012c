//! What only the client's tests need on top of `switchboard-testkit`: a client configuration
//! tuned for tests.

use std::time::Duration;

use switchboard_client::{ClientConfig, Reconnect};

/// A client configuration for tests: fast reconnects, heartbeat off unless asked.
pub(crate) fn config(url: &str, user: &str) -> ClientConfig {
    ClientConfig::new(url)
        .with_user_id(user)
        .with_reconnect(Reconnect {
            base: Duration::from_millis(20),
            max: Duration::from_millis(200),
            ..Reconnect::default()
        })
        .with_heartbeat(None)
}
