//! The hub's side of history and recovery (DESIGN.md §7): room messages and channel
//! publications get their stream's next offset and are kept, a client that joins or
//! subscribes with `since` gets what it missed, and `history` reads a stream.
//!
//! Each of these runs under the stream's lock (see `history.rs`): the offset, the storing and
//! the delivery of a message; and the membership, the reply and the replay of a join. That is
//! what closes the race between reading history and becoming a member: a message is published
//! either before the join took the lock (then it is in the replay) or after (then it is
//! delivered live, behind the replay), never both and never neither.
//!
//! In cluster mode the store numbers the messages (`shared.rs`), and a join whose stream this
//! node does not hold a synced copy of waits for one: it is answered later, its reply, replay
//! and `ack` queued together when the copy is read; or, when the store is out of reach or
//! the read slow, without the copy (`early.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use super::channels::Subscriber;
use super::early;
use super::history::{Locked, Recovery};
use super::lifecycle::MAX_MEMBERS_LISTED;
use super::rooms::MemberList;
use super::{ConnHandle, Hub};
use crate::broker::Topic;
use crate::ids::{ChannelSpec, ConnId, RoomId, StreamId};
use crate::protocol::{
    HistoryPayload, HistoryRequest, ServerFrame, ServerKind, StreamPosition, ack_frame,
};
use crate::ws::frame;

/// What a send did.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// Local connections that got (or, in cluster mode, will get) the frame.
    pub(crate) delivered: usize,
    /// The offset the message was given.
    pub(crate) offset: Offset,
}

/// A message's offset, as far as the sender can know it now.
#[derive(Debug, Clone)]
pub(crate) enum Offset {
    /// Not a stream message, or history is off (or the store is unreachable).
    None,
    /// This one.
    Given(u64),
    /// The cluster's store gives it; the `ack`, if one was asked for, follows with it, and
    /// the slot holds it from then on.
    Later(LaterOffset),
}

/// The offset the cluster's store gives a message, once it answers: written by the task that
/// acks the sender, read by the sender's session when the client repeats the frame (its `ack`
/// is sent again, with the offset as the first one had it).
#[derive(Debug, Clone, Default)]
pub(crate) struct LaterOffset(Arc<AtomicU64>);

impl LaterOffset {
    /// Records the store's answer (`None`: it gave no offset).
    pub(crate) fn set(&self, offset: Option<u64>) {
        // Offsets start at 1: 0 is "none (yet)".
        self.0.store(offset.unwrap_or(0), Ordering::Release);
    }

    /// The offset, once the store gave one.
    pub(crate) fn get(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Acquire)).filter(|&offset| offset != 0)
    }
}

/// How a join or subscription is answered: its reply (built from what the hub found), and the
/// client's id for the `ack` that ends an answer given later (an answer given now is acked by
/// the caller).
pub(crate) struct Request<T> {
    /// The client's last position in the stream.
    pub(crate) since: Option<StreamPosition>,
    /// Builds the reply.
    pub(crate) reply: Box<dyn FnOnce(&T) -> Bytes + Send>,
    /// The client's `id`.
    pub(crate) id: Option<Box<RawValue>>,
}

/// When a join or subscription was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answered {
    /// Now; `new`: the connection was not a member (subscriber) before. The caller acks.
    Now {
        /// The connection was not a member before.
        new: bool,
    },
    /// Later, once this node holds the stream (cluster mode); the hub acks then.
    Later,
}

/// The outcome of a join, for the `room_joined` reply.
#[derive(Debug)]
pub(crate) struct RoomJoin {
    /// The room's users on every node, at most [`MAX_MEMBERS_LISTED`] listed.
    pub(crate) members: MemberList,
    /// The room's stream position (`None`: history is off).
    pub(crate) position: Option<StreamPosition>,
    /// Whether the `since` position was recovered (`None`: none was given).
    pub(crate) recovered: Option<bool>,
}

/// The outcome of a subscription, for the `subscribed` reply.
#[derive(Debug)]
pub(crate) struct Subscribed {
    /// The channel's stream position (`None`: history is off, or a pattern or presence
    /// channel, which have no stream).
    pub(crate) position: Option<StreamPosition>,
    /// Whether the `since` position was recovered (`None`: none was given).
    pub(crate) recovered: Option<bool>,
}

/// A stream's retained messages, as `history` returns them.
#[derive(Debug)]
pub(crate) struct HistoryPage {
    /// The stream's latest position.
    pub(crate) position: StreamPosition,
    /// The messages, oldest first, as delivered.
    pub(crate) frames: Vec<Bytes>,
}

