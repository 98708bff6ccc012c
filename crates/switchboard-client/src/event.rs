//! What the server sends, as received ([`Frame`]) and as typed events ([`Event`]), plus the
//! client's own connection lifecycle events.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use switchboard_protocol::{
    ConnectPayload, ErrorPayload, ServerKind, StreamPosition, TokenExpiringPayload,
};

/// A server frame as received: `{type, payload, room?, channel?, userId?, timestamp?, offset?,
/// id?}`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Frame {
    /// The frame type, e.g. `message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload (`Null` when absent).
    #[serde(default)]
    pub payload: Value,
    /// The room it concerns.
    pub room: Option<String>,
    /// The channel it concerns.
    pub channel: Option<String>,
    /// The sender, or the user it is about.
    pub user_id: Option<String>,
    /// When the server sent it, in ms since the epoch.
    pub timestamp: Option<u64>,
    /// A room message's or channel publication's place in its stream (history on).
    pub offset: Option<u64>,
    /// The id of the client frame it answers.
    pub id: Option<Value>,
}

impl Frame {
    /// The id of the client frame this answers, as a string (ids may be strings or numbers).
    pub(crate) fn reply_to(&self) -> Option<String> {
        match self.id.as_ref()? {
            Value::String(id) => Some(id.clone()),
            Value::Number(id) => Some(id.to_string()),
            _ => None,
        }
    }
}

/// A user's presence: `online`, `away` or `offline`, with optional metadata.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Presence {
    /// The user.
    pub user_id: String,
    /// `online`, `away` or `offline`.
    pub status: String,
    /// What the user last set with their status.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Last activity, in ms since the epoch.
    #[serde(default)]
    pub last_seen: Option<u64>,
}

/// The server's `connect` frame: who this connection is. The protocol crate's payload, as the
/// server writes it.
pub type ConnectInfo = ConnectPayload;

/// Why the client stopped for good. The last event before [`Events`](crate::Events) ends.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClosedBy {
    /// [`Client::close`](crate::Client::close), or every handle dropped.
    Client,
    /// The server refused the connection (HTTP 401/403 or close 1008), with its reason.
    Refused(String),
    /// The reconnect policy's attempts ran out.
    GaveUp {
        /// Attempts made in a row.
        attempts: u32,
    },
}

