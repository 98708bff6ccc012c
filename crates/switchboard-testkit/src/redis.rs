//! [`RedisServer`]: a real `redis-server` child process on a free port, for cluster tests and
//! the Redis broker's conformance suite. A missing `redis-server` fails the test loudly
//! (`.ci/run` installs it): never a silent skip.
//!
//! Uses no `switchboard` type: the server crate's unit tests reach this module through a
//! dev-dependency cycle, with a distinct copy of the server crate's types.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};

use crate::wait_for_port;

/// A port that was free a moment ago on 127.0.0.1, for a child process to listen on.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A running redis-server that persists nothing and is killed on drop.
pub struct RedisServer {
    port: u16,
    /// `None` while stopped.
    child: Option<Child>,
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it accepts connections.
    pub async fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
        };
        server.restart().await;
        server
    }

    /// The URL nodes use.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server, as a crash would, and waits until it has exited.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The wait is short after SIGKILL, but a blocking call all the same: off the
            // runtime's thread, which may be running the nodes under test.
            tokio::task::spawn_blocking(move || {
                let _ = child.kill();
                let _ = child.wait();
            })
            .await
            .expect("stop redis-server");
        }
    }

    /// Starts the server again on the same port (empty, like a restarted cache) and waits
    /// until it accepts connections.
    pub async fn restart(&mut self) {
        self.stop().await;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for cluster tests (.ci/run installs it)");
        self.child = Some(child);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        wait_for_port("redis-server listens", addr).await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
