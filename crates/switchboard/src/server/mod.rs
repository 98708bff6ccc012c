//! The standalone server: binds the listener (and the admin listener with `--admin-port`),
//! accepts connections (completing the TLS handshake first when TLS is configured) and serves
//! each with hyper (HTTP/1.1 with upgrades) over the [`Switchboard`] router, and shuts down
//! gracefully. With an admin listener the public one serves [`Switchboard::public_router`] and
//! the admin one [`Switchboard::admin_router`], with the same TLS and without the per-IP cap.
//!
//! Shutdown: close every WebSocket with 1001 (after flushing what is queued for it), let HTTP
//! connections finish their request, and wait for all of it at most the configured deadline.
//! Meanwhile the listeners stay open: `/ready` answers 503 "draining" and a WebSocket upgrade
//! 503, so balancers and probes see a draining node rather than a vanished one; they close
//! when the drain ends.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ServerConfig};
use crate::docstore::DirDocs;
use crate::hub::Hub;
use crate::per_ip::PerIpLimit;
use crate::reload::Reloader;
use crate::switchboard::Switchboard;
use intake::Intake;

mod intake;

/// Largest HTTP request head accepted (request line and headers).
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Cluster mode could not be set up.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address, as configured.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The data directory could not be opened.
    #[error("cannot use data_dir {path}: {source}")]
    DataDir {
        /// The directory, as configured.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    /// The admin routes' own listener (`--admin-port`).
    admin_listener: Option<TcpListener>,
    config: ServerConfig,
    reloader: Reloader,
    switchboard: Switchboard,
}

impl Server {
    /// Binds the listener and builds the hub. Must be called inside a tokio runtime.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        let address = format!("{}:{}", config.server.host, config.server.port);
        let listener = listen(&address)
            .await
            .map_err(|source| ServerError::Bind { address, source })?;
        let admin_listener = match config.server.admin_port {
            None => None,
            Some(port) => {
                let address = format!("{}:{port}", config.server.host);
                let listener = listen(&address)
                    .await
                    .map_err(|source| ServerError::Bind { address, source })?;
                Some(listener)
            }
        };
        let reloader = Reloader::new(config.server.tls.clone(), config.auth.jwt.clone());
        let mut builder = Switchboard::builder(config.hub)
            .api(config.api)
            .auth(config.auth);
        if let (Some(path), Some(_)) = (&config.server.data_dir, &config.cluster) {
            tracing::warn!(path = %path.display(), "data_dir is not used in cluster mode: documents live in Redis");
        }
        if let (Some(path), None) = (&config.server.data_dir, &config.cluster) {
            let documents = DirDocs::open(path).map_err(|source| ServerError::DataDir {
                path: path.clone(),
                source,
            })?;
            builder = builder.documents(Box::new(documents));
        }
        if let Some(cluster) = &config.cluster {
            builder = builder.redis(cluster)?;
            match &cluster.broker {
                None => tracing::info!(prefix = %cluster.prefix, "cluster mode over Redis"),
                Some(broker) => tracing::info!(
                    prefix = %cluster.prefix,
                    broker = broker.name(),
                    "cluster mode: Redis as the state store, publications through the broker"
                ),
            }
        }
        if let Some(webhooks) = config.webhooks {
            tracing::info!(endpoints = webhooks.urls.len(), "webhooks on");
            builder = builder.webhooks(webhooks);
        }
        if let Some(proxy) = config.proxy {
            tracing::info!(timeout = ?proxy.timeout, "backend proxies on");
            builder = builder.proxy(proxy);
        }
        let switchboard = builder.build();
        Ok(Self {
            listener,
            admin_listener,
            config: config.server,
            reloader,
            switchboard,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], self.config.port)))
    }

    /// The address of the admin listener, when there is one (`--admin-port`).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// What reloads this server's TLS certificate and JWT public key files.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The hub.
    pub fn hub(&self) -> &Hub {
        self.switchboard.hub()
    }

    /// Serves until `shutdown` completes, then shuts down gracefully. Returns whether every
    /// connection closed within the deadline.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> bool {
        let Self {
            listener,
            admin_listener,
            config,
            switchboard,
            reloader: _,
        } = self;
        if let Some(admin) = &admin_listener {
            tracing::info!(
                address = %admin.local_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string()),
                "admin routes listening (/api, /metrics, /stats, /dashboard)"
            );
        }
        tracing::info!(
            address = %listener.local_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string()),
            node = %switchboard.hub().node_id(),
            tls = config.tls.is_some(),
            "switchboard listening"
        );
        let proxies = Arc::new(config.trusted_proxies.clone());
        let intake = |router, per_ip, direct| Intake {
            router,
            direct,
            proxies: proxies.clone(),
            tasks: switchboard.tasks().clone(),
            cancel: switchboard.cancel_token().clone(),
            per_ip,
            tls: config.tls.as_ref().map(|tls| tls.acceptor().clone()),
            handshake_timeout: config.handshake_timeout,
            proxy_protocol: config.proxy_protocol,
        };
        let per_ip = config.max_connections_per_ip.map(PerIpLimit::new);
        let (public, admin) = match &admin_listener {
            None => (
                intake(switchboard.router(), per_ip, Some(switchboard.state())),
                None,
            ),
            Some(_) => (
                intake(
                    switchboard.public_router(),
                    per_ip,
                    Some(switchboard.state()),
                ),
                Some(intake(switchboard.admin_router(), None, None)),
            ),
        };
        tokio::pin!(shutdown);
        let (mut accept_errors, mut admin_errors) = (0, 0);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                (stream, peer) = accept(&listener, &mut accept_errors) => public.admit(stream, peer),
                (stream, peer) = accept_if(admin_listener.as_ref(), &mut admin_errors) => {
                    if let Some(admin) = &admin {
                        admin.admit(stream, peer);
                    }
                }
            }
        }
        // Draining: the listeners stay open so that probes and operators get answers (`/ready`
        // 503 "draining", `/health`, `/metrics`, `/stats`) and new WebSocket clients a 503
        // instead of a refused connection; these connections have their own tracker and token,
        // so the drain does not wait for them, and end with it.
        let drain = Drain::default();
        let (public, admin) = (
            drain.intake(&public),
            admin.as_ref().map(|a| drain.intake(a)),
        );
        let shutdown = shut_down(&switchboard, config.shutdown_timeout);
        tokio::pin!(shutdown);
        let clean = loop {
            tokio::select! {
                clean = &mut shutdown => break clean,
                (stream, peer) = accept(&listener, &mut accept_errors) => public.admit(stream, peer),
                (stream, peer) = accept_if(admin_listener.as_ref(), &mut admin_errors) => {
                    if let Some(admin) = &admin {
                        admin.admit(stream, peer);
                    }
                }
            }
        };
        drop(admin_listener);
        drop(listener);
        drain.end().await;
        clean
    }
}