impl HistoryPage {
    /// The `history` reply to a client's request.
    pub(crate) fn frame(&self, stream: &StreamId, id: Option<&RawValue>) -> Bytes {
        let frame = ServerFrame::new(ServerKind::History, self.payload());
        let frame = match stream {
            StreamId::Room(room) => frame.room(room.as_str()),
            StreamId::Channel(channel) => frame.channel(channel.as_str()),
        };
        frame.stamped().reply_to(id).encode()
    }

    /// The `history` payload: the position, and each kept frame's JSON as it was delivered.
    pub(crate) fn payload(&self) -> HistoryPayload<&RawValue> {
        HistoryPayload {
            epoch: self.position.epoch.clone(),
            offset: self.position.offset,
            publications: self
                .frames
                .iter()
                .filter_map(|frame| {
                    // Frames this server encoded: their payload is JSON text.
                    std::str::from_utf8(frame::server_payload(frame))
                        .ok()
                        .and_then(|json| serde_json::from_str(json).ok())
                })
                .collect(),
        }
    }
}

impl Hub {
    /// Sends a frame to every member of `room` on every node but `except`. A `message` frame
    /// is a room message: with history on it gets the room's next offset and is kept; `ack`
    /// (the sender and its id) gets the offset when the cluster's store gives it later.
    pub(crate) fn send_room_frame<P: Serialize>(
        &self,
        room: &RoomId,
        frame: &ServerFrame<'_, P>,
        except: Option<ConnId>,
        ack: Option<(&ConnHandle, &RawValue)>,
    ) -> Sent {
        let inner = &self.inner;
        let topic = || Topic::Room(room.clone());
        if frame.kind() != ServerKind::Message.as_str() || !inner.history.enabled() {
            return Sent {
                delivered: self.publish(topic(), frame.encode(), except),
                offset: Offset::None,
            };
        }
        if inner.cluster.store().is_some() {
            let stream = StreamId::Room(room.clone());
            return self.append(stream, frame.by_ref(), except, ack);
        }
        let mut stream = inner.history.room(room, self.now_ms());
        let offset = stream.next_offset();
        let frame = frame.by_ref().offset(offset).encode();
        stream.push(frame.clone());
        Sent {
            delivered: self.publish(topic(), frame, except),
            offset: Offset::Given(offset),
        }
    }

    /// Adds `conn` to `room` (see `lifecycle.rs` for what a join tells the others) and queues
    /// the reply, then, when `since` is recovered, every message after it.
    pub(crate) fn join_room(
        &self,
        room: &RoomId,
        conn: &ConnHandle,
        request: Request<RoomJoin>,
    ) -> Answered {
        let inner = &self.inner;
        if !inner.history.enabled() {
            let join = RoomJoin {
                members: self.members_with(room, conn),
                position: None,
                recovered: request.since.map(|_| false),
            };
            self.deliver_counted(conn, &(request.reply)(&join));
            let new = self.add_member(room, conn);
            return Answered::Now { new };
        }
        let mut stream = inner.history.room(room, self.now_ms());
        if stream.synced() && !request.since.as_ref().is_some_and(|s| stream.behind(s)) {
            let new = self.join_locked(&mut stream, room, conn, request);
            return Answered::Now { new };
        }
        let stream_id = StreamId::Room(room.clone());
        if self.store_out_of_reach() {
            let new = self.join_early(room, conn, request);
            self.sync_early(stream, stream_id);
            return Answered::Now { new };
        }
        let (room, conn) = (room.clone(), conn.clone());
        self.answer_later(stream, stream_id, move |hub, stream, synced| {
            if conn.closing_since().is_none() {
                let mut request = request;
                let id = request.id.take();
                if synced {
                    hub.join_locked(stream, &room, &conn, request);
                } else {
                    hub.join_early(&room, &conn, request);
                    // The read this answer did not wait for is under way.
                    stream.answered_early();
                }
                hub.ack_later(&conn, id);
            }
        })
    }