/// An event: a typed server frame, or a change of the connection.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A connection is up (the first, or a reconnection after which rooms and channels are
    /// being rejoined and the queue flushed).
    Connected {
        /// The server's `connect` frame.
        info: ConnectInfo,
        /// Whether an earlier connection of this client was lost.
        reconnected: bool,
    },
    /// The connection was lost; a reconnect follows unless [`Event::Closed`] does.
    Disconnected {
        /// The server's close code, when it sent one.
        code: Option<u16>,
        /// What happened.
        reason: String,
    },
    /// The next connection attempt is due after `delay`.
    Reconnecting {
        /// The attempt's number (2 is the first retry).
        attempt: u32,
        /// The backoff before it.
        delay: Duration,
    },
    /// The client stopped for good; no events follow.
    Closed(ClosedBy),
    /// `room_joined`: this connection is in `room`.
    ///
    /// After a reconnect the client rejoins with the last position it had (`since`), and
    /// `recovered` is the server's verdict: `Some(true)`, the missed messages follow as
    /// [`Event::Message`]s, in order, each once, then live ones; `Some(false)`, messages may
    /// have been missed and none are replayed: reload the room from the application's own
    /// source of truth (or [`Client::history`](crate::Client::history)). `None` for a join
    /// without `since` (the first one).
    RoomJoined {
        /// The room.
        room: String,
        /// Members listed by the server (at most 1000) with their presence.
        members: Vec<Presence>,
        /// The exact member count.
        member_count: u64,
        /// The room's latest position when the server answered (`None`: history is off).
        position: Option<StreamPosition>,
        /// Whether what was missed since the last connection is replayed (see above).
        recovered: Option<bool>,
    },
    /// `room_left`: this connection left `room`.
    RoomLeft {
        /// The room.
        room: String,
    },
    /// `user_joined`: another user joined a room this connection is in.
    UserJoined {
        /// The room.
        room: String,
        /// The user.
        user_id: String,
    },
    /// `user_left`: a user's last connection left the room.
    UserLeft {
        /// The room.
        room: String,
        /// The user.
        user_id: String,
    },
    /// `message`: a room message from another member.
    Message {
        /// The room.
        room: String,
        /// The sender (absent for messages from the server API without one).
        user_id: Option<String>,
        /// When the server sent it, in ms since the epoch.
        timestamp: Option<u64>,
        /// Its place in the room's stream (`None`: history is off).
        offset: Option<u64>,
        /// The payload as sent, without `room`.
        payload: Value,
    },
    /// `broadcast`: a message to every connection.
    Broadcast {
        /// The sender.
        user_id: Option<String>,
        /// When the server sent it, in ms since the epoch.
        timestamp: Option<u64>,
        /// The payload as sent.
        payload: Value,
    },
    /// `publish`: a publication on a subscribed channel.
    Publish {
        /// The channel.
        channel: String,
        /// The publisher (absent for the server API and the library).
        user_id: Option<String>,
        /// When it was published, in ms since the epoch.
        timestamp: Option<u64>,
        /// Its place in the channel's stream (`None`: history is off).
        offset: Option<u64>,
        /// The published data.
        data: Value,
    },
    /// `subscribed`: the channel subscription is in place. `recovered` as for
    /// [`Event::RoomJoined`]; the replay arrives as [`Event::Publish`]es.
    Subscribed {
        /// The channel.
        channel: String,
        /// The channel's latest position (`None`: history is off, or a pattern or
        /// `presence:` channel, which have no stream).
        position: Option<StreamPosition>,
        /// Whether what was missed since the last connection is replayed.
        recovered: Option<bool>,
    },
    /// `unsubscribed`: the channel subscription is gone.
    Unsubscribed {
        /// The channel.
        channel: String,
    },
    /// `presence`: a user's presence changed.
    Presence(Presence),
    /// `error` not tied to a pending request (e.g. for a frame sent with `send`).
    Error {
        /// The error code.
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// `token_expiring`: the connection's token expires at `expires_at` (ms since the epoch)
    /// and the server closes the connection soon after unless it gets a newer one. With a
    /// token provider ([`ClientConfig::with_token_provider`](crate::ClientConfig::with_token_provider))
    /// the client has already asked it for one and sent `refresh`; this event is informative.
    TokenExpiring {
        /// When the token expires, in ms since the epoch.
        expires_at: u64,
    },
    /// Any other frame (application types, or a known type with an unexpected shape).
    Other(Frame),
}

impl From<Frame> for Event {
    /// The typed event of a server frame, such as one of a
    /// [`Client::history`](crate::Client::history) page's publications; [`Event::Other`] for
    /// a frame of another type or shape.
    fn from(frame: Frame) -> Self {
        typed(&frame).unwrap_or(Self::Other(frame))
    }
}

/// Payload of `room_joined`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Joined {
    room: String,
    #[serde(default)]
    members: Vec<Presence>,
    member_count: u64,
    #[serde(flatten)]
    stream: Stream,
}

/// Payload of `subscribed`.
#[derive(Deserialize)]
struct Named {
    channel: String,
    #[serde(flatten)]
    stream: Stream,
}

/// The stream fields of `room_joined` and `subscribed`.
#[derive(Deserialize)]
struct Stream {
    offset: Option<u64>,
    epoch: Option<String>,
    recovered: Option<bool>,
}

impl Stream {
    fn position(self) -> Option<StreamPosition> {
        let (offset, epoch) = self.offset.zip(self.epoch)?;
        Some(StreamPosition { offset, epoch })
    }
}

fn parse<T: serde::de::DeserializeOwned>(value: &Value) -> Option<T> {
    T::deserialize(value).ok()
}