/// The HTTP connections accepted while the instance drains.
#[derive(Default)]
struct Drain {
    /// Their tasks, apart from the instance's: the drain waits only for its connections.
    tasks: TaskTracker,
    /// Cancelled when the drain ends: pending requests finish, then the connections close.
    cancel: CancellationToken,
}

impl Drain {
    /// Most time a request accepted during the drain gets to finish after it.
    const GRACE: Duration = Duration::from_secs(1);

    /// `intake` serving on the drain's tracker and token.
    fn intake(&self, intake: &Intake) -> Intake {
        Intake {
            tasks: self.tasks.clone(),
            cancel: self.cancel.clone(),
            ..intake.clone()
        }
    }

    /// Closes the connections accepted during the drain, waiting at most [`Self::GRACE`].
    async fn end(self) {
        self.cancel.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Self::GRACE, self.tasks.wait()).await;
    }
}

/// The next connection. An error (out of file descriptors or memory) is logged once per run
/// of errors and retried after a pause instead of spinning.
async fn accept(listener: &TcpListener, errors: &mut u32) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                *errors = 0;
                return accepted;
            }
            Err(error) => {
                if *errors == 0 {
                    tracing::warn!(%error, "accept failed");
                }
                *errors = errors.saturating_add(1);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The next connection on `listener`; never, without one.
async fn accept_if(listener: Option<&TcpListener>, errors: &mut u32) -> (TcpStream, SocketAddr) {
    match listener {
        Some(listener) => accept(listener, errors).await,
        None => std::future::pending().await,
    }
}

/// Closes every connection (1001 for WebSockets, after what is queued for them) and waits for
/// all of them at most `deadline`; returns whether they all finished.
async fn shut_down(switchboard: &Switchboard, deadline: Duration) -> bool {
    tracing::info!("shutting down");
    let clean = switchboard.shutdown(deadline).await;
    if clean {
        tracing::info!("shutdown complete");
    } else {
        tracing::warn!(
            ?deadline,
            "shutdown deadline passed with connections still open"
        );
    }
    clean
}

/// Backlog of pending connections. `TcpListener::bind` uses 128, which overflows (SYN retries,
/// a second of delay) when hundreds of clients reconnect at once; the kernel caps this at
/// `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `address` (a host name or IP, and a port) with [`LISTEN_BACKLOG`].
async fn listen(address: &str) -> std::io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(address).await? {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the host resolves to no address",
        )
    }))
}
