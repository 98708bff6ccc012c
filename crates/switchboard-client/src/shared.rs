//! State shared by the [`Client`](crate::Client) handles and the connection task: the
//! outgoing queue, the requests waiting for a reply, and what to restore after a reconnect
//! (rooms, channels, presence). One short mutex; nothing awaits while holding it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::{Notify, oneshot};

use crate::error::Error;
use crate::event::Frame;

/// The answer to a request: the reply frame (`ack`, or a direct reply such as `room_joined`).
pub(crate) type Reply = Result<Frame, Error>;

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the connection task: a frame was queued, or the client closed. One permit is
    /// stored when the task is busy, so no wake-up is lost.
    pub(crate) wake: Notify,
    capacity: usize,
}

#[derive(Default)]
struct State {
    /// Serialized frames to send, in order. Bounded by `capacity`: a push past it is refused
    /// (`Error::QueueFull`), nothing queued is dropped.
    queue: VecDeque<String>,
    /// Requests waiting for a frame with their id; each sender's receiver is held by the
    /// caller of `request`, who removes its entry on timeout.
    pending: HashMap<String, oneshot::Sender<Reply>>,
    next_id: u64,
    /// Rooms to rejoin and channels to resubscribe after a reconnect, in the order joined.
    rooms: Vec<String>,
    channels: Vec<String>,
    /// The last `presence` payload set, sent again after a reconnect.
    presence: Option<Value>,
    closed: bool,
}

/// What a new connection restores before the queue is flushed.
pub(crate) struct Restore {
    pub(crate) rooms: Vec<String>,
    pub(crate) channels: Vec<String>,
    pub(crate) presence: Option<Value>,
}

impl Shared {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            capacity,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the state consistent (every update
        // is a single push or remove), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a serialized frame.
    pub(crate) fn push(&self, frame: String) -> Result<(), Error> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(Error::Closed);
            }
            if state.queue.len() >= self.capacity {
                return Err(Error::QueueFull {
                    capacity: self.capacity,
                });
            }
            state.queue.push_back(frame);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Registers a request and queues its frame (built with the new id); returns the id and
    /// the receiver of the reply.
    pub(crate) fn push_request(
        &self,
        build: impl FnOnce(&str) -> String,
    ) -> Result<(String, oneshot::Receiver<Reply>), Error> {
        let (sender, receiver) = oneshot::channel();
        let id = {
            let mut state = self.lock();
            if state.closed {
                return Err(Error::Closed);
            }
            if state.queue.len() >= self.capacity {
                return Err(Error::QueueFull {
                    capacity: self.capacity,
                });
            }
            state.next_id += 1;
            let id = format!("r{}", state.next_id);
            state.queue.push_back(build(&id));
            state.pending.insert(id.clone(), sender);
            id
        };
        self.wake.notify_one();
        Ok((id, receiver))
    }

    /// Forgets a request that timed out.
    pub(crate) fn forget(&self, id: &str) {
        self.lock().pending.remove(id);
    }

    /// Resolves the request `id`, if one waits; returns whether one did.
    pub(crate) fn resolve(&self, id: &str, reply: Reply) -> bool {
        let sender = self.lock().pending.remove(id);
        match sender {
            Some(sender) => {
                // The caller may have stopped waiting; then nobody wants the reply.
                let _ = sender.send(reply);
                true
            }
            None => false,
        }
    }

    /// The next frame to send, left in the queue until [`Shared::sent`].
    pub(crate) fn front(&self) -> Option<String> {
        self.lock().queue.front().cloned()
    }

    /// The front frame was written.
    pub(crate) fn sent(&self) {
        self.lock().queue.pop_front();
    }

    pub(crate) fn joined(&self, room: &str) {
        let mut state = self.lock();
        if !state.rooms.iter().any(|r| r == room) {
            state.rooms.push(room.to_owned());
        }
    }

    pub(crate) fn left(&self, room: &str) {
        self.lock().rooms.retain(|r| r != room);
    }

    pub(crate) fn subscribed(&self, channel: &str) {
        let mut state = self.lock();
        if !state.channels.iter().any(|c| c == channel) {
            state.channels.push(channel.to_owned());
        }
    }

    pub(crate) fn unsubscribed(&self, channel: &str) {
        self.lock().channels.retain(|c| c != channel);
    }

    pub(crate) fn set_presence(&self, payload: Value) {
        self.lock().presence = Some(payload);
    }

    pub(crate) fn rooms(&self) -> Vec<String> {
        self.lock().rooms.clone()
    }

    pub(crate) fn channels(&self) -> Vec<String> {
        self.lock().channels.clone()
    }

    pub(crate) fn restore(&self) -> Restore {
        let state = self.lock();
        Restore {
            rooms: state.rooms.clone(),
            channels: state.channels.clone(),
            presence: state.presence.clone(),
        }
    }

    /// Stops the client: no more frames are queued, and the task is woken to close.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Marks the client closed for good and fails every waiting request with `Error::Closed`.
    pub(crate) fn finish(&self) {
        let pending = {
            let mut state = self.lock();
            state.closed = true;
            state.queue.clear();
            std::mem::take(&mut state.pending)
        };
        for (_, sender) in pending {
            let _ = sender.send(Err(Error::Closed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_refuses_past_its_capacity_and_keeps_order() {
        let shared = Shared::new(2);
        assert!(shared.push("a".into()).is_ok());
        assert!(shared.push_request(|id| format!("b:{id}")).is_ok());
        assert!(shared.push("c".into()).is_err_and(|e| e.is_queue_full()));
        assert_eq!(shared.front().as_deref(), Some("a"));
        shared.sent();
        assert_eq!(shared.front().as_deref(), Some("b:r1"));
        shared.sent();
        assert!(shared.push("c".into()).is_ok());
        shared.close();
        assert!(matches!(shared.push("d".into()), Err(Error::Closed)));
    }

    #[test]
    fn finishing_fails_waiting_requests() {
        let shared = Shared::new(4);
        let (_, mut reply) = shared.push_request(|id| id.to_owned()).unwrap();
        shared.finish();
        assert!(matches!(reply.try_recv(), Ok(Err(Error::Closed))));
        assert!(shared.front().is_none());
    }
}
