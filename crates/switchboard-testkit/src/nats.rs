//! [`NatsServer`]: a real `nats-server` child process on a free port, for the NATS broker's
//! conformance suite. A missing `nats-server` fails the test loudly (`.ci/run` installs it):
//! never a silent skip.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};

use crate::{free_port, wait_for_port};

/// A running nats-server (no JetStream, nothing persisted), killed on drop.
pub struct NatsServer {
    port: u16,
    /// `None` while stopped.
    child: Option<Child>,
}

impl NatsServer {
    /// Starts nats-server on a free port and waits until it accepts connections.
    pub async fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
        };
        server.restart().await;
        server
    }

    /// Kills the server, as a crash would, and waits until it has exited.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            tokio::task::spawn_blocking(move || {
                let _ = child.kill();
                let _ = child.wait();
            })
            .await
            .expect("stop nats-server");
        }
    }

    /// Starts the server again on the same port and waits until it accepts connections.
    pub async fn restart(&mut self) {
        self.stop().await;
        let child = Command::new("nats-server")
            .args(["--addr", "127.0.0.1", "--port", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed for the NATS tests (.ci/run installs it)");
        self.child = Some(child);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        wait_for_port("nats-server listens", addr).await;
    }

    /// The URL nodes use.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
