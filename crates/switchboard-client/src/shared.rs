//! State shared by the [`Client`](crate::Client) handles and the connection task: the
//! outgoing queue, the requests waiting for a reply, and what to restore after a reconnect
//! (rooms, channels, presence, and the position in each stream). One short mutex; nothing
//! awaits while holding it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use switchboard_protocol::StreamPosition;
use tokio::sync::{Notify, oneshot};

use crate::error::Error;
use crate::event::Frame;
use crate::position::{Positions, StreamKey};

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
    /// Frames to send, in order. Bounded by `capacity`: a push past it is refused
    /// (`Error::QueueFull`), nothing queued is dropped.
    queue: VecDeque<Outgoing>,
    /// Requests waiting for a frame with their id; each sender's receiver is held by the
    /// caller of `request`, who removes its entry on timeout.
    pending: HashMap<String, oneshot::Sender<Reply>>,
    next_id: u64,
    /// Rooms to rejoin and channels to resubscribe after a reconnect, in the order joined.
    rooms: Vec<String>,
    channels: Vec<String>,
    /// The last `presence` payload set, sent again after a reconnect.
    presence: Option<Value>,
    /// Where the client is in each stream, sent as `since` when rejoining.
    positions: Positions,
    closed: bool,
}

/// A queued frame.
struct Outgoing {
    /// The serialized frame.
    text: String,
    /// An own room message or publication sent with an id, whose ack will carry its offset.
    own: Option<(String, StreamKey)>,
}

impl State {
    /// Refuses a frame when the client is closed or the queue is full.
    fn has_room(&self, capacity: usize) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        if self.queue.len() >= capacity {
            return Err(Error::QueueFull { capacity });
        }
        Ok(())
    }

    /// A new frame id: `r1`, `m2`, … (the prefix only helps a reader of the wire).
    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }
}

/// What a new connection restores before the queue is flushed: each room and channel with
/// the position to recover from, and the presence.
pub(crate) struct Restore {
    pub(crate) rooms: Vec<(String, Option<StreamPosition>)>,
    pub(crate) channels: Vec<(String, Option<StreamPosition>)>,
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

