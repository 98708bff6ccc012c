//! [`RedisServer`]: a real `redis-server` child process on a free port, for cluster tests and
//! the Redis broker's conformance suite. A missing `redis-server` fails the test loudly
//! (`.ci/run` installs it): never a silent skip.
//!
//! Uses no `switchboard` type: the server crate's unit tests reach this module through a
//! dev-dependency cycle, with a distinct copy of the server crate's types.

use std::net::{Ipv4Addr, TcpListener};

use crate::TestPki;
use crate::daemon::Daemon;

/// A port that was free a moment ago on 127.0.0.1, for a child process to listen on.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A running redis-server that persists nothing and is killed on drop.
pub struct RedisServer {
    daemon: Daemon,
    /// `redis://` or, with TLS, `rediss://`, and the password if one is required.
    scheme: &'static str,
    password: Option<String>,
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it accepts connections.
    pub async fn start() -> Self {
        let port = free_port();
        let daemon = Daemon::start("redis-server", port, base_args(port, "--port")).await;
        Self {
            daemon,
            scheme: "redis",
            password: None,
        }
    }

    /// Starts redis-server accepting only TLS, with the certificate of `pki`, and requiring
    /// `password`.
    pub async fn start_tls(pki: &TestPki, password: &str) -> Self {
        let port = free_port();
        let mut args = base_args(port, "--tls-port");
        let cert = pki.cert.display().to_string();
        let key = pki.key.display().to_string();
        args.extend(
            [
                "--port",
                "0",
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &cert,
                "--tls-auth-clients",
                "no",
                "--requirepass",
                password,
            ]
            .map(String::from),
        );
        let daemon = Daemon::start("redis-server", port, args).await;
        Self {
            daemon,
            scheme: "rediss",
            password: Some(password.to_owned()),
        }
    }

    /// The URL nodes use, with the password when there is one.
    pub fn url(&self) -> String {
        let credentials = self
            .password
            .as_ref()
            .map(|password| format!(":{password}@"))
            .unwrap_or_default();
        format!(
            "{}://{credentials}127.0.0.1:{}",
            self.scheme, self.daemon.port
        )
    }

    /// Kills the server, as a crash would, and waits until it has exited.
    pub async fn stop(&mut self) {
        self.daemon.stop().await;
    }

    /// Freezes the server (SIGSTOP), as a hung machine would: connections stay open and
    /// nothing is answered until [`RedisServer::resume`].
    pub fn pause(&self) {
        self.daemon.signal("STOP");
    }

    /// Lets a paused server go on where it stopped.
    pub fn resume(&self) {
        self.daemon.signal("CONT");
    }

    /// Starts the server again on the same port (empty, like a restarted cache) and waits
    /// until it accepts connections.
    pub async fn restart(&mut self) {
        self.daemon.restart().await;
    }
}

/// Arguments of a redis-server that listens on 127.0.0.1:`port` (given with `port_flag`) and
/// persists nothing.
pub(crate) fn base_args(port: u16, port_flag: &str) -> Vec<String> {
    [
        port_flag,
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(String::from)
    .to_vec()
}
