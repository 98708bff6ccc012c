//! The per-connection task: one task per connection does all of its I/O.
//!
//! Reading: the task waits for readiness and reads into a buffer owned by the worker thread
//! (`READ_BUFFER`), decodes complete frames straight out of it and handles them before the
//! next read. Only an incomplete frame's bytes are copied into the connection (the decoder's
//! `partial`), so an idle connection owns no read buffer.
//!
//! Writing: everything queued on the outbox since the last write is taken at once and written
//! with one vectored write (`writev`), the same shared frame buffers that were queued; a
//! partial write keeps its place and waits for writability. Nothing is copied per recipient.
//! A batch that holds a data frame marks the connection active (it is not idle while it
//! receives): one clock read per batch here, nothing on the fan-out path.
//!
//! Closing: a graceful close request (shutdown, idle timeout, admission) queues a close frame
//! behind what is queued and then waits for the client's close frame, at most
//! `CLOSE_TIMEOUT`. An abortive one (heartbeat timeout, slow consumer) drops what is queued,
//! tries the close frame and ends. A close from the client is answered at once and the server
//! closes TCP; so is a protocol violation (RFC 6455 §7.1.7). EOF or an I/O error ends the task
//! immediately.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;

use super::Stream;
use super::session::Session;
use crate::hub::{CloseRequest, Hub, Initiator, Taken};
use crate::protocol::CloseCode;
use crate::ws::decoder::{Decoder, Flow, Limits, Message, Unfinished};
use crate::ws::frame;

/// How long to wait for the client's close frame once ours is written.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Size of each worker thread's read buffer.
const READ_BUFFER_SIZE: usize = 64 * 1024;
/// Most buffers handed to one `writev` (or one send on the ring).
const MAX_IOVECS: usize = crate::uring::MAX_IOVECS;
/// Rounds of read/write per poll before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 16;

thread_local! {
    static READ_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BUFFER_SIZE].into_boxed_slice());
}

/// Marks the outbox as closing when the client started the close, so producers stop queueing.
const PEER_CLOSED: CloseRequest = CloseRequest {
    code: CloseCode::Normal,
    reason: std::borrow::Cow::Borrowed("closed by the client"),
    graceful: true,
};

pub(crate) struct Driver<S> {
    /// Frames taken from the outbox, not yet fully written. Declared before `io`, so it is
    /// dropped first: a send on the ring waits there for the kernel before the socket closes
    /// (`uring`, invariant 2).
    pending: Pending,
    io: S,
    /// What the client sent that has not fully arrived; the limits come from the
    /// configuration on each read.
    decoder: Unfinished,
    session: Session,
    /// Whether the front of `pending` has been partly written (it must then be finished).
    front_started: bool,
    /// Bytes were written since the last flush (only for streams that buffer, `S::NEEDS_FLUSH`).
    unflushed: bool,
    /// Our close frame is in `pending` (or written); nothing more is taken from the outbox.
    close_queued: bool,
    /// Once our close frame is written the connection is done: the client already closed (or
    /// sent EOF, or broke the protocol), or the close is abortive. Nothing more is read.
    finish_after_close: bool,
    /// An abortive close: the close frame gets one write attempt, then the connection is dropped.
    abort: bool,
    /// The code to echo in reply to the client's close frame, sent instead of the close
    /// request's own frame (`NonZeroU16`: two bytes, which keeps the task within its bound).
    close_reply: Option<std::num::NonZeroU16>,
    /// Armed when the close starts; the connection is dropped when it fires.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S: Stream> Driver<S> {
    /// The task of a registered connection. The driver is the task's whole future (no async fn
    /// around it, whose arguments would be stored next to it): an idle connection's task is
    /// this struct and nothing more.
    ///
    /// `head` (the 101 response, when we answered the upgrade ourselves; otherwise empty) is
    /// written ahead of the first frames, in the same write. It counts as a front already started:
    /// an abortive close that drops what is pending keeps it, so the client never reads a
    /// close frame where it expects HTTP.
    pub(crate) fn new(io: S, session: Session, head: Bytes) -> Self {
        let mut pending = Vec::new();
        let front_started = !head.is_empty();
        if front_started {
            // What the session queued at its start (`connect`) goes behind the head now: while
            // `pending` holds anything the outbox hands over no frames.
            session.handle().outbox().take_queued(&mut pending);
            pending.insert(0, head);
        }
        Self {
            decoder: Unfinished::default(),
            io,
            session,
            pending: Pending::Frames(pending),
            front_started,
            unflushed: false,
            close_queued: false,
            finish_after_close: false,
            abort: false,
            close_reply: None,
            deadline: None,
        }
    }
}

