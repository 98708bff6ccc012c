//! A connection's outbound queue: bounded in bytes, filled by any thread, drained by the
//! connection's own task.
//!
//! Producers (room fan-out, broadcasts, the heartbeat sweep, the connection itself) push shared
//! [`Bytes`]; a push is a short lock, a `Vec` push and at most one wake-up. The connection
//! task takes everything queued in one go and writes it with one vectored write.
//!
//! Overflow policy: a push that would take the queue past its limit drops the whole queue and
//! marks the connection to be closed with 1013 (slow consumer; it may reconnect later). Frames
//! are never dropped selectively, so a client never sees a gap; it is disconnected instead.
//! Close requests are not subject to the limit.

use std::borrow::Cow;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::protocol::CloseCode;

/// A request to close a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseRequest {
    pub(crate) code: CloseCode,
    pub(crate) reason: Cow<'static, str>,
    /// Graceful: frames already queued are written first, then the close frame, then the
    /// client's close is awaited. Abortive (`false`): queued frames are dropped, the close
    /// frame is tried, and the connection is dropped without waiting (dead or stuck peers).
    pub(crate) graceful: bool,
}

impl CloseRequest {
    /// The connection's task has ended (the session is finishing): nothing is written any more.
    pub(crate) const FINISHED: Self = Self {
        code: CloseCode::Normal,
        reason: Cow::Borrowed("connection ended"),
        graceful: false,
    };

    pub(crate) const SLOW_CONSUMER: Self = Self {
        code: CloseCode::TryAgainLater,
        reason: Cow::Borrowed("slow consumer: outbound queue full"),
        graceful: false,
    };
}

/// The outcome of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// The frame is queued.
    Queued,
    /// The queue was full: it was dropped and the connection is being closed as a slow consumer.
    Overflow,
    /// The connection is closing; the frame was discarded.
    Closed,
}

#[derive(Default)]
struct State {
    /// A `Vec`, a word smaller than a deque in every connection's handle: frames are only
    /// pushed at the back and taken all at once (`move_frames`).
    frames: Vec<Bytes>,
    bytes: usize,
    /// The connection task's waker, taken by the first push after the task went to sleep.
    waker: Option<Waker>,
    /// Boxed: one pointer in every open connection's handle instead of the request and its
    /// time (five words); only a closing connection allocates it.
    close: Option<Box<Closing>>,
}

/// A close request and when it was made.
struct Closing {
    request: CloseRequest,
    /// Hub-clock ms of the request; 0 for a slow consumer's, which its own task carries out at
    /// once (abortive), so the sweep that removes stuck closes need not time it.
    since: u64,
}

impl State {
    /// Has the next push wake `cx`'s task.
    fn register(&mut self, cx: &Context<'_>) {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.waker = Some(cx.waker().clone());
        }
    }

    /// Moves every queued frame to the back of `out`: when `out` is empty the queue's buffer
    /// becomes `out`'s (nothing is copied), and no capacity is left behind, so an idle
    /// connection holds no queue memory.
    fn move_frames(&mut self, out: &mut Vec<Bytes>) {
        let frames = std::mem::take(&mut self.frames);
        if out.is_empty() {
            *out = frames;
        } else {
            out.extend(frames);
        }
        self.bytes = 0;
    }

    /// Drops everything queued.
    fn clear(&mut self) {
        self.frames = Vec::new();
        self.bytes = 0;
    }
}

/// What the connection task found when it polled the outbox.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Taken {
    /// A close was requested; frames moved out alongside it are to be written first only if
    /// the close is graceful.
    pub(crate) close: Option<CloseRequest>,
}

/// The outbound queue of one connection. Held by the connection's handle, shared by every
/// producer; drained only by the connection's task.
#[derive(Default)]
pub(crate) struct Outbox {
    state: Mutex<State>,
}

