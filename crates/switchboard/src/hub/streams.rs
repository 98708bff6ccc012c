//! The hub's side of history and recovery (DESIGN.md §7): room messages and channel
//! publications get their stream's next offset and are kept, a client that joins or
//! subscribes with `since` gets what it missed, and `history` reads a stream.
//!
//! Each of these runs under the stream's lock (see `history.rs`): the offset, the storing and
//! the delivery of a message; and the membership, the reply and the replay of a join. That is
//! what closes the race between reading history and becoming a member: a message is published
//! either before the join took the lock (then it is in the replay) or after (then it is
//! delivered live, behind the replay), never both and never neither.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use super::channels::Subscriber;
use super::history::{Locked, Recovery};
use super::lifecycle::MAX_MEMBERS_LISTED;
use super::rooms::MemberList;
use super::{ConnHandle, Hub};
use crate::broker::Topic;
use crate::ids::{ChannelSpec, ConnId, RoomId, StreamId};
use crate::protocol::{HistoryPayload, ServerFrame, ServerKind, StreamPosition};
use crate::ws::frame;

/// What a send did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Local connections that got the frame.
    pub(crate) delivered: usize,
    /// The offset the message was given (`None`: history is off, or not a stream message).
    pub(crate) offset: Option<u64>,
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
    /// is a room message: with history on it gets the room's next offset and is kept.
    pub(crate) fn send_room_frame<P: Serialize>(
        &self,
        room: &RoomId,
        frame: &ServerFrame<'_, P>,
        except: Option<ConnId>,
    ) -> Sent {
        let inner = &self.inner;
        let topic = || Topic::Room(room.clone());
        if frame.kind() != ServerKind::Message.as_str() || !inner.history.enabled() {
            return Sent {
                delivered: self.publish(topic(), frame.encode(), except),
                offset: None,
            };
        }
        let mut stream = inner.history.room(room, self.now_ms());
        let offset = stream.next_offset();
        let frame = frame.by_ref().offset(offset).encode();
        stream.push(frame.clone());
        Sent {
            delivered: self.publish(topic(), frame, except),
            offset: Some(offset),
        }
    }

    /// Adds `conn` to `room` (see `lifecycle.rs` for what a join tells the others) and queues
    /// the reply `reply` builds, then, when `since` is recovered, every message after it.
    /// Returns whether `conn` was not a member before.
    pub(crate) fn join_room(
        &self,
        room: &RoomId,
        conn: &ConnHandle,
        since: Option<&StreamPosition>,
        reply: impl FnOnce(&RoomJoin) -> Bytes,
    ) -> bool {
        let inner = &self.inner;
        let mut stream = inner
            .history
            .enabled()
            .then(|| inner.history.room(room, self.now_ms()));
        let new = self.add_member(room, conn);
        let recovery = since.map(|since| recover(stream.as_mut(), since));
        let join = RoomJoin {
            members: self.member_list(room, MAX_MEMBERS_LISTED),
            position: stream.as_ref().map(Locked::position),
            recovered: recovery.as_ref().map(Recovery::recovered),
        };
        self.deliver_counted(conn, &reply(&join));
        self.replay(conn, recovery);
        // Only now may the next message come: it goes behind the reply and the replay.
        drop(stream);
        new
    }

    /// Subscribes `conn` to `spec` and queues the reply `reply` builds, then, when `since` is
    /// recovered, every publication after it. Patterns and presence channels have no stream.
    /// Returns whether `conn` was not subscribed before.
    pub(crate) fn subscribe_conn(
        &self,
        spec: &ChannelSpec,
        conn: &ConnHandle,
        since: Option<&StreamPosition>,
        reply: impl FnOnce(&Subscribed) -> Bytes,
    ) -> bool {
        let inner = &self.inner;
        let mut stream = match spec {
            ChannelSpec::Exact(channel)
                if inner.history.enabled() && channel.watched_user().is_none() =>
            {
                Some(inner.history.channel(channel, self.now_ms()))
            }
            _ => None,
        };
        let new = inner
            .channels
            .add(spec, Subscriber::Conn(conn), &inner.cluster);
        let recovery = since.map(|since| recover(stream.as_mut(), since));
        let subscribed = Subscribed {
            position: stream.as_ref().map(Locked::position),
            recovered: recovery.as_ref().map(Recovery::recovered),
        };
        self.deliver_counted(conn, &reply(&subscribed));
        self.replay(conn, recovery);
        // Only now may the next publication come: it goes behind the reply and the replay.
        drop(stream);
        new
    }

    /// Up to `limit` retained messages of `stream`: the first ones after `since` when given,
    /// else the latest ones. `None` when history is off.
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
        let now = self.now_ms();
        let mut locked = match stream {
            StreamId::Room(room) => history.room(room, now),
            StreamId::Channel(channel) => history.channel(channel, now),
        };
        let limit = limit.unwrap_or(history.size());
        Some(HistoryPage {
            position: locked.position(),
            frames: locked.read(since, limit),
        })
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

/// What a stream (if there is one) says about `since`.
fn recover(stream: Option<&mut Locked<'_>>, since: &StreamPosition) -> Recovery {
    stream.map_or(Recovery::Lost, |stream| stream.recover(since))
}
