//! [`TestServer`]: a real Switchboard server in the test's process, on 127.0.0.1 and an
//! ephemeral port unless a test needs a fixed one (to restart on the same port).

use std::net::SocketAddr;

use serde_json::Value;
use switchboard::config::RawSettings;
use switchboard::{Config, Hub, Server};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{Client, WAIT, http_get};

/// A server running in this process. Dropping it starts a graceful shutdown without waiting
/// for it; [`TestServer::shutdown`] waits.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its admin listener listens (`admin_port` set), if it has one.
    pub admin_addr: Option<SocketAddr>,
    /// Its hub, to drive it as a library user would and to read its state.
    pub hub: Hub,
    /// Ends the server's `run_until`; the server task holds the receiver.
    stop: Option<oneshot::Sender<()>>,
    /// The server task; yields whether the shutdown was clean.
    task: Option<JoinHandle<bool>>,
}

impl TestServer {
    /// Starts a server with default settings.
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    /// Starts a server on an ephemeral port with settings adjusted by `configure`.
    pub async fn with(configure: impl FnOnce(&mut RawSettings)) -> Self {
        Self::start_with(0, configure, |_| {}).await
    }

    /// Starts a server on `port` (0: any) with settings adjusted by `configure`; `before_run`
    /// sees the hub before the first connection is accepted.
    pub async fn start_with(
        port: u16,
        configure: impl FnOnce(&mut RawSettings),
        before_run: impl FnOnce(&Hub),
    ) -> Self {
        let mut raw = RawSettings {
            host: Some("127.0.0.1".into()),
            port: Some(port),
            ..RawSettings::default()
        };
        configure(&mut raw);
        let config = Config::from_settings(raw).expect("valid test config");
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr();
        let admin_addr = server.admin_addr();
        let hub = server.hub().clone();
        before_run(&hub);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            admin_addr,
            hub,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `ws://` URL of `path_and_query` on this server.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    /// Connects `user` on `/`.
    pub async fn connect(&self, user: &str) -> Client {
        Client::connect(&self.url(&format!("/?userId={user}"))).await
    }

    /// Connects `user` and joins `room`, consuming `connect` and `room_joined`.
    pub async fn member(&self, user: &str, room: &str) -> Client {
        let mut client = self.connect(user).await;
        client.join(room).await;
        client
    }

    /// Connects `user` with the project's Rust client (`switchboard-client`), for tests of
    /// well-behaved clients; waits for the connection.
    pub async fn client(
        &self,
        user: &str,
    ) -> (switchboard_client::Client, switchboard_client::Events) {
        let config =
            switchboard_client::ClientConfig::new(format!("ws://{}", self.addr)).with_user_id(user);
        tokio::time::timeout(WAIT, switchboard_client::Client::connect(config))
            .await
            .expect("client connect timed out")
            .expect("client connect failed")
    }

    /// Triggers graceful shutdown (clients get close 1001) and waits until the server has
    /// stopped and released its port; returns whether the shutdown was clean.
    pub async fn shutdown(mut self) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self
            .task
            .take()
            .expect("the server task is there until shutdown");
        task.await.expect("the server task panicked")
    }

    /// Fetches `/stats` as JSON.
    pub async fn stats(&self) -> Value {
        let (status, body) = http_get(self.addr, "/stats").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("/stats is JSON")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