    /// Subscribes `conn` to `spec` and queues the reply, then, when `since` is recovered,
    /// every publication after it. Patterns and presence channels have no stream.
    pub(crate) fn subscribe_conn(
        &self,
        spec: &ChannelSpec,
        conn: &ConnHandle,
        request: Request<Subscribed>,
    ) -> Answered {
        let inner = &self.inner;
        let channel = match spec {
            ChannelSpec::Exact(channel)
                if inner.history.enabled() && channel.watched_user().is_none() =>
            {
                channel
            }
            _ => {
                let subscribed = Subscribed {
                    position: None,
                    recovered: request.since.map(|_| false),
                };
                self.deliver_counted(conn, &(request.reply)(&subscribed));
                let new = inner
                    .channels
                    .add(spec, Subscriber::Conn(conn), &inner.observers());
                return Answered::Now { new };
            }
        };
        let mut stream = inner.history.channel(channel, self.now_ms());
        if stream.synced() && !request.since.as_ref().is_some_and(|s| stream.behind(s)) {
            let new = self.subscribe_locked(&mut stream, spec, conn, request);
            return Answered::Now { new };
        }
        let stream_id = StreamId::Channel(channel.clone());
        if self.store_out_of_reach() {
            let new = self.subscribe_early(spec, conn, request);
            self.sync_early(stream, stream_id);
            return Answered::Now { new };
        }
        let (spec, conn) = (spec.clone(), conn.clone());
        self.answer_later(stream, stream_id, move |hub, stream, synced| {
            if conn.closing_since().is_none() {
                let mut request = request;
                let id = request.id.take();
                if synced {
                    hub.subscribe_locked(stream, &spec, &conn, request);
                } else {
                    hub.subscribe_early(&spec, &conn, request);
                    // The read this answer did not wait for is under way.
                    stream.answered_early();
                }
                hub.ack_later(&conn, id);
            }
        })
    }

    /// Joins under the stream's lock: reply, replay, then membership, so that the reply comes
    /// before anything sent to the room after it (stream messages wait for the lock; other
    /// frames, such as notices, reach members only).
    fn join_locked(
        &self,
        stream: &mut Locked<'_>,
        room: &RoomId,
        conn: &ConnHandle,
        request: Request<RoomJoin>,
    ) -> bool {
        let recovery = request.since.map(|since| stream.recover(&since));
        let join = RoomJoin {
            members: self.members_with(room, conn),
            position: Some(stream.position()),
            recovered: recovery.as_ref().map(Recovery::recovered),
        };
        self.deliver_counted(conn, &(request.reply)(&join));
        self.replay(conn, recovery);
        self.add_member(room, conn)
    }

    /// The room's members as they are once `conn` has joined.
    pub(super) fn members_with(&self, room: &RoomId, conn: &ConnHandle) -> MemberList {
        let mut members = self.member_list(room, MAX_MEMBERS_LISTED);
        if !members.users.contains(conn.user()) && !self.inner.rooms.has_user(room, conn.user()) {
            members.count += 1;
            if members.users.len() < MAX_MEMBERS_LISTED {
                members.users.push(conn.user().clone());
            }
        }
        members
    }

    /// Subscribes under the stream's lock: reply, replay, then the subscription.
    fn subscribe_locked(
        &self,
        stream: &mut Locked<'_>,
        spec: &ChannelSpec,
        conn: &ConnHandle,
        request: Request<Subscribed>,
    ) -> bool {
        let inner = &self.inner;
        let recovery = request.since.map(|since| stream.recover(&since));
        let subscribed = Subscribed {
            position: Some(stream.position()),
            recovered: recovery.as_ref().map(Recovery::recovered),
        };
        self.deliver_counted(conn, &(request.reply)(&subscribed));
        self.replay(conn, recovery);
        inner
            .channels
            .add(spec, Subscriber::Conn(conn), &inner.observers())
    }

