//! [`RedisServer`]: a real `redis-server` child process on a free port, for cluster tests and
//! the Redis broker's conformance suite. A missing `redis-server` fails the test loudly
//! (`.ci/run` installs it): never a silent skip.
//!
//! Uses no `switchboard` type: the server crate's unit tests reach this module through a
//! dev-dependency cycle, with a distinct copy of the server crate's types.

use std::net::{Ipv4Addr, TcpListener};

use crate::daemon::Daemon;

/// A port that was free a moment ago on 127.0.0.1, for a child process to listen on.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A running redis-server that persists nothing and is killed on drop.
pub struct RedisServer(Daemon);

impl RedisServer {
    /// Starts redis-server on a free port and waits until it accepts connections.
    pub async fn start() -> Self {
        let port = free_port();
        let args = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(String::from);
        Self(Daemon::start("redis-server", port, args.to_vec()).await)
    }

    /// The URL nodes use.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.0.port)
    }

    /// Kills the server, as a crash would, and waits until it has exited.
    pub async fn stop(&mut self) {
        self.0.stop().await;
    }

    /// Starts the server again on the same port (empty, like a restarted cache) and waits
    /// until it accepts connections.
    pub async fn restart(&mut self) {
        self.0.restart().await;
    }
}
