//! The standalone server: binds the listener, accepts connections (completing the TLS
//! handshake first when TLS is configured) and serves each with hyper (HTTP/1.1 with upgrades)
//! over the [`Switchboard`] router, and shuts down gracefully.
//!
//! Shutdown: stop accepting, close every WebSocket with 1001 (after flushing what is queued
//! for it), let HTTP connections finish their request, and wait for all of it at most the
//! configured deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::config::{Config, ServerConfig};
use crate::hub::Hub;
use crate::per_ip::{self, IpSlot, PerIpLimit};
use crate::switchboard::Switchboard;

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
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    config: ServerConfig,
    switchboard: Switchboard,
}

impl Server {
    /// Binds the listener and builds the hub. Must be called inside a tokio runtime.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        let address = format!("{}:{}", config.server.host, config.server.port);
        let listener = listen(&address)
            .await
            .map_err(|source| ServerError::Bind { address, source })?;
        let mut builder = Switchboard::builder(config.hub)
            .api(config.api)
            .auth(config.auth);
        if let Some(cluster) = &config.cluster {
            builder = builder.redis(cluster)?;
            tracing::info!(prefix = %cluster.prefix, "cluster mode over Redis");
        }
        let switchboard = builder.build();
        Ok(Self {
            listener,
            config: config.server,
            switchboard,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], self.config.port)))
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
            config,
            switchboard,
        } = self;
        let router = switchboard.router();
        let cancel = switchboard.cancel_token().clone();
        let tasks = switchboard.tasks().clone();
        tracing::info!(
            address = %listener.local_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string()),
            node = %switchboard.hub().node_id(),
            tls = config.tls.is_some(),
            "switchboard listening"
        );
        tokio::pin!(shutdown);
        let per_ip = config.max_connections_per_ip.map(PerIpLimit::new);
        let mut accept_errors = 0u32;
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => {
                        accept_errors = 0;
                        accepted
                    }
                    Err(error) => {
                        // Out of file descriptors or memory: back off instead of spinning.
                        if accept_errors == 0 {
                            tracing::warn!(%error, "accept failed");
                        }
                        accept_errors = accept_errors.saturating_add(1);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let slot = match &per_ip {
                None => None,
                Some(limit) => match limit.try_acquire(peer.ip()) {
                    Some(slot) => Some(slot),
                    None => {
                        tracing::debug!(%peer, "refused: too many connections from the address");
                        tasks.spawn(per_ip::refuse(stream));
                        continue;
                    }
                },
            };
            let service = WithSlot {
                inner: TowerToHyperService::new(router.clone()),
                slot,
            };
            let cancel = cancel.clone();
            let handshake_timeout = config.handshake_timeout;
            // Latency matters more than packet count for a message server.
            let _ = stream.set_nodelay(true);
            match &config.tls {
                None => tasks.spawn(serve_http(stream, service, handshake_timeout, cancel)),
                Some(tls) => {
                    let acceptor = tls.acceptor().clone();
                    tasks.spawn(async move {
                        let handshake = acceptor.accept(stream);
                        let stream = tokio::select! {
                            result = tokio::time::timeout(handshake_timeout, handshake) => match result {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(error)) => {
                                    tracing::debug!(%error, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!("TLS handshake timed out");
                                    return;
                                }
                            },
                            () = cancel.cancelled() => return,
                        };
                        serve_http(stream, service, handshake_timeout, cancel).await;
                    })
                }
            };
        }
        drop(listener);
        tracing::info!("shutting down");
        let clean = switchboard.shutdown(config.shutdown_timeout).await;
        if clean {
            tracing::info!("shutdown complete");
        } else {
            tracing::warn!(
                deadline = ?config.shutdown_timeout,
                "shutdown deadline passed with connections still open"
            );
        }
        clean
    }
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

/// The router's service for one HTTP connection, which hands the connection's [`IpSlot`] to
/// every request (a WebSocket upgrade keeps it for the WebSocket's life).
struct WithSlot {
    inner: TowerToHyperService<axum::Router>,
    slot: Option<IpSlot>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for WithSlot {
    type Response = <TowerToHyperService<axum::Router> as hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
    >>::Response;
    type Error = <TowerToHyperService<axum::Router> as hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
    >>::Error;
    type Future = <TowerToHyperService<axum::Router> as hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
    >>::Future;

    fn call(&self, mut request: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        if let Some(slot) = &self.slot {
            request.extensions_mut().insert(slot.clone());
        }
        self.inner.call(request)
    }
}

/// Serves HTTP/1.1 (with upgrades) on `stream`, a plain socket or a TLS stream over one.
async fn serve_http<S>(
    stream: S,
    service: WithSlot,
    handshake_timeout: Duration,
    cancel: tokio_util::sync::CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout)
        .max_buf_size(MAX_REQUEST_HEAD)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
