//! Batched socket writes through io_uring (`--io-uring`, issue 18): the sends of every
//! connection that became writable during one wake-up of a worker thread go to the kernel in
//! one `io_uring_enter`, instead of one `writev` each.
//!
//! Owns each worker thread's ring and the sends queued on it; the only `unsafe` code for
//! io_uring in the crate is here. It does not own the sockets (the connection's driver does,
//! and keeps its readiness path with tokio for reads and for writes that would block) nor
//! decide what is sent.
//!
//! How a send goes: the driver moves its pending frames into a `Send` queued on its
//! thread's ring (`Send::start`) and waits. When the worker is about to park (tokio's
//! `on_thread_park`, [`on_thread_park`]), or when the ring's queue is full, every queued send
//! becomes one `SENDMSG` entry (`MSG_DONTWAIT`: a socket that cannot take the bytes answers
//! `EAGAIN` at once, and the driver falls back to its readiness path), all are submitted with
//! one `io_uring_enter`, and that same call waits for every completion. A send that wrote
//! everything releases its frames and wakes no one (the connection's next frames wake its task
//! through its outbox); a short write or an error wakes the task. A task that finds frames
//! waiting behind its send does not wait for the park, which a busy worker may not reach for
//! long: `Send::expedite` flushes its own thread's ring at once, or takes back a send queued
//! on another thread's ring (the task moved) to write it the portable way. A thread that never
//! ran the hook never queues a send: its tasks keep the portable path.
//!
//! A submit with `MSG_DONTWAIT` completes within the call (loopback measured: ~1 µs for an
//! `EAGAIN`), so waiting for every completion inside the park hook never blocks a worker on a
//! peer.
//!
//! # Invariants (the `unsafe` below relies on them)
//!
//! 1. **Buffers outlive the kernel's use of them.** A send's frames (`Bytes`) stay in its
//!    `Op` from `Send::start` until its completion has been reaped; the `iovec`s and
//!    `msghdr`s that point at them live in `flush`'s locals, sized before the first
//!    pointer is taken (no reallocation), and `flush` returns only after every entry it
//!    submitted has completed. So nothing the kernel reads is freed or moved while it can
//!    read it, and nothing is in flight between two flushes.
//! 2. **The socket outlives the send.** An entry names its socket by number. `flush` holds the
//!    lock of every op it submits from building its entry to reaping its completion; the
//!    driver's `Send` is dropped before its socket (the driver's field order) and its drop
//!    takes the same lock: a send still queued is cancelled (its entry is never built), and
//!    one being flushed, possibly on another thread after the task moved, is waited for. So
//!    no entry is submitted for a closed, possibly reused, descriptor.
//! 3. **One send in flight per connection**, and its frames are the front of the connection's
//!    stream: the driver takes nothing more from its outbox until the send has completed (or
//!    was taken back unwritten), and what a short write left is written before anything newer.
//! 4. **A ring that fails is never used again.** If the kernel refuses the ring, or a submit
//!    fails, the thread falls back to the portable path for good (logged once per process);
//!    entries not submitted are dropped with the ring, and their sends answer `EAGAIN`.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

/// A connection's one send on its worker's ring: queued, being written, or done. Dropping it
/// cancels a send still queued, or waits for one being written (invariant 2).
pub(crate) struct Send(Arc<Op>);

/// How a send ended.
pub(crate) enum Done {
    /// Every byte was written; the frames are released.
    Complete,
    /// Only the first `written` bytes of `frames` were written (0 with `EAGAIN`: the socket
    /// could not take any); the rest must be written before anything newer.
    Partial { written: usize, frames: Vec<Bytes> },
    /// The socket failed (the connection ends, as after a failed `writev`).
    Failed,
}

/// Flushes this worker thread's ring: submits every queued send in one `io_uring_enter` and
/// reaps their completions. Install it as the runtime's `on_thread_park` hook to use
/// `--io-uring`; a thread that has not run it never queues a send.
pub fn on_thread_park() {
    imp::on_thread_park();
}

