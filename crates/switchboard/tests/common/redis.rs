//! A real `redis-server` child process on a free port, for cluster tests. A missing
//! `redis-server` fails the test loudly (`.ci/run` installs it): never a silent skip.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server that is killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts redis-server on a free port, persisting nothing.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self { port, child: None };
        server.restart();
        server
    }

    /// The URL nodes use.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty, like a restarted cache).
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for cluster tests (.ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts an in-process node that joins the cluster on `redis` as `name` (with whatever else
/// `configure` sets) and waits until its broker is connected and settled.
pub async fn cluster_node(
    redis: &RedisServer,
    name: &str,
    configure: impl FnOnce(&mut switchboard::config::RawSettings),
) -> super::TestServer {
    let url = redis.url();
    let server = super::TestServer::with(|s| {
        s.redis_url = Some(url);
        s.node_id = Some(name.into());
        configure(s);
    })
    .await;
    settled(&server).await;
    server
}

/// Waits until the node's broker is connected and every subscription is in effect.
pub async fn settled(server: &super::TestServer) {
    super::wait_until("the broker is connected and settled", || {
        let stats = server.hub.stats();
        stats.broker_status == switchboard::broker::BrokerStatus::Connected && stats.broker_settled
    })
    .await;
}
