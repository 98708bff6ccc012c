//! [`HistoryQuery`]: what a [`Client::history`](crate::Client::history) call asks for, and how
//! its answer is read.

use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_protocol::{HistoryPayload, ServerKind, StreamPosition};

use crate::error::Error;
use crate::event::Frame;
use crate::position::StreamKey;

/// A `history` request: a room's or channel's retained messages. Without
/// [`since`](HistoryQuery::since) the latest ones; with it, the first ones after that
/// position (none if its epoch is not the stream's). At most
/// [`limit`](HistoryQuery::limit), or the server's history size.
///
/// ```
/// use switchboard_client::HistoryQuery;
///
/// let latest_twenty = HistoryQuery::room("general").limit(20);
/// # let _ = latest_twenty;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryQuery {
    stream: StreamKey,
    limit: Option<u32>,
    since: Option<StreamPosition>,
}

impl HistoryQuery {
    /// The history of `room` (membership rights needed, as for joining).
    pub fn room(room: impl Into<String>) -> Self {
        Self::of(StreamKey::Room(room.into()))
    }

    /// The history of the exact channel `channel` (subscribe rights needed).
    pub fn channel(channel: impl Into<String>) -> Self {
        Self::of(StreamKey::Channel(channel.into()))
    }

    fn of(stream: StreamKey) -> Self {
        Self {
            stream,
            limit: None,
            since: None,
        }
    }

    /// At most `limit` messages (the server refuses more than its history size).
    #[must_use]
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Only messages after `since`, such as a [`Room::position`](crate::Room::position).
    #[must_use]
    pub fn since(mut self, since: StreamPosition) -> Self {
        self.since = Some(since);
        self
    }

    /// The request's payload.
    pub(crate) fn payload(&self) -> Value {
        let mut payload = match &self.stream {
            StreamKey::Room(room) => json!({ "room": room }),
            StreamKey::Channel(channel) => json!({ "channel": channel }),
        };
        if let Some(limit) = self.limit {
            payload["limit"] = json!(limit);
        }
        if let Some(since) = &self.since {
            payload["since"] = json!(since);
        }
        payload
    }
}

/// The page a `history` reply carries; any other reply is [`Error::UnexpectedReply`].
pub(crate) fn page(reply: Frame) -> Result<HistoryPayload<Frame>, Error> {
    if reply.kind != ServerKind::History.as_str() {
        return Err(Error::UnexpectedReply {
            kind: reply.kind,
            source: None,
        });
    }
    HistoryPayload::deserialize(reply.payload).map_err(|source| Error::UnexpectedReply {
        kind: reply.kind,
        source: Some(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_the_payload_of_the_protocol() {
        let since = StreamPosition {
            offset: 3,
            epoch: "e".into(),
        };
        assert_eq!(HistoryQuery::room("r").payload(), json!({"room": "r"}));
        assert_eq!(
            HistoryQuery::channel("c").limit(2).since(since).payload(),
            json!({"channel": "c", "limit": 2, "since": {"offset": 3, "epoch": "e"}})
        );
    }

    #[test]
    fn a_page_is_read_from_a_history_reply_only() {
        let frame = |value: Value| -> Frame {
            serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
        };
        let reply = frame(
            json!({"type": "history", "room": "r", "id": "r1", "payload": {
                "epoch": "e", "offset": 2,
                "publications": [{"type": "message", "room": "r", "offset": 2, "payload": {"content": 1}}]
            }}),
        );
        let page = page(reply).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((page.epoch.as_str(), page.offset), ("e", 2));
        assert_eq!(page.publications[0].offset, Some(2));
        let ack = page_error(frame(json!({"type": "ack", "payload": {}})));
        assert!(matches!(ack, Error::UnexpectedReply { kind, source: None } if kind == "ack"));
        let bad = page_error(frame(
            json!({"type": "history", "payload": {"offset": "x"}}),
        ));
        assert!(matches!(
            bad,
            Error::UnexpectedReply {
                source: Some(_),
                ..
            }
        ));
    }

    fn page_error(reply: Frame) -> Error {
        match page(reply) {
            Ok(page) => panic!("{page:?}"),
            Err(error) => error,
        }
    }
}
