//! What happens to an accepted connection before the router sees it: the PROXY header of a
//! trusted proxy, the per-IP cap, the TLS handshake, a WebSocket upgrade answered without
//! hyper ([`http::head`]), and hyper's HTTP/1.1 for everything else. The listeners, the accept
//! loop and shutdown are the parent's (`server/mod.rs`).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{Either, Ready, ready};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::MAX_REQUEST_HEAD;
use crate::connection::Prefixed;
use crate::forwarded::{ClientAddr, TrustedProxies};
use crate::http::head::Head;
use crate::http::{self, Answer, AppState, Opened};
use crate::per_ip::{self, IpSlot, PerIpLimit};
use crate::proxy_protocol;

/// What every accepted connection is served with.
#[derive(Clone)]
pub(super) struct Intake {
    pub(super) router: axum::Router,
    /// The state the router serves, when its listener serves the WebSocket endpoint: plain
    /// connections' upgrades to `/` and `/ws` are then answered without hyper
    /// ([`http::head`]).
    pub(super) direct: Option<AppState>,
    /// The instance's tracker: shutdown waits for every connection task spawned on it.
    pub(super) tasks: TaskTracker,
    /// The instance's shutdown token.
    pub(super) cancel: CancellationToken,
    pub(super) per_ip: Option<PerIpLimit>,
    /// Peers whose forwarding headers give the client address.
    pub(super) proxies: Arc<TrustedProxies>,
    pub(super) tls: Option<TlsAcceptor>,
    pub(super) handshake_timeout: Duration,
    /// Whether connections from the trusted proxies start with a PROXY protocol header.
    pub(super) proxy_protocol: bool,
}

impl Intake {
    /// Admits a connection; one from a trusted proxy with `--proxy-protocol` first gives its
    /// client's address in a PROXY header (read within the handshake timeout, on the
    /// connection's own task), and is then admitted as that client's.
    pub(super) fn admit(&self, mut stream: TcpStream, peer: SocketAddr) {
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
            (None, Some(state)) => self.tasks.spawn(Plain::Head(Box::pin(
                http.serve_direct(state.clone(), stream),
            ))),
            (Some(acceptor), _) => self.tasks.spawn(http.serve_tls(acceptor.clone(), stream)),
        };
    }
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
    /// upgrade to `/` or `/ws` is answered without hyper ([`http::answer`]) and the connection
    /// returned, for [`Plain`] to run; anything else, and what follows a refused upgrade on the
    /// same connection, is served by hyper with the bytes read put back in front.
    async fn serve_direct(self, state: AppState, mut stream: TcpStream) -> Option<Opened> {
        let read = tokio::time::timeout(self.handshake_timeout, http::head::read(&mut stream));
        let head = tokio::select! {
            read = read => match read {
                Ok(head) => head,
                Err(_) => {
                    tracing::debug!("no request in time");
                    return None;
                }
            },
            () = self.cancel.cancelled() => return None,
        };
        let mut keep_alive = true;
        let (mut stream, replay, refusal) = match head {
            Head::Gone => return None,
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
                        Answer::Upgraded(opened) => return Some(opened),
                        Answer::Refused(stream, response) => (stream, replay, Some(response)),
                    }
                }
            }
        };
        if let Some(response) = refusal {
            let written = write_response(&mut stream, response, keep_alive).await;
            if written.is_err() || !keep_alive {
                return None;
            }
        }
        // Boxed: hyper's connection state would otherwise make every handshake's head-reading
        // future several times larger, allocated and moved for nothing.
        Box::pin(self.serve(Prefixed::new(replay, stream))).await;
        None
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

/// A plain connection's task when the listener serves the WebSocket endpoint: the request
/// head is read (and anything but an upgrade served by hyper) in a boxed future, and the
/// WebSocket an upgrade opens then runs in this same task. One task per connection, not two:
/// no second spawn, no wake-up of another worker to run it, no move of the connection into a
/// new task. The head's state is boxed (and freed at the upgrade) so that an open
/// connection's task is no larger than the connection itself (the size difference between
/// the variants is the point: boxing the open connection would cost it an allocation).
#[allow(clippy::large_enum_variant)]
enum Plain {
    Head(Pin<Box<dyn Future<Output = Option<Opened>> + Send>>),
    Open(Opened),
}

impl Future for Plain {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match this {
                Self::Head(head) => match std::task::ready!(head.as_mut().poll(cx)) {
                    Some(opened) => *this = Self::Open(opened),
                    None => return Poll::Ready(()),
                },
                Self::Open(opened) => return Pin::new(opened).poll(cx),
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

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    /// An open connection's task holds the connection and nothing more: the state of the
    /// head's reading is boxed, so running the connection in the task that read its request
    /// does not grow an idle connection (`connection::tests::the_connection_task_stays_small`).
    #[test]
    fn a_plain_connection_s_task_is_its_connection() {
        assert_eq!(size_of::<super::Plain>(), size_of::<super::Opened>());
    }

    /// What is spawned for a plain connection, in tokio's task cell: tokio 1.54 adds a
    /// 32-byte header, the scheduler and task id (16), the stage's tag (8: `Stage` is
    /// `repr(C)`) and a 48-byte trailer, and aligns the cell to 128 bytes on x86-64. At most
    /// 152 bytes here (120 besides the socket, 32 bytes in a release build, 40 with debug
    /// assertions) make a 256-byte task; 8 more make it 384 (BENCHMARKS.md, "Idle memory").
    #[test]
    fn a_plain_connection_s_task_fits_in_256_bytes() {
        let spawned = size_of::<tokio_util::task::task_tracker::TrackedFuture<super::Plain>>()
            - size_of::<tokio::net::TcpStream>();
        assert!(
            spawned <= 120,
            "the spawned future grew to the socket and {spawned} bytes"
        );
    }
}
