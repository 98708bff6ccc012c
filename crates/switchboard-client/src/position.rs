//! Where the client is in each room's and channel's stream (DESIGN.md §7): the epoch from the
//! last `room_joined`/`subscribed`, and the highest offset received on the stream or acked for
//! the client's own message. A reconnect sends it as `since`, so the server replays what was
//! missed.
//!
//! Pure bookkeeping over frames as they arrive; the connection task feeds it every frame (see
//! [`Positions::observe`]), under the shared state's lock. It does not decide what to rejoin:
//! that is the list of rooms and channels in `shared.rs`.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;
use switchboard_protocol::{ClientKind, ServerKind, StreamPosition};

use crate::event::Frame;

/// A stream: a room, or an exact channel (patterns and `presence:` channels have none).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum StreamKey {
    Room(String),
    Channel(String),
}

impl StreamKey {
    /// The stream a client frame of `kind` with `payload` adds to: a room `message` or a
    /// channel `publish`. Its ack carries the offset it was given.
    pub(crate) fn of_own(kind: &str, payload: &Value) -> Option<Self> {
        let name = |field: &str| payload.get(field)?.as_str().map(str::to_owned);
        match ClientKind::parse(kind)? {
            ClientKind::Message => name("room").map(Self::Room),
            ClientKind::Publish => name("channel").map(Self::Channel),
            _ => None,
        }
    }
}

/// The position of every stream the client is in, and the own messages written on the current
/// connection whose ack (with their offset) has not come yet.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    streams: HashMap<StreamKey, StreamPosition>,
    /// Request id -> the stream of an own message written on this connection. Emptied when
    /// the connection ends: those acks can no longer come.
    unacked: HashMap<String, StreamKey>,
}

/// A `room_joined` or `subscribed` payload: the stream's latest position and the verdict.
#[derive(Deserialize)]
struct Reply {
    room: Option<String>,
    channel: Option<String>,
    offset: Option<u64>,
    epoch: Option<String>,
    recovered: Option<bool>,
}

impl Positions {
    /// The position to send as `since` when rejoining `key`.
    pub(crate) fn get(&self, key: &StreamKey) -> Option<&StreamPosition> {
        self.streams.get(key)
    }

    /// Forgets `key` (left or unsubscribed): a later join starts afresh.
    pub(crate) fn forget(&mut self, key: &StreamKey) {
        self.streams.remove(key);
    }

    /// An own message with request id `id` was written to `key`'s stream.
    pub(crate) fn written(&mut self, id: String, key: StreamKey) {
        self.unacked.insert(id, key);
    }

    /// The connection ended: no written message will be acked.
    pub(crate) fn connection_lost(&mut self) {
        self.unacked.clear();
    }

    /// Updates the positions with a server frame.
    pub(crate) fn observe(&mut self, frame: &Frame) {
        let Some(kind) = ServerKind::parse(&frame.kind) else {
            return;
        };
        match kind {
            ServerKind::RoomJoined | ServerKind::Subscribed => {
                let Ok(reply) = Reply::deserialize(&frame.payload) else {
                    return;
                };
                let key = match (kind, reply.room, reply.channel) {
                    (ServerKind::RoomJoined, Some(room), _) => StreamKey::Room(room),
                    (ServerKind::Subscribed, _, Some(channel)) => StreamKey::Channel(channel),
                    _ => return,
                };
                let latest = reply
                    .offset
                    .zip(reply.epoch)
                    .map(|(offset, epoch)| StreamPosition { offset, epoch });
                self.joined(key, latest, reply.recovered);
            }
            ServerKind::Message | ServerKind::Publish => {
                let key = match kind {
                    ServerKind::Message => frame.room.clone().map(StreamKey::Room),
                    _ => frame.channel.clone().map(StreamKey::Channel),
                };
                if let (Some(key), Some(offset)) = (key, frame.offset) {
                    self.advance(&key, offset);
                }
            }
            ServerKind::Ack | ServerKind::Error => {
                let Some(key) = frame.reply_to().and_then(|id| self.unacked.remove(&id)) else {
                    return;
                };
                if let Some(offset) = frame.payload.get("offset").and_then(Value::as_u64) {
                    self.advance(&key, offset);
                }
            }
            ServerKind::RoomLeft => {
                if let Some(room) = &frame.room {
                    self.forget(&StreamKey::Room(room.clone()));
                }
            }
            ServerKind::Unsubscribed => {
                if let Some(channel) = frame.payload.get("channel").and_then(Value::as_str) {
                    self.forget(&StreamKey::Channel(channel.to_owned()));
                }
            }
            _ => {}
        }
    }

