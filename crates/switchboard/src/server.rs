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
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{Either, Ready, ready};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ServerConfig};
use crate::connection::Prefixed;
use crate::docstore::DirDocs;
use crate::forwarded::{ClientAddr, TrustedProxies};
use crate::http::head::Head;
use crate::http::{self, Answer, AppState};
use crate::hub::Hub;
use crate::per_ip::{self, IpSlot, PerIpLimit};
use crate::proxy_protocol;
use crate::reload::Reloader;
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

/// What every accepted connection is served with.
#[derive(Clone)]
struct Intake {
    router: axum::Router,
    /// The state the router serves, when its listener serves the WebSocket endpoint: plain
    /// connections' upgrades to `/` and `/ws` are then answered without hyper
    /// ([`http::head`]).
    direct: Option<AppState>,
    /// The instance's tracker: shutdown waits for every connection task spawned on it.
    tasks: TaskTracker,
    /// The instance's shutdown token.
    cancel: CancellationToken,
    per_ip: Option<PerIpLimit>,
    /// Peers whose forwarding headers give the client address.
    proxies: Arc<TrustedProxies>,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    /// Whether connections from the trusted proxies start with a PROXY protocol header.
    proxy_protocol: bool,
}

impl Intake {
    /// Admits a connection; one from a trusted proxy with `--proxy-protocol` first gives its
    /// client's address in a PROXY header (read within the handshake timeout, on the
    /// connection's own task), and is then admitted as that client's.
    fn admit(&self, mut stream: TcpStream, peer: SocketAddr) {
        if !(self.proxy_protocol && self.proxies.contains(peer.ip())) {
            return self.admit_from(stream, peer);
        }
        let intake = self.clone();
        self.tasks.spawn(async move {
            let header = tokio::time::timeout(
                intake.handshake_timeout,
                proxy_protocol::read_header(&mut stream),
            );
            let client = tokio::select! {
                read = header => read,
                () = intake.cancel.cancelled() => return,
            };
            match client {
                Ok(Ok(client)) => {
                    // No address (the proxy's own health check): the proxy is the client.
                    let client = client.unwrap_or(peer);
                    tracing::debug!(proxy = %peer, %client, "PROXY header");
                    intake.admit_from(stream, client);
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "refused: bad PROXY header"),
                Err(_) => tracing::debug!(%peer, "refused: no PROXY header in time"),
            }
        });
    }

    /// Takes the slot of a connection from `peer` under the per-IP cap (or refuses it with 429)
    /// and spawns the task that serves it. A connection from a trusted proxy carries many clients: each of
    /// its requests takes the slot of the client it names instead ([`WithSlot`]).
    fn admit_from(&self, stream: TcpStream, peer: SocketAddr) {
        let proxied = self.proxies.contains(peer.ip());
        let slot = match &self.per_ip {
            Some(limit) if !proxied => match limit.try_acquire(peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!(%peer, "refused: too many connections from the address");
                    self.tasks.spawn(per_ip::refuse(stream));
                    return;
                }
            },
            _ => None,
        };
        let forwarded = proxied.then(|| Forwarded {
            proxy: peer.ip(),
            proxies: self.proxies.clone(),
            per_ip: self.per_ip.clone(),
        });
        // Latency matters more than packet count for a message server.
        let _ = stream.set_nodelay(true);
        let http = Http {
            service: WithSlot {
                inner: TowerToHyperService::new(self.router.clone()),
                peer: peer.ip(),
                slot,
                forwarded,
            },
            handshake_timeout: self.handshake_timeout,
            cancel: self.cancel.clone(),
        };
        match (&self.tls, &self.direct) {
            (None, None) => self.tasks.spawn(http.serve(stream)),
            (None, Some(state)) => self.tasks.spawn(http.serve_direct(state.clone(), stream)),
            (Some(acceptor), _) => self.tasks.spawn(http.serve_tls(acceptor.clone(), stream)),
        };
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
/// every request (a WebSocket upgrade keeps it for the WebSocket's life). On a connection from
/// a trusted proxy each request takes the slot of the client its headers name, or is refused
/// with 429 when that client is at the cap.
struct WithSlot {
    inner: TowerToHyperService<axum::Router>,
    /// The TCP peer's address.
    peer: IpAddr,
    slot: Option<IpSlot>,
    /// Set when the peer is a trusted proxy.
    forwarded: Option<Forwarded>,
}

/// A connection from a trusted proxy.
struct Forwarded {
    proxy: IpAddr,
    proxies: Arc<TrustedProxies>,
    per_ip: Option<PerIpLimit>,
}

type HyperRequest = hyper::Request<hyper::body::Incoming>;
type Inner = TowerToHyperService<axum::Router>;

impl hyper::service::Service<HyperRequest> for WithSlot {
    type Response = <Inner as hyper::service::Service<HyperRequest>>::Response;
    type Error = <Inner as hyper::service::Service<HyperRequest>>::Error;
    type Future = Either<
        Ready<Result<Self::Response, Self::Error>>,
        <Inner as hyper::service::Service<HyperRequest>>::Future,
    >;

