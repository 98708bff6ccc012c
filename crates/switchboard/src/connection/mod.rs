//! One WebSocket connection after the upgrade: admission, the session (protocol state and
//! message handling) and the driver (the task that does the connection's I/O).

mod dedup;
mod driver;
mod session;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::hub::Hub;
use crate::ids::UserId;
use session::Session;

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Protocol v1 (DESIGN.md §2).
    Protocol,
    /// Every message is sent back as it came (`/echo`, for conformance testing).
    Echo,
}

/// Serves an upgraded connection of `user` until it ends: registers it with the hub (or
/// refuses it with close 1013 at capacity), then runs its task.
pub(crate) async fn serve<S>(io: S, hub: Hub, user: UserId, mode: Mode)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match hub.register(user.clone()) {
        Ok(handle) => {
            let hooks = hub.extensions().clone();
            for hook in &hooks.on_connect {
                hook(&handle.info(hub.now_ms()));
            }
            driver::run(io, Session::start(hub.clone(), handle.clone(), mode)).await;
            for hook in &hooks.on_disconnect {
                hook(&handle.info(hub.now_ms()));
            }
        }
        Err(refusal) => {
            tracing::debug!(%user, %refusal, "connection refused");
            let limits = driver::decoder_limits(&hub);
            driver::refuse(io, refusal.close_code(), &refusal.to_string(), limits).await;
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