/// Sends submitted to io_uring by this process so far (all threads): how a test or an operator
/// sees that `--io-uring` is in effect rather than the fallback.
pub fn sends_submitted() -> u64 {
    imp::sends_submitted()
}

/// A send shared by the driver's [`Send`] and the ring that will write it.
struct Op {
    /// The socket's descriptor, open while the op is queued (invariant 2).
    fd: i32,
    /// Which thread's ring it is queued on.
    ring: u64,
    state: Mutex<State>,
}

struct State {
    stage: Stage,
    frames: Vec<Bytes>,
    waker: Waker,
}

enum Stage {
    Queued,
    Done(i32),
    Cancelled,
}

impl Op {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent state: every field is written
        // in one statement.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Send {
    /// Queues `frames` (at most [`MAX_IOVECS`], the front of the connection's stream) for
    /// socket `fd` on this thread's ring. Gives them back when this thread has no ring (it
    /// never ran [`on_thread_park`], or the kernel refused io_uring): write them the portable
    /// way.
    pub(crate) fn start(fd: i32, frames: Vec<Bytes>, cx: &Context<'_>) -> Result<Self, Vec<Bytes>> {
        imp::start(fd, frames, cx)
    }

    /// The send's outcome once its completion was reaped. A short write or an error wakes the
    /// task that started it; a complete send wakes no one (nothing waits for it: what comes
    /// next wakes the task through the outbox, and then [`Send::expedite`] settles the send).
    pub(crate) fn poll_done(&self) -> Poll<Done> {
        let mut state = self.0.lock();
        match state.stage {
            Stage::Queued | Stage::Cancelled => Poll::Pending,
            Stage::Done(result) => {
                let frames = std::mem::take(&mut state.frames);
                Poll::Ready(done(result, frames))
            }
        }
    }

    /// Settles a send that something now waits behind, instead of leaving it for the worker's
    /// park (which a busy worker may not reach for a long time): on this thread's ring, the
    /// ring is flushed now; on another thread's (the task moved), the send is taken back and
    /// its frames returned, to be written the portable way. `None`: it is done (or has just
    /// been done) and [`Send::poll_done`] has its outcome.
    pub(crate) fn expedite(&self) -> Option<Vec<Bytes>> {
        imp::expedite(&self.0)
    }
}

impl Drop for Send {
    fn drop(&mut self) {
        // Waits for a flush that holds the lock (invariant 2).
        let mut state = self.0.lock();
        if matches!(state.stage, Stage::Queued) {
            state.stage = Stage::Cancelled;
            state.frames = Vec::new();
        }
    }
}

/// Most buffers in one send (one `msghdr`).
pub(crate) const MAX_IOVECS: usize = 64;

/// The outcome of a completion's `result` for the frames that were sent.
fn done(result: i32, frames: Vec<Bytes>) -> Done {
    match usize::try_from(result) {
        Ok(_) if frames.is_empty() => Done::Complete,
        Ok(written) => Done::Partial { written, frames },
        Err(_) if result == -libc::EAGAIN => Done::Partial { written: 0, frames },
        Err(_) => Done::Failed,
    }
}

#[cfg(target_os = "linux")]
#[path = "ring.rs"]
mod imp;

#[cfg(not(target_os = "linux"))]
mod imp {
    //! No io_uring outside Linux: every send is given back, to be written the portable way.
    use super::{Bytes, Context, Send};

    pub(super) fn on_thread_park() {}

    pub(super) fn sends_submitted() -> u64 {
        0
    }

    pub(super) fn expedite(_op: &std::sync::Arc<super::Op>) -> Option<Vec<Bytes>> {
        None
    }

    pub(super) fn start(
        _fd: i32,
        frames: Vec<Bytes>,
        _cx: &Context<'_>,
    ) -> Result<Send, Vec<Bytes>> {
        Err(frames)
    }
}

#[cfg(test)]
mod tests;
