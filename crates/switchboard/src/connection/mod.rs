//! One WebSocket connection after the upgrade: authentication when the token comes in an
//! `auth` frame, admission, the session (protocol state and message handling: protocol v1, or
//! y-websocket on a document connection) and the driver (the task that does the connection's
//! I/O); and SSE connections (`sse`), the same session behind an event stream and POSTs.

mod authenticate;
mod dedup;
mod driver;
mod refused;
mod session;
pub(crate) mod sse;
#[cfg(test)]
mod testing;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::auth::{Grants, Identity, JwtConfig, TokenExpiry};
use crate::handlers::Extensions;
use crate::hub::{Hub, TokenDeadline, Wire};
use crate::ids::{DocId, UserId};
use crate::protocol::ParseLimits;
use crate::ws::deflate::Deflate;
pub(crate) use authenticate::{Pending, Verifier, authenticate};
use session::Session;
pub(crate) use sse::{PostError, SseLinks};

/// What every connection of one instance shares: the hub, the application's handlers and
/// hooks, and how tokens are verified and expire (fixed when the instance is built).
pub(crate) struct Endpoint {
    pub(crate) hub: Hub,
    pub(crate) extensions: Extensions,
    /// Verifies the tokens of `refresh` frames; `None` when authentication is off.
    pub(crate) jwt: Option<Arc<JwtConfig>>,
    /// When a connection is warned of its token's expiry.
    pub(crate) expiry: TokenExpiry,
    /// The backend proxies, when any is set.
    pub(crate) proxy: Option<Arc<crate::proxy::Proxy>>,
    /// The open SSE connections, which their POSTs reach through it.
    pub(crate) sse: SseLinks,
}

impl Endpoint {
    /// The deadline of a token that expires at `expires_at` (ms since the epoch), given now.
    pub(crate) fn token_deadline(&self, expires_at: u64) -> TokenDeadline {
        TokenDeadline {
            expires_at,
            warn_at: self.expiry.warn_at(expires_at, crate::protocol::now_ms()),
        }
    }
}

/// The limits client frames are parsed with.
fn parse_limits(hub: &Hub) -> ParseLimits {
    let limits = &hub.config().limits;
    ParseLimits {
        max_name_chars: limits.max_name_length,
        max_content_chars: limits.max_content_length,
        max_metadata_bytes: limits.max_presence_metadata,
        max_history: hub.config().history.size,
    }
}

/// Who a connection is, known at the upgrade or from its `auth` frame.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) user: UserId,
    /// What the connection may do; `None` when authentication is off (everything).
    pub(crate) grants: Option<Box<Grants>>,
    /// When the token expires (ms since the epoch); `None` without a token.
    pub(crate) expires_at: Option<u64>,
}

impl From<Identity> for Peer {
    fn from(identity: Identity) -> Self {
        Self {
            user: identity.user,
            grants: Some(Box::new(identity.grants)),
            expires_at: Some(identity.expires_at),
        }
    }
}

/// What a connection speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Protocol v1 (DESIGN.md §2).
    Protocol,
    /// Every message is sent back as it came (`/echo`, for conformance testing).
    Echo,
    /// y-websocket messages about one Yjs document (`/yjs/{document}`, DESIGN.md §8).
    Document(DocAccess),
}

/// What the upgrade settled for a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Terms {
    /// What it speaks.
    pub(crate) mode: Mode,
    /// permessage-deflate, when the client offered it and the server has it on.
    pub(crate) deflate: Option<Deflate>,
    /// Whether the client selected subprotocol `switchboard.v1.msgpack` (protocol mode only):
    /// every frame both ways is then MessagePack in a binary frame.
    pub(crate) msgpack: bool,
}

/// The document a `/yjs` connection opened, and what it may do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DocAccess {
    pub(crate) name: DocId,
    /// Its updates are applied; a read-only client may only read and share awareness.
    pub(crate) writable: bool,
}

/// A byte stream a connection runs on.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin {
    /// Whether the stream needs a shutdown before it is dropped (TLS sends close_notify); a
    /// plain TCP socket sends its FIN on close and saves the syscall.
    const SHUTDOWN_BEFORE_CLOSE: bool = true;
    /// Whether a write may leave bytes buffered inside the stream until it is flushed (TLS
    /// keeps records it could not send yet); a plain TCP socket has no buffer to flush.
    const NEEDS_FLUSH: bool = true;

    /// The socket's descriptor when writes may go to it directly (a plain TCP socket), for
    /// batched sends through io_uring (`--io-uring`); `None` when the stream transforms what
    /// is written (TLS) or is not a socket of ours.
    fn raw_fd(&self) -> Option<i32> {
        None
    }
}

impl Stream for tokio::net::TcpStream {
    const SHUTDOWN_BEFORE_CLOSE: bool = false;
    const NEEDS_FLUSH: bool = false;

    #[cfg(unix)]
    fn raw_fd(&self) -> Option<i32> {
        Some(std::os::fd::AsRawFd::as_raw_fd(self))
    }
}

impl<S: Stream> Stream for Prefixed<S> {
    const SHUTDOWN_BEFORE_CLOSE: bool = S::SHUTDOWN_BEFORE_CLOSE;
    const NEEDS_FLUSH: bool = S::NEEDS_FLUSH;

