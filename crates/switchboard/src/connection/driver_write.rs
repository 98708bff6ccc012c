//! The driver's writing half: what the connection took from its outbox and has not written
//! yet, and how it is written, with one vectored write or as one send on the worker's io_uring
//! (`--io-uring`, `crate::uring`). The order and partial-write rules are the parent's.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};

use super::{Driver, MAX_IOVECS, Step};
use crate::connection::Stream;
use crate::uring::{Done, Send};

/// What a connection took from its outbox and has not written yet.
pub(super) enum Pending {
    /// Frames to write; the front one may be partly written.
    Frames(Vec<Bytes>),
    /// Frames handed to the worker's io_uring (`--io-uring`) as one send: the front of the
    /// stream. Nothing more is taken from the outbox until it completes (one send in flight).
    Sending(Send),
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        match self {
            Self::Frames(frames) => frames.is_empty(),
            Self::Sending(_) => false,
        }
    }
}

impl<S: Stream> Driver<S> {
    pub(super) fn poll_write(&mut self, cx: &mut Context<'_>) -> Step {
        let mut batch = true;
        if let Pending::Sending(send) = &self.pending {
            let Poll::Ready(done) = send.poll_done() else {
                return Step::Idle;
            };
            self.pending = Pending::Frames(Vec::new());
            match self.finish_send(done) {
                Some(step) => return step,
                // The socket is full: this time the write waits for writability.
                None => batch = false,
            }
        }
        let Pending::Frames(pending) = &mut self.pending else {
            return Step::Idle;
        };
        if pending.is_empty() {
            return self.poll_flush(cx);
        }
        // On the ring: a batch that fits one send, while not closing (the close handshake
        // and its deadline stay on the readiness path).
        if batch
            && !self.close_queued
            && pending.len() <= MAX_IOVECS
            && let Some(fd) = self.io.raw_fd()
            && self.session.hub().config().io_uring
        {
            match Send::start(fd, std::mem::take(pending), cx) {
                Ok(send) => {
                    self.pending = Pending::Sending(send);
                    // Another round, so that frames left in the outbox behind these (taken no
                    // further while some were pending) are seen: nothing else would wake us.
                    return Step::Progress;
                }
                Err(frames) => *pending = frames,
            }
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let count = pending.len().min(MAX_IOVECS);
        for (slice, frame) in slices.iter_mut().zip(pending.iter()) {
            *slice = IoSlice::new(frame);
        }
        match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]) {
            Poll::Pending if self.abort => Step::Done,
            Poll::Pending => Step::Idle,
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Step::Done,
            Poll::Ready(Ok(written)) => {
                self.consume(written);
                self.unflushed = S::NEEDS_FLUSH;
                // Everything written: the buffer goes (an idle connection keeps none; after a
                // burst of notices it would hold up to kilobytes).
                if let Pending::Frames(pending) = &mut self.pending
                    && pending.is_empty()
                {
                    *pending = Vec::new();
                }
                Step::Progress
            }
        }
    }

    /// Takes the outcome of a send on the ring as a vectored write's: what was not written
    /// becomes the pending frames again (with `EAGAIN`, all of them, for the readiness path).
    /// `Some` ends this write step.
    fn finish_send(&mut self, done: Done) -> Option<Step> {
        match done {
            Done::Complete => {
                self.front_started = false;
                Some(Step::Progress)
            }
            Done::Partial { written, frames } => {
                self.pending = Pending::Frames(frames);
                self.consume(written);
                // Nothing written (`EAGAIN`): the portable write waits for writability.
                (written > 0).then_some(Step::Progress)
            }
            Done::Failed => Some(Step::Done),
        }
    }

    /// Pushes out what the stream buffered once everything pending is written to it.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Step {
        if !self.unflushed {
            return Step::Idle;
        }
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending if self.abort => Step::Done,
            Poll::Pending => Step::Idle,
            Poll::Ready(Ok(())) => {
                self.unflushed = false;
                Step::Progress
            }
            Poll::Ready(Err(_)) => Step::Done,
        }
    }

    /// Drops `written` bytes from the front of the pending frames.
    pub(super) fn consume(&mut self, mut written: usize) {
        let Pending::Frames(pending) = &mut self.pending else {
            return;
        };
        let mut whole = 0;
        for front in pending.iter_mut() {
            if written == 0 {
                break;
            }
            if written >= front.len() {
                written -= front.len();
                whole += 1;
                self.front_started = false;
            } else {
                front.advance(written);
                self.front_started = true;
                break;
            }
        }
        pending.drain(..whole);
    }
}