/// `None` when a known type lacks a field it should have; the frame is then passed as
/// [`Event::Other`] rather than dropped.
fn typed(frame: &Frame) -> Option<Event> {
    let room = || frame.room.clone();
    Some(match ServerKind::parse(&frame.kind)? {
        ServerKind::RoomJoined => {
            let joined: Joined = parse(&frame.payload)?;
            let recovered = joined.stream.recovered;
            Event::RoomJoined {
                room: joined.room,
                members: joined.members,
                member_count: joined.member_count,
                position: joined.stream.position(),
                recovered,
            }
        }
        ServerKind::RoomLeft => Event::RoomLeft { room: room()? },
        ServerKind::UserJoined => Event::UserJoined {
            room: room()?,
            user_id: frame.user_id.clone()?,
        },
        ServerKind::UserLeft => Event::UserLeft {
            room: room()?,
            user_id: frame.user_id.clone()?,
        },
        ServerKind::Message => Event::Message {
            room: room()?,
            user_id: frame.user_id.clone(),
            timestamp: frame.timestamp,
            offset: frame.offset,
            payload: frame.payload.clone(),
        },
        ServerKind::Broadcast => Event::Broadcast {
            user_id: frame.user_id.clone(),
            timestamp: frame.timestamp,
            payload: frame.payload.clone(),
        },
        ServerKind::Publish => Event::Publish {
            channel: frame.channel.clone()?,
            user_id: frame.user_id.clone(),
            timestamp: frame.timestamp,
            offset: frame.offset,
            data: frame.payload.clone(),
        },
        ServerKind::Subscribed => {
            let named: Named = parse(&frame.payload)?;
            let recovered = named.stream.recovered;
            Event::Subscribed {
                channel: named.channel,
                position: named.stream.position(),
                recovered,
            }
        }
        ServerKind::Unsubscribed => Event::Unsubscribed {
            channel: parse::<Named>(&frame.payload)?.channel,
        },
        ServerKind::Presence => Event::Presence(parse(&frame.payload)?),
        ServerKind::Error => {
            let error: ErrorPayload<'_, String> = parse(&frame.payload)?;
            Event::Error {
                code: error.code,
                message: error.message.into_owned(),
            }
        }
        ServerKind::TokenExpiring => Event::TokenExpiring {
            expires_at: parse::<TokenExpiringPayload>(&frame.payload)?.expires_at,
        },
        // Handled by the connection task, never passed here.
        ServerKind::Connect | ServerKind::Ping | ServerKind::Pong | ServerKind::Ack => {
            return None;
        }
        // The reply to a `history` request: its frame, as sent, is the answer.
        ServerKind::History => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: Value) -> Event {
        let frame: Frame = serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"));
        Event::from(frame)
    }

    #[test]
    fn server_frames_become_typed_events() {
        let message = event(
            json!({"type": "message", "room": "general", "userId": "alice",
            "timestamp": 1, "offset": 4, "payload": {"content": "hi"}}),
        );
        assert_eq!(
            message,
            Event::Message {
                room: "general".into(),
                user_id: Some("alice".into()),
                timestamp: Some(1),
                offset: Some(4),
                payload: json!({"content": "hi"})
            }
        );
        let joined = event(
            json!({"type": "room_joined", "room": "r", "payload": {"room": "r",
            "members": [{"userId": "a", "status": "online", "lastSeen": 5}], "memberCount": 1,
            "offset": 3, "epoch": "e", "recovered": false}}),
        );
        let Event::RoomJoined {
            members,
            member_count,
            position,
            recovered,
            ..
        } = joined
        else {
            panic!("{joined:?}")
        };
        assert_eq!((members[0].user_id.as_str(), member_count), ("a", 1));
        let expected = StreamPosition {
            offset: 3,
            epoch: "e".into(),
        };
        assert_eq!((position, recovered), (Some(expected), Some(false)));
        let subscribed = event(json!({"type": "subscribed", "payload": {"channel": "room:*"}}));
        assert_eq!(
            subscribed,
            Event::Subscribed {
                channel: "room:*".into(),
                position: None,
                recovered: None
            }
        );
        let publication = event(json!({"type": "publish", "channel": "c", "payload": [1]}));
        assert!(
            matches!(publication, Event::Publish { channel, user_id: None, .. } if channel == "c")
        );
    }

    #[test]
    fn malformed_known_frames_and_unknown_types_are_passed_as_other() {
        for value in [
            json!({"type": "message", "payload": {}}),
            json!({"type": "presence", "payload": {"status": 3}}),
            json!({"type": "room_joined", "payload": "x"}),
            json!({"type": "game_state", "payload": {"turn": 2}}),
        ] {
            assert!(matches!(event(value.clone()), Event::Other(_)), "{value}");
        }
    }

    #[test]
    fn reply_ids_may_be_strings_or_numbers() {
        let frame = |id: Value| -> Frame {
            serde_json::from_value(json!({"type": "ack", "id": id}))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(frame(json!("r1")).reply_to().as_deref(), Some("r1"));
        assert_eq!(frame(json!(7)).reply_to().as_deref(), Some("7"));
        assert_eq!(frame(json!({"x": 1})).reply_to(), None);
    }
}