    /// A join or subscription was answered with the stream's `latest` position. After a
    /// recovered rejoin the position stays where it was: the replay is still to come, and if
    /// the connection drops during it, the rest must be asked for again. Otherwise (a first
    /// join, or nothing recovered) the client starts from the stream's latest.
    fn joined(&mut self, key: StreamKey, latest: Option<StreamPosition>, recovered: Option<bool>) {
        let Some(latest) = latest else {
            // History is off, or a pattern: no stream to follow.
            self.streams.remove(&key);
            return;
        };
        let continues = recovered == Some(true)
            && self
                .streams
                .get(&key)
                .is_some_and(|known| known.epoch == latest.epoch);
        if !continues {
            self.streams.insert(key, latest);
        }
    }

    /// A message at `offset` arrived on `key` (live, replayed, or acked as our own).
    fn advance(&mut self, key: &StreamKey, offset: u64) {
        if let Some(position) = self.streams.get_mut(key) {
            position.offset = position.offset.max(offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame(value: Value) -> Frame {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    fn room(positions: &Positions) -> Option<(u64, &str)> {
        positions
            .get(&StreamKey::Room("r".into()))
            .map(|p| (p.offset, p.epoch.as_str()))
    }

    fn joined(offset: u64, epoch: &str, recovered: Option<bool>) -> Frame {
        let mut payload = json!({"room": "r", "offset": offset, "epoch": epoch});
        if let Some(recovered) = recovered {
            payload["recovered"] = json!(recovered);
        }
        frame(json!({"type": "room_joined", "room": "r", "payload": payload}))
    }

    fn message(offset: u64) -> Frame {
        frame(json!({"type": "message", "room": "r", "offset": offset, "payload": {}}))
    }

    #[test]
    fn a_first_join_starts_at_the_latest_and_messages_advance_it() {
        let mut positions = Positions::default();
        positions.observe(&message(3));
        assert_eq!(room(&positions), None, "not joined: nothing to track");
        positions.observe(&joined(4, "e", None));
        assert_eq!(room(&positions), Some((4, "e")));
        positions.observe(&message(5));
        positions.observe(&message(6));
        assert_eq!(room(&positions), Some((6, "e")));
    }

    #[test]
    fn a_recovered_rejoin_waits_for_the_replay_and_a_lost_one_starts_over() {
        let mut positions = Positions::default();
        positions.observe(&joined(2, "e", None));
        positions.observe(&joined(9, "e", Some(true)));
        assert_eq!(
            room(&positions),
            Some((2, "e")),
            "the replay has not come yet"
        );
        positions.observe(&message(3));
        assert_eq!(room(&positions), Some((3, "e")));
        positions.observe(&joined(1, "new", Some(false)));
        assert_eq!(room(&positions), Some((1, "new")));
        let off = frame(json!({"type": "room_joined", "payload": {"room": "r", "memberCount": 1}}));
        positions.observe(&off);
        assert_eq!(room(&positions), None, "history off: no position");
    }

    #[test]
    fn acks_of_own_messages_advance_until_the_connection_is_lost() {
        let mut positions = Positions::default();
        positions.observe(&joined(0, "e", None));
        let key = StreamKey::of_own("message", &json!({"room": "r", "content": 1}));
        assert_eq!(key, Some(StreamKey::Room("r".into())));
        let ack = |id: &str, offset: u64| {
            frame(json!({"type": "ack", "id": id, "payload": {"id": id, "offset": offset}}))
        };
        positions.written("m1".into(), StreamKey::Room("r".into()));
        positions.written("m2".into(), StreamKey::Room("r".into()));
        positions.observe(&ack("m1", 1));
        assert_eq!(room(&positions), Some((1, "e")));
        positions.observe(&ack("m9", 7));
        assert_eq!(room(&positions), Some((1, "e")), "not an own message");
        positions.connection_lost();
        positions.observe(&ack("m2", 2));
        assert_eq!(room(&positions), Some((1, "e")));
    }

    #[test]
    fn channels_are_tracked_by_name_and_forgotten_when_left() {
        let mut positions = Positions::default();
        let subscribed = |payload: Value| frame(json!({"type": "subscribed", "payload": payload}));
        positions.observe(&subscribed(
            json!({"channel": "news", "offset": 1, "epoch": "e"}),
        ));
        positions.observe(&subscribed(json!({"channel": "room:*"})));
        positions.observe(&frame(
            json!({"type": "publish", "channel": "news", "offset": 2, "payload": 0}),
        ));
        let news = StreamKey::Channel("news".into());
        assert_eq!(positions.get(&news).map(|p| p.offset), Some(2));
        assert_eq!(positions.get(&StreamKey::Channel("room:*".into())), None);
        positions.observe(&frame(
            json!({"type": "unsubscribed", "payload": {"channel": "news"}}),
        ));
        assert_eq!(positions.get(&news), None);
        positions.observe(&joined(3, "e", None));
        positions.observe(&frame(
            json!({"type": "room_left", "room": "r", "payload": {"room": "r"}}),
        ));
        assert_eq!(room(&positions), None);
    }
}