    /// Cluster mode: `answer` runs under the stream's lock once this node holds a synced copy
    /// of it, caught up with the store (a client that comes from another node may have seen
    /// messages this node has not received yet), with `true`; or, if that takes longer than
    /// [`early::ANSWER_WITHIN`], then, with `false`. Until then the node receives the
    /// stream's messages (so that none is missed between the read and the first of them).
    fn answer_later(
        &self,
        mut stream: Locked<'_>,
        id: StreamId,
        answer: impl FnOnce(&Hub, &mut Locked<'_>, bool) + Send + 'static,
    ) -> Answered {
        self.inner.cluster.broker().subscribe(&shared_topic(&id));
        let deadline = self.now_ms() + early::ANSWER_WITHIN.as_millis() as u64;
        let slot = self
            .inner
            .waiting
            .add(id.clone(), deadline, Box::new(answer));
        let hub = std::sync::Arc::downgrade(&self.inner);
        let answer: super::history::Deferred = Box::new(move |stream| {
            let answer = slot.lock().take();
            if let (Some(inner), Some(answer)) = (hub.upgrade(), answer) {
                answer(&Hub { inner }, stream, true);
            }
        });
        let read = if stream.synced() {
            stream.after_catching_up(answer)
        } else {
            stream.when_synced(answer)
        };
        drop(stream);
        if read {
            self.read_stream(id);
        }
        Answered::Later
    }

    /// The `ack` that ends an answer given later.
    fn ack_later(&self, conn: &ConnHandle, id: Option<Box<RawValue>>) {
        if let Some(id) = id {
            self.deliver_counted(conn, &ack_frame(&id, None));
        }
    }

    /// Cluster mode: once a room or channel has no local member left, its copy is no longer
    /// kept current (the node stops receiving it). Called with the stream's lock held.
    pub(super) fn release_if_vacated(&self, id: &StreamId, stream: &mut Locked<'_>) {
        let inner = &self.inner;
        let vacated = match id {
            StreamId::Room(room) => !inner.rooms.contains(room),
            StreamId::Channel(channel) => !inner.channels.contains(channel),
        };
        if vacated && inner.cluster.store().is_some() {
            inner.cluster.broker().unsubscribe(&shared_topic(id));
            stream.unsync();
        }
    }

    /// Up to `limit` retained messages of `stream`: the first ones after `since` when given,
    /// else the latest ones, from this node's copy. `None` when history is off, or when the
    /// copy is not synced (cluster mode: read the store, `history_from_store`).
    pub(crate) fn history(
        &self,
        stream: &StreamId,
        limit: Option<usize>,
        since: Option<&StreamPosition>,
    ) -> Option<HistoryPage> {
        let history = &self.inner.history;
        if !history.enabled() {
            return None;
        }
        let mut locked = self.lock_stream(stream);
        if !locked.synced() {
            return None;
        }
        let limit = limit.unwrap_or(history.size());
        Some(HistoryPage {
            position: locked.position(),
            frames: locked.read(since, limit),
        })
    }

    /// Answers a client's `history` request: from this node's copy at once, or (cluster mode,
    /// no synced copy) from the store later, then with the `ack`. `None` when history is off.
    pub(crate) fn history_request(
        &self,
        conn: &ConnHandle,
        request: &HistoryRequest,
        id: Option<&RawValue>,
    ) -> Option<Answered> {
        let (stream, limit, since) = (&request.stream, request.limit, request.since.as_ref());
        if let Some(page) = self.history(stream, limit, since) {
            self.deliver_counted(conn, &page.frame(stream, id));
            return Some(Answered::Now { new: false });
        }
        let store = self
            .inner
            .cluster
            .store()
            .filter(|_| self.inner.history.enabled())?;
        let hub = std::sync::Arc::downgrade(&self.inner);
        let (conn, id) = (conn.clone(), id.map(ToOwned::to_owned));
        let (stream, limit, since) = (stream.clone(), limit, request.since.clone());
        store.read(
            &stream.clone(),
            Box::new(move |read| {
                let (Some(inner), Ok(stored)) = (hub.upgrade(), read) else {
                    return;
                };
                let hub = Hub { inner };
                let page = hub.page(stored, limit, since.as_ref());
                hub.deliver_counted(&conn, &page.frame(&stream, id.as_deref()));
                hub.ack_later(&conn, id);
            }),
        );
        Some(Answered::Later)
    }

    /// Locks the stream of `id`.
    pub(super) fn lock_stream(&self, id: &StreamId) -> Locked<'_> {
        let now = self.now_ms();
        match id {
            StreamId::Room(room) => self.inner.history.room(room, now),
            StreamId::Channel(channel) => self.inner.history.channel(channel, now),
        }
    }

    /// Removes the streams of rooms and channels nobody is in whose messages have all expired.
    /// Returns how many.
    pub(crate) fn sweep_history(&self) -> usize {
        let inner = &self.inner;
        inner.history.sweep(
            self.now_ms(),
            |room| inner.rooms.contains(room),
            |channel| inner.channels.contains(channel),
        )
    }

    /// Queues a recovered stream's messages on `conn`.
    fn replay(&self, conn: &ConnHandle, recovery: Option<Recovery>) {
        if let Some(Recovery::Recovered(frames)) = recovery {
            for frame in &frames {
                self.deliver_counted(conn, frame);
            }
        }
    }
}

/// The broker topic a stream's messages come on.
pub(super) fn shared_topic(id: &StreamId) -> Topic {
    match id {
        StreamId::Room(room) => Topic::Room(room.clone()),
        StreamId::Channel(channel) => Topic::Channel(channel.clone()),
    }
}
