//! [`NatsServer`]: a real `nats-server` child process on a free port, for the NATS broker's
//! conformance suite.

use crate::daemon::Daemon;
use crate::free_port;

/// A running nats-server (no JetStream, nothing persisted), killed on drop.
pub struct NatsServer(Daemon);

impl NatsServer {
    /// Starts nats-server on a free port and waits until it accepts connections.
    pub async fn start() -> Self {
        let port = free_port();
        let args = ["--addr", "127.0.0.1", "--port", &port.to_string()].map(String::from);
        Self(Daemon::start("nats-server", port, args.to_vec()).await)
    }

    /// The URL nodes use.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.0.port)
    }

    /// Kills the server, as a crash would, and waits until it has exited.
    pub async fn stop(&mut self) {
        self.0.stop().await;
    }

    /// Starts the server again on the same port and waits until it accepts connections.
    pub async fn restart(&mut self) {
        self.0.restart().await;
    }
}
