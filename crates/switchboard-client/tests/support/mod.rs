//! Harness for the client's tests: a real Switchboard server in this process (restartable on
//! the same port, optionally with TLS), fake servers that misbehave, and waiting for events.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use switchboard::config::RawSettings;
use switchboard::{Config, Hub, Server};
use switchboard_client::rustls::{self, RootCertStore};
use switchboard_client::{ClientConfig, Event, Events, Heartbeat, Reconnect};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound for any single expected event.
pub const WAIT: Duration = Duration::from_secs(10);

/// A Switchboard server running in this process.
pub struct Node {
    pub addr: SocketAddr,
    pub hub: Hub,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<bool>>,
}

impl Node {
    /// A server on 127.0.0.1:`port` (0: any), settings adjusted by `configure`; `before_run`
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
        let server = Server::bind(Config::from_settings(raw).unwrap())
            .await
            .unwrap();
        let addr = server.local_addr();
        let hub = server.hub().clone();
        before_run(&hub);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            hub,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn start() -> Self {
        Self::start_with(0, |_| {}, |_| {}).await
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Graceful shutdown (clients get close 1001); waits until the port is free.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().unwrap().await.unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A client configuration for tests: fast reconnects, heartbeat off unless asked.
pub fn config(url: &str, user: &str) -> ClientConfig {
    ClientConfig::new(url)
        .with_user_id(user)
        .with_reconnect(Reconnect {
            base: Duration::from_millis(20),
            max: Duration::from_millis(200),
            ..Reconnect::default()
        })
        .with_heartbeat(None)
}

/// A heartbeat fast enough for tests.
pub fn fast_heartbeat() -> Option<Heartbeat> {
    Some(Heartbeat {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(300),
    })
}

/// The next event matching `wanted`, skipping others; panics after `WAIT` or if the events end.
pub async fn next_matching(
    events: &mut Events,
    what: &str,
    mut wanted: impl FnMut(&Event) -> bool,
) -> Event {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("events ended");
            if wanted(&event) {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits until `condition` holds, checking every 10 ms, at most `WAIT` (for server-side
/// state that no client event announces).
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A self-signed certificate for `localhost`, as PEM files, and a client TLS configuration
/// that trusts it.
pub struct TestPki {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client: Arc<rustls::ClientConfig>,
}

impl TestPki {
    pub fn generate() -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "switchboard-client-tls-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(certified.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        Self {
            dir,
            cert,
            key,
            client,
        }
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