/// Runs the connection to its end; then leaves its rooms and unregisters it.
impl<S: Stream> Future for Driver<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let driver = self.get_mut();
        if driver.poll_until_done(cx).is_pending() {
            return Poll::Pending;
        }
        // One try at a clean shutdown where the stream needs one (TLS: close_notify), no
        // waiting. A plain TCP socket needs none: closing it sends the FIN.
        if S::SHUTDOWN_BEFORE_CLOSE {
            let _ = Pin::new(&mut driver.io).poll_shutdown(cx);
        }
        driver.session.finish();
        Poll::Ready(())
    }
}

/// Answers a connection that was not admitted: a close frame with `code` and `reason`, then
/// waits (at most `CLOSE_TIMEOUT`) for the client's close frame or EOF, and closes TCP.
/// (`code` is a number: a backend's connect proxy may choose one of the application's own.)
pub(crate) async fn refuse<S>(mut io: S, code: u16, reason: &str, limits: Limits)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let close = frame::close_frame(code, reason);
    let mut decoder = Decoder::new(limits);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        io.write_all(&close).await?;
        io.flush().await?;
        // On the heap: a buffer held across an await would grow every connection's task.
        let mut buffer = vec![0u8; 1024];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut io, &mut buffer).await?;
            let mut closed = n == 0;
            let flow = decoder.feed(&mut buffer[..n], &mut |message| {
                closed |= matches!(message, Message::Close(_));
                Flow::Continue
            });
            if closed || flow.is_err() {
                return std::io::Result::Ok(());
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
}

/// The decoder limits a hub's configuration sets, for a connection that negotiated
/// permessage-deflate (`deflate`) or not.
pub(crate) fn decoder_limits(hub: &Hub, deflate: bool) -> Limits {
    // At most 1 GiB (`config::validate`), so the conversion never saturates.
    let max = u32::try_from(hub.config().limits.max_frame_size).unwrap_or(u32::MAX);
    Limits {
        max_frame: max,
        max_message: max,
        deflate,
    }
}

/// Whether a server frame is traffic that keeps its connection from being idle (see
/// `ConnHandle::last_active`): a data frame, text or binary, other than the app-level heartbeat
/// `ping` (`--app-heartbeat`), in JSON or MessagePack. Control frames (our pings, pongs and
/// close) are not. Server frames are built whole and unmasked, so the opcode is in the first
/// byte.
fn is_traffic(frame: &[u8]) -> bool {
    /// The opcodes of text and binary frames (RFC 6455 §5.2), in a first byte's low bits.
    const TEXT: u8 = 0x1;
    const BINARY: u8 = 0x2;
    /// How every heartbeat `ping` the hub sends starts (`type` is the first field).
    const APP_PING: &[u8] = br#"{"type":"ping","#;
    /// The same in MessagePack, after the map's marker (a fixmap, 0x80 to 0x8f): the keys
    /// keep their order when transcoded.
    const MSGPACK_APP_PING: &[u8] = b"\xa4type\xa4ping";
    match frame.first().map(|first| first & 0x0F) {
        Some(BINARY) => match frame::server_payload(frame).split_first() {
            Some((map, rest)) => !(map & 0xF0 == 0x80 && rest.starts_with(MSGPACK_APP_PING)),
            None => true,
        },
        Some(TEXT) => !frame::server_payload(frame).starts_with(APP_PING),
        _ => false,
    }
}