    /// Queues a frame built by `build`. A room message or publication (`own`) to a stream
    /// the client follows gets an id, so that its ack tells the client its offset.
    pub(crate) fn push(
        &self,
        own: Option<StreamKey>,
        build: impl FnOnce(Option<&str>) -> String,
    ) -> Result<(), Error> {
        {
            let mut state = self.lock();
            state.has_room(self.capacity)?;
            let own = own.filter(|key| state.positions.get(key).is_some());
            let own = own.map(|key| (state.new_id("m"), key));
            let text = build(own.as_ref().map(|(id, _)| id.as_str()));
            state.queue.push_back(Outgoing { text, own });
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Registers a request and queues its frame (built with the new id); returns the id and
    /// the receiver of the reply. `own` as for [`Shared::push`].
    pub(crate) fn push_request(
        &self,
        own: Option<StreamKey>,
        build: impl FnOnce(&str) -> String,
    ) -> Result<(String, oneshot::Receiver<Reply>), Error> {
        let (sender, receiver) = oneshot::channel();
        let id = {
            let mut state = self.lock();
            state.has_room(self.capacity)?;
            let id = state.new_id("r");
            let text = build(&id);
            let own = own.map(|key| (id.clone(), key));
            state.queue.push_back(Outgoing { text, own });
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
        self.lock().queue.front().map(|frame| frame.text.clone())
    }

    /// The front frame was written.
    pub(crate) fn sent(&self) {
        let mut state = self.lock();
        if let Some(Outgoing {
            own: Some((id, key)),
            ..
        }) = state.queue.pop_front()
        {
            state.positions.written(id, key);
        }
    }

    /// A frame arrived: track the position of its stream.
    pub(crate) fn observe(&self, frame: &Frame) {
        self.lock().positions.observe(frame);
    }

    /// The connection ended: frames written to it will not be acked.
    pub(crate) fn connection_lost(&self) {
        self.lock().positions.connection_lost();
    }

    /// The client's position in `key`'s stream.
    pub(crate) fn position(&self, key: &StreamKey) -> Option<StreamPosition> {
        self.lock().positions.get(key).cloned()
    }

    pub(crate) fn joined(&self, room: &str) {
        let mut state = self.lock();
        if !state.rooms.iter().any(|r| r == room) {
            state.rooms.push(room.to_owned());
        }
    }

    pub(crate) fn left(&self, room: &str) {
        let mut state = self.lock();
        state.rooms.retain(|r| r != room);
        state.positions.forget(&StreamKey::Room(room.to_owned()));
    }

    pub(crate) fn subscribed(&self, channel: &str) {
        let mut state = self.lock();
        if !state.channels.iter().any(|c| c == channel) {
            state.channels.push(channel.to_owned());
        }
    }

    pub(crate) fn unsubscribed(&self, channel: &str) {
        let mut state = self.lock();
        state.channels.retain(|c| c != channel);
        state
            .positions
            .forget(&StreamKey::Channel(channel.to_owned()));
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
        let with_position = |names: &[String], key: fn(String) -> StreamKey| {
            names
                .iter()
                .map(|name| {
                    let since = state.positions.get(&key(name.clone())).cloned();
                    (name.clone(), since)
                })
                .collect()
        };
        Restore {
            rooms: with_position(&state.rooms, StreamKey::Room),
            channels: with_position(&state.channels, StreamKey::Channel),
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
        let text = |text: &'static str| move |_: Option<&str>| text.to_owned();
        assert!(shared.push(None, text("a")).is_ok());
        assert!(shared.push_request(None, |id| format!("b:{id}")).is_ok());
        assert!(
            shared
                .push(None, text("c"))
                .is_err_and(|e| e.is_queue_full())
        );
        assert_eq!(shared.front().as_deref(), Some("a"));
        shared.sent();
        assert_eq!(shared.front().as_deref(), Some("b:r1"));
        shared.sent();
        assert!(shared.push(None, text("c")).is_ok());
        shared.close();
        assert!(matches!(shared.push(None, text("d")), Err(Error::Closed)));
    }

    #[test]
    fn finishing_fails_waiting_requests() {
        let shared = Shared::new(4);
        let (_, mut reply) = shared.push_request(None, |id| id.to_owned()).unwrap();
        shared.finish();
        assert!(matches!(reply.try_recv(), Ok(Err(Error::Closed))));
        assert!(shared.front().is_none());
    }

    #[test]
    fn own_messages_get_an_id_only_on_followed_streams_and_their_acks_advance() {
        let shared = Shared::new(8);
        let room = || Some(StreamKey::Room("r".into()));
        let frame = |id: Option<&str>| id.unwrap_or("none").to_owned();
        shared.push(room(), frame).unwrap();
        assert_eq!(shared.front().as_deref(), Some("none"), "not followed yet");
        shared.sent();
        let joined = serde_json::json!({"type": "room_joined",
            "payload": {"room": "r", "memberCount": 1, "offset": 4, "epoch": "e"}});
        shared.observe(&serde_json::from_value(joined).unwrap());
        shared.push(room(), frame).unwrap();
        let id = shared.front().unwrap();
        assert!(id.starts_with('m'), "{id}");
        shared.sent();
        let ack = serde_json::json!({"type": "ack", "id": id, "payload": {"id": id, "offset": 5}});
        shared.observe(&serde_json::from_value(ack).unwrap());
        let position = shared.position(&StreamKey::Room("r".into())).unwrap();
        assert_eq!(position.offset, 5);
        let restore = shared.restore();
        assert!(restore.rooms.is_empty(), "joined() was not called");
    }
}