    fn call(&self, mut request: HyperRequest) -> Self::Future {
        match self.tag(&mut request) {
            Ok(()) => Either::Right(self.inner.call(request)),
            Err(response) => Either::Left(ready(Ok(*response))),
        }
    }
}

impl WithSlot {
    /// Gives a request its client's address and [`IpSlot`], or the 429 that refuses it (a
    /// trusted proxy's client at the cap): for hyper's requests and for the upgrades the
    /// accept path answers itself alike.
    fn tag<B>(&self, request: &mut hyper::Request<B>) -> Result<(), Box<axum::response::Response>> {
        let client = match &self.forwarded {
            Some(forwarded) => forwarded.proxies.client(forwarded.proxy, request.headers()),
            None => self.peer,
        };
        request.extensions_mut().insert(ClientAddr(client));
        if let Some(forwarded) = &self.forwarded {
            tracing::debug!(proxy = %forwarded.proxy, %client, path = %request.uri().path(), "forwarded request");
            if let Some(limit) = &forwarded.per_ip {
                let Some(slot) = limit.try_acquire(client) else {
                    tracing::debug!(%client, "refused: too many connections from the address");
                    return Err(Box::new(per_ip::too_many()));
                };
                request.extensions_mut().insert(slot);
            }
        } else if let Some(slot) = &self.slot {
            request.extensions_mut().insert(slot.clone());
        }
        Ok(())
    }
}

/// One connection's HTTP service, and the limits it is served under.
struct Http {
    service: WithSlot,
    /// Time for the TLS handshake, and again for the request head.
    handshake_timeout: Duration,
    /// The instance's shutdown token: pending requests finish, then the connection closes.
    cancel: CancellationToken,
}

impl Http {
    /// Completes the TLS handshake within the handshake timeout, then serves HTTP over it.
    async fn serve_tls(self, acceptor: TlsAcceptor, stream: TcpStream) {
        let handshake = tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream));
        let stream = tokio::select! {
            result = handshake => match result {
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
            () = self.cancel.cancelled() => return,
        };
        self.serve(stream).await;
    }

    /// Reads the request head of a plain connection within the handshake timeout: a WebSocket
    /// upgrade to `/` or `/ws` is answered without hyper ([`http::answer`]); anything else,
    /// and what follows a refused upgrade on the same connection, is served by hyper with the
    /// bytes read put back in front.
    async fn serve_direct(self, state: AppState, stream: TcpStream) {
        let read = tokio::time::timeout(self.handshake_timeout, http::head::read(&stream));
        let head = tokio::select! {
            read = read => match read {
                Ok(head) => head,
                Err(_) => {
                    tracing::debug!("no request in time");
                    return;
                }
            },
            () = self.cancel.cancelled() => return,
        };
        let mut keep_alive = true;
        let (mut stream, replay, refusal) = match head {
            Head::Gone => return,
            Head::Other(read) => (stream, read, None),
            Head::Upgrade {
                mut request,
                read_ahead,
            } => {
                keep_alive = !http::head::asks_to_close(request.headers());
                let replay = read_ahead.clone().unwrap_or_default();
                if let Err(response) = self.service.tag(&mut request) {
                    (stream, replay, Some(*response))
                } else {
                    match http::answer(&state, stream, request, read_ahead).await {
                        Answer::Upgraded => return,
                        Answer::Refused(stream, response) => (stream, replay, Some(response)),
                    }
                }
            }
        };
        if let Some(response) = refusal {
            let written = write_response(&mut stream, response, keep_alive).await;
            if written.is_err() || !keep_alive {
                return;
            }
        }
        // Boxed: hyper's connection state would otherwise make every handshake's task (this
        // future) several times larger, allocated and moved for nothing.
        Box::pin(self.serve(Prefixed::new(replay, stream))).await;
    }

    /// Serves HTTP/1.1 (with upgrades) on `stream`, a plain socket or a TLS stream over one.
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.handshake_timeout)
            .max_buf_size(MAX_REQUEST_HEAD)
            .serve_connection(TokioIo::new(stream), self.service)
            .with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => {}
            () = self.cancel.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }
}

/// Writes a refusal the accept path decided itself, as hyper would: HTTP/1.1, and the
/// connection stays open for the client's next request unless the client asked to close it
/// (`keep_alive` false: the response says `connection: close`, and the stream is shut down).
async fn write_response(
    stream: &mut TcpStream,
    response: axum::response::Response,
    keep_alive: bool,
) -> std::io::Result<()> {
    use http_body_util::BodyExt as _;
    use tokio::io::AsyncWriteExt as _;

    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !parts
        .headers
        .contains_key(axum::http::header::CONTENT_LENGTH)
    {
        head.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    if !keep_alive {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(&body);
    stream.write_all(&head).await?;
    if !keep_alive {
        stream.shutdown().await?;
    }
    Ok(())
}