enum Step {
    Progress,
    Idle,
    Done,
}

impl<S: Stream> Driver<S> {
    fn poll_until_done(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..ROUNDS_PER_POLL {
            let mut progress = false;
            // Replies produced by a read are taken and written in the next round.
            for step in [Self::poll_outbox, Self::poll_write, Self::poll_read] {
                match step(self, cx) {
                    Step::Done => return Poll::Ready(()),
                    Step::Progress => progress = true,
                    Step::Idle => {}
                }
            }
            if self.close_queued
                && self.pending.is_empty()
                && !self.unflushed
                && self.finish_after_close
            {
                return Poll::Ready(());
            }
            if let Some(deadline) = &mut self.deadline
                && deadline.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Moves queued frames into `pending`, marking the connection active when they carry
    /// traffic; starts the close when one is requested.
    fn poll_outbox(&mut self, cx: &mut Context<'_>) -> Step {
        if self.close_queued {
            return Step::Idle;
        }
        let handle = self.session.handle();
        let pending = match &mut self.pending {
            Pending::Frames(frames) => frames,
            Pending::Sending(send) => {
                // With nothing queued behind the send, the next push wakes the task (a complete
                // send wakes no one: one poll per batch, not two). Frames or a close pushed
                // meanwhile must not wait for the worker to park: the send is settled now.
                if handle.outbox().poll_queued(cx).is_pending() {
                    return Step::Idle;
                }
                if let Some(frames) = send.expedite() {
                    self.pending = Pending::Frames(frames);
                }
                return Step::Progress;
            }
        };
        let before = pending.len();
        let taken = handle.outbox().poll_take(cx, pending);
        if taken.is_ready() && pending[before..].iter().any(|f| is_traffic(f)) {
            // Once per batch, not per frame: the fan-out that queued them paid nothing.
            handle.sent_traffic(self.session.hub().now_ms());
        }
        match taken {
            Poll::Pending => Step::Idle,
            Poll::Ready(Taken { close: None }) => Step::Progress,
            Poll::Ready(Taken {
                close: Some(request),
            }) => {
                let counters = self.session.hub().counters();
                let close = match self.close_reply.take() {
                    Some(code) => {
                        counters.count_close(Initiator::Client, code.get());
                        frame::close_frame(code.get(), "")
                    }
                    None => {
                        counters.count_close(Initiator::Server, request.code.as_u16());
                        frame::close_frame(request.code.as_u16(), &request.reason)
                    }
                };
                self.finish_after_close |= !request.graceful;
                self.abort |= !request.graceful;
                self.queue_close(close, request.graceful);
                Step::Progress
            }
        }
    }

    /// Queues our close frame, behind what is pending if `keep_pending`, and arms the deadline.
    /// (Only called after a take from the outbox, so never while a send is on the ring.)
    fn queue_close(&mut self, close: Bytes, keep_pending: bool) {
        let Pending::Frames(pending) = &mut self.pending else {
            return;
        };
        if self.close_queued {
            return;
        }
        if !keep_pending {
            // A partly written frame must be finished, or the client would misread the stream.
            let keep = usize::from(self.front_started);
            pending.truncate(keep);
        }
        pending.push(close);
        self.close_queued = true;
        self.deadline = Some(Box::pin(tokio::time::sleep(CLOSE_TIMEOUT)));
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Step {
        if self.finish_after_close {
            return Step::Idle;
        }
        if self.session.waiting() {
            return self.poll_call(cx);
        }
        READ_BUFFER.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buffer) => self.read_into(cx, &mut buffer),
            // Only reachable if a handler polled another connection from inside a read.
            Err(_) => self.read_into(cx, &mut vec![0; READ_BUFFER_SIZE]),
        })
    }