impl Outbox {
    /// Queues `frame` unless that would exceed `limit` queued bytes (see the overflow policy).
    pub(crate) fn push(&self, frame: &Bytes, limit: usize) -> Pushed {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return Pushed::Closed;
        }
        let pushed = if state.bytes + frame.len() > limit {
            state.clear();
            state.close = Some(Box::new(Closing {
                request: CloseRequest::SLOW_CONSUMER,
                since: 0,
            }));
            Pushed::Overflow
        } else {
            state.frames.push(frame.clone());
            state.bytes += frame.len();
            Pushed::Queued
        };
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        pushed
    }

    /// Requests a close at hub-clock ms `now`. The first request wins; returns whether this
    /// one did.
    pub(crate) fn close(&self, request: CloseRequest, now: u64) -> bool {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return false;
        }
        if !request.graceful {
            state.clear();
        }
        state.close = Some(Box::new(Closing {
            request,
            since: now.max(1),
        }));
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Hub-clock ms since which the connection is closing, if a close was requested by
    /// [`Outbox::close`].
    pub(crate) fn closing_since(&self) -> Option<u64> {
        let state = self.state.lock();
        state.close.as_ref().map(|c| c.since).filter(|&t| t != 0)
    }

    /// Whether a close was requested.
    #[cfg(test)]
    pub(crate) fn is_closing(&self) -> bool {
        self.state.lock().close.is_some()
    }

    /// Bytes currently queued.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.state.lock().bytes
    }

    /// Moves every queued frame to the back of `out` now, without registering for a wake-up
    /// and without looking at a close request (the next [`Outbox::poll_take`] sees it): for a
    /// connection's first write, which puts its 101 response in front of them.
    pub(crate) fn take_queued(&self, out: &mut Vec<Bytes>) {
        self.state.lock().move_frames(out);
    }

    /// Moves every queued frame to the back of `out`. Ready when there were frames or a close
    /// request; otherwise registers the task to be woken by the next push.
    ///
    /// While `out` still holds unwritten frames only a close request is taken: the queue then
    /// keeps filling towards its limit, which is what bounds a consumer that stopped reading.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>, out: &mut Vec<Bytes>) -> Poll<Taken> {
        let mut state = self.state.lock();
        let take_frames = out.is_empty() && !state.frames.is_empty();
        if !take_frames && state.close.is_none() {
            state.register(cx);
            return Poll::Pending;
        }
        state.move_frames(out);
        Poll::Ready(Taken {
            close: state.close.as_ref().map(|c| c.request.clone()),
        })
    }

    /// Ready when frames or a close request wait to be taken, without taking them; otherwise
    /// registers the task to be woken by the next push, as [`Outbox::poll_take`] does. For a
    /// connection that takes nothing while its last batch is on io_uring, and must know
    /// whether to have the send's completion wake it.
    pub(crate) fn poll_queued(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state.lock();
        if state.frames.is_empty() && state.close.is_none() {
            state.register(cx);
            return Poll::Pending;
        }
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake_counter::WakeCounter;

    fn frame(len: usize) -> Bytes {
        Bytes::from(vec![0; len])
    }

    #[test]
    fn takes_everything_queued_in_order_and_wakes_once() {
        let outbox = Outbox::default();
        let (counter, waker) = WakeCounter::new();
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        assert_eq!(outbox.poll_take(&mut cx, &mut out), Poll::Pending);
        for len in [1, 2, 3] {
            assert_eq!(outbox.push(&frame(len), 100), Pushed::Queued);
        }
        assert_eq!(counter.count(), 1, "one wake per batch");
        assert_eq!(outbox.queued_bytes(), 6);
        assert_eq!(
            outbox.poll_take(&mut cx, &mut out),
            Poll::Ready(Taken { close: None })
        );
        assert_eq!(out.iter().map(Bytes::len).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(outbox.queued_bytes(), 0);
    }

    #[test]
    fn poll_queued_sees_frames_and_closes_without_taking_them_and_arms_the_wake() {
        let outbox = Outbox::default();
        let (counter, waker) = WakeCounter::new();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(outbox.poll_queued(&mut cx), Poll::Pending);
        assert_eq!(outbox.push(&frame(4), 100), Pushed::Queued);
        assert_eq!(counter.count(), 1, "the next push wakes");
        assert_eq!(outbox.poll_queued(&mut cx), Poll::Ready(()));
        assert_eq!(outbox.queued_bytes(), 4, "nothing was taken");
        let mut out = Vec::new();
        assert!(outbox.poll_take(&mut cx, &mut out).is_ready());
        assert_eq!(outbox.poll_queued(&mut cx), Poll::Pending);
        outbox.close(CloseRequest::FINISHED, 5);
        assert_eq!(outbox.poll_queued(&mut cx), Poll::Ready(()));
    }

    #[test]
    fn the_first_frames_can_be_taken_behind_a_head_without_a_waker() {
        let outbox = Outbox::default();
        for len in [1, 2] {
            assert_eq!(outbox.push(&frame(len), 100), Pushed::Queued);
        }
        let mut out = Vec::from([frame(9)]);
        outbox.take_queued(&mut out);
        assert_eq!(out.iter().map(Bytes::len).collect::<Vec<_>>(), [9, 1, 2]);
        assert_eq!(outbox.queued_bytes(), 0);
        // The next frame is taken by the driver's poll, once `out` is written.
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(outbox.push(&frame(3), 100), Pushed::Queued);
        assert_eq!(outbox.poll_take(&mut cx, &mut out), Poll::Pending);
        out.clear();
        assert!(outbox.poll_take(&mut cx, &mut out).is_ready());
        assert_eq!(out.iter().map(Bytes::len).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn a_burst_is_handed_over_without_a_copy_and_leaves_no_capacity_behind() {
        let outbox = Outbox::default();
        for _ in 0..100 {
            assert_eq!(outbox.push(&frame(1), 1000), Pushed::Queued);
        }
        let mut out = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(outbox.poll_take(&mut cx, &mut out).is_ready());
        assert_eq!(out.len(), 100);
        assert_eq!(
            outbox.state.lock().frames.capacity(),
            0,
            "the queue's buffer went to out"
        );
        // Behind frames not yet written, a close takes the queue by appending.
        assert_eq!(outbox.push(&frame(2), 1000), Pushed::Queued);
        outbox.close(
            CloseRequest {
                code: CloseCode::Normal,
                reason: Cow::Borrowed("bye"),
                graceful: true,
            },
            5,
        );
        assert!(outbox.poll_take(&mut cx, &mut out).is_ready());
        assert_eq!(out.len(), 101);
        assert_eq!(outbox.state.lock().frames.capacity(), 0);
    }

    #[test]
    fn overflow_drops_the_queue_and_closes_as_slow_consumer() {
        let outbox = Outbox::default();
        assert_eq!(outbox.push(&frame(60), 100), Pushed::Queued);
        assert_eq!(
            outbox.push(&frame(40), 100),
            Pushed::Queued,
            "exactly at the limit"
        );
        assert_eq!(outbox.push(&frame(1), 100), Pushed::Overflow);
        assert_eq!(outbox.queued_bytes(), 0);
        assert_eq!(
            outbox.closing_since(),
            None,
            "its own task closes it at once"
        );
        assert_eq!(outbox.push(&frame(1), 100), Pushed::Closed);
        let waker = Waker::noop();
        let mut out = Vec::new();
        let taken = outbox.poll_take(&mut Context::from_waker(waker), &mut out);
        assert_eq!(
            taken,
            Poll::Ready(Taken {
                close: Some(CloseRequest::SLOW_CONSUMER)
            })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn first_close_wins_and_a_graceful_close_keeps_the_queue() {
        let outbox = Outbox::default();
        outbox.push(&frame(5), 100);
        let shutdown = CloseRequest {
            code: CloseCode::GoingAway,
            reason: Cow::Borrowed("bye"),
            graceful: true,
        };
        assert_eq!(outbox.closing_since(), None);
        assert!(outbox.close(shutdown.clone(), 7));
        assert!(!outbox.close(CloseRequest::SLOW_CONSUMER, 9));
        assert_eq!(outbox.closing_since(), Some(7), "the first request's time");
        let mut out = Vec::new();
        let taken = outbox.poll_take(&mut Context::from_waker(Waker::noop()), &mut out);
        assert_eq!(
            taken,
            Poll::Ready(Taken {
                close: Some(shutdown)
            })
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn nothing_is_taken_while_the_previous_batch_is_unwritten() {
        let outbox = Outbox::default();
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        outbox.push(&frame(10), 100);
        assert!(outbox.poll_take(&mut cx, &mut out).is_ready());
        outbox.push(&frame(20), 100);
        assert_eq!(outbox.poll_take(&mut cx, &mut out), Poll::Pending);
        assert_eq!(
            outbox.queued_bytes(),
            20,
            "the queue keeps counting towards its limit"
        );
        assert_eq!(outbox.push(&frame(81), 100), Pushed::Overflow);
        assert_eq!(
            outbox.poll_take(&mut cx, &mut out),
            Poll::Ready(Taken {
                close: Some(CloseRequest::SLOW_CONSUMER)
            }),
            "a close is seen even while blocked"
        );
    }
}