    /// Writes pass straight through to the inner stream (the prefix is only read).
    fn raw_fd(&self) -> Option<i32> {
        self.io.raw_fd()
    }
}

/// Our server's TLS connections, boxed (see `http::ws`).
impl Stream for Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {}

impl Stream for hyper_util::rt::TokioIo<hyper::upgrade::Upgraded> {}

#[cfg(test)]
impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Stream for tokio::io::Join<R, W> {}

/// An upgraded connection's task: a registered connection's driver, or the refusal of one
/// that was not admitted (boxed: rare, and it must not grow every connection's task).
///
/// The size difference between the variants is the point: the enum *is* the task's future, so
/// the open driver lives inline in the task's one allocation; boxing it would add a second
/// allocation per connection. `tests::the_connection_task_stays_small` bounds the size.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Connection<S> {
    Open(driver::Driver<S>),
    Refused(Pin<Box<dyn Future<Output = ()> + Send>>),
}

/// Admits an upgraded connection of `peer` (or refuses it with close 1013 at capacity) and
/// returns the future that serves it until it ends.
pub(crate) fn serve<S>(io: S, endpoint: Arc<Endpoint>, peer: Peer, terms: Terms) -> Connection<S>
where
    S: Stream + Send + 'static,
{
    serve_answered(
        Answered {
            io,
            head: Bytes::new(),
        },
        endpoint,
        peer,
        terms,
    )
}

/// A stream whose upgrade request was answered by us (not by hyper), with the 101 response
/// not yet written.
pub(crate) struct Answered<S> {
    pub(crate) io: S,
    /// The 101 response. It goes out in the same write as the first frames (`connect`): one
    /// system call, and one loopback wake-up of the client, less per handshake. Empty when
    /// the response was written already.
    pub(crate) head: Bytes,
}

/// [`serve`] on a stream whose 101 response is still to be written.
pub(crate) fn serve_answered<S>(
    answered: Answered<S>,
    endpoint: Arc<Endpoint>,
    peer: Peer,
    terms: Terms,
) -> Connection<S>
where
    S: Stream + Send + 'static,
{
    let Answered { io, head } = answered;
    let wire = match terms.mode {
        Mode::Document(_) => Wire::Yjs,
        Mode::Protocol if terms.msgpack => Wire::MsgPack,
        Mode::Protocol | Mode::Echo => Wire::Json,
    };
    match endpoint.hub.register_as(peer.user.clone(), wire) {
        Ok(handle) => {
            if let Some(expires_at) = peer.expires_at {
                handle.set_token_deadline(endpoint.token_deadline(expires_at));
            }
            handle.set_deflate(terms.deflate);
            let session = Session::start(endpoint, handle, terms.mode, peer.grants);
            Connection::Open(driver::Driver::new(io, session, head))
        }
        Err(refusal) => {
            tracing::debug!(user = %peer.user, %refusal, "connection refused");
            let limits = driver::decoder_limits(&endpoint.hub, terms.deflate.is_some());
            let reason = refusal.to_string();
            Connection::Refused(Box::pin(async move {
                let mut io = io;
                if !head.is_empty()
                    && tokio::io::AsyncWriteExt::write_all(&mut io, &head)
                        .await
                        .is_err()
                {
                    return;
                }
                driver::refuse(io, refusal.close_code().as_u16(), &reason, limits).await;
            }))
        }
    }
}

impl<S: Stream> Future for Connection<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Self::Open(driver) => Pin::new(driver).poll(cx),
            Self::Refused(refusal) => refusal.as_mut().poll(cx),
        }
    }
}

/// A stream with bytes that were read ahead of it (by the HTTP layer) put back in front.
pub(crate) struct Prefixed<S> {
    prefix: Bytes,
    io: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Bytes, io: S) -> Self {
        Self { prefix, io }
    }

    /// The bytes not read yet, and the stream.
    pub(crate) fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.io)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::driver::Driver;
    use tokio::net::TcpStream;

    /// An idle connection must cost at most 2 KiB (DESIGN.md §5.5; issue 18 aims at 1 KiB); its
    /// task is the largest part, and its size is fixed at compile time, so it is guarded here.
    /// The task is this future, the per-IP slot and the task tracker's token (the spawned
    /// future, `server::intake::tests`) plus tokio's 104 bytes of header, stage tag and
    /// trailer, in one allocation that tokio aligns to 128 bytes on x86-64: up to 136 bytes
    /// here (104 besides the socket, which is 32 bytes in a release build and 40 with debug
    /// assertions) the task takes 256 bytes, above it 384 (BENCHMARKS.md, "Idle memory").
    /// Adding a field means making room first.
    #[test]
    fn the_connection_task_stays_small() {
        let socket = size_of::<TcpStream>();
        let driver = size_of::<Driver<TcpStream>>() - socket;
        let task = size_of::<super::Connection<TcpStream>>() - socket;
        assert!(
            driver <= 104,
            "Driver<TcpStream> grew to the socket and {driver} bytes"
        );
        assert!(
            task <= 104,
            "Connection<TcpStream> grew to the socket and {task} bytes"
        );
    }
}