    /// While the session waits for the backend, nothing is read: the call is polled instead,
    /// and once it is answered what was read after its frame is decoded. A close abandons the
    /// call, so that the client's close frame is read.
    fn poll_call(&mut self, cx: &mut Context<'_>) -> Step {
        let mut held = if self.close_queued {
            self.session.abandon_call()
        } else {
            match self.session.poll_call(cx) {
                Poll::Pending => return Step::Idle,
                Poll::Ready(held) => held,
            }
        };
        if !held.is_empty() {
            self.decode(&mut held);
        }
        Step::Progress
    }

    fn read_into(&mut self, cx: &mut Context<'_>, buffer: &mut [u8]) -> Step {
        let mut read = ReadBuf::new(buffer);
        match Pin::new(&mut self.io).poll_read(cx, &mut read) {
            Poll::Pending => Step::Idle,
            Poll::Ready(Err(_)) => Step::Done,
            Poll::Ready(Ok(())) if read.filled().is_empty() => {
                // EOF. After our close frame this is the normal end; before it, an abrupt one.
                self.finish_after_close = true;
                if self.close_queued {
                    Step::Progress
                } else {
                    Step::Done
                }
            }
            Poll::Ready(Ok(())) => {
                self.decode(read.filled_mut());
                Step::Progress
            }
        }
    }

    fn decode(&mut self, input: &mut [u8]) {
        let Self {
            decoder,
            session,
            close_queued,
            ..
        } = self;
        let now = session.hub().now_ms();
        let limits = decoder_limits(session.hub(), session.handle().deflate().is_some());
        let closing = *close_queued;
        let mut peer_close: Option<u16> = None;
        let result = decoder.feed_until(limits, input, &mut |message| {
            let is_data = matches!(message, Message::Text(_) | Message::Binary(_));
            session.handle().touch(now, is_data);
            match message {
                // Once closing, data is read (to reach the client's close) but not acted on.
                Message::Text(_) | Message::Binary(_) if closing => {}
                Message::Text(text) => {
                    session.on_text(text);
                    // The backend decides this frame: read no further until it answers.
                    if session.waiting() {
                        return Flow::Stop;
                    }
                }
                Message::Binary(data) => {
                    session.on_binary(data);
                    // A MessagePack frame may wait for the backend as a JSON one does.
                    if session.waiting() {
                        return Flow::Stop;
                    }
                }
                Message::Ping(payload) => session.on_ping(payload),
                Message::Pong(_) => {}
                Message::Close(status) => {
                    // Echo the client's code (RFC 6455 §5.5.1); an empty close gets 1000.
                    peer_close = Some(status.map_or(CloseCode::Normal.as_u16(), |(code, _)| code));
                    return Flow::Stop;
                }
            }
            Flow::Continue
        });
        if let Ok(fed) = result
            && self.session.waiting()
            && fed.unread > 0
        {
            self.session.hold(&input[input.len() - fed.unread..]);
        }
        // Both closes go through the outbox, so replies queued before them are written first.
        let now = self.session.hub().now_ms();
        if let Some(reply) = peer_close {
            self.finish_after_close = true;
            self.close_reply = std::num::NonZeroU16::new(reply);
            self.session.handle().close(PEER_CLOSED, now);
        } else if let Err(violation) = result {
            // Fail the connection (RFC 6455 §7.1.7): send the close frame, read no further, and
            // close TCP once it is written; the stream can no longer be parsed anyway.
            tracing::debug!(conn = %self.session.handle().id(), %violation, "protocol violation");
            self.finish_after_close = true;
            let request = CloseRequest {
                code: violation.close_code(),
                reason: std::borrow::Cow::Borrowed(violation.close_reason()),
                graceful: true,
            };
            if !self.session.handle().close(request, now) {
                // Another close was requested first; its frame carries that close's code.
                tracing::debug!(conn = %self.session.handle().id(), "already closing");
            }
        }
    }
}

#[path = "driver_write.rs"]
mod write;
use write::Pending;

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
