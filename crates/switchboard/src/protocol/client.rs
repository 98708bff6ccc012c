//! Parsing of client frames: `{ "type": …, "payload": { … }, "id": … }` (DESIGN.md §2).
//!
//! Parsing borrows from the frame's text wherever it can (`&RawValue` for payloads that are
//! forwarded untouched, `Cow<str>` for strings). Every failure becomes a [`Rejection`] carrying
//! the error code to send back and, when it could be read, the client's `id`.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;

use super::history::{self, HistoryRequest};
use super::{ClientKind, ErrorCode, StreamPosition};
use crate::ids::{ChannelId, ChannelSpec, RoomId};
use crate::presence::Status;

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// Longest room or channel name, in characters.
    pub max_name_chars: usize,
    /// Longest `content` or publication `data`, in characters (for non-string values:
    /// characters of their JSON text).
    pub max_content_chars: usize,
    /// Largest presence metadata, in bytes of JSON text.
    pub max_metadata_bytes: usize,
    /// Most messages a `history` request may ask for (the history size; 0: history is off).
    pub max_history: usize,
}

/// Longest accepted client `id`, in bytes of its JSON text.
pub const MAX_ID_LEN: usize = 128;

/// One parsed client frame.
#[derive(Debug)]
pub struct Inbound<'a> {
    /// The client's `id` (a JSON string or number, echoed back verbatim), if any.
    pub id: Option<&'a RawValue>,
    /// What the client asks for.
    pub command: Command<'a>,
}

/// A client request, one variant per message type of DESIGN.md §2.
#[derive(Debug)]
pub enum Command<'a> {
    /// `join_room {room, since?}`.
    JoinRoom {
        /// The room to join.
        room: RoomId,
        /// The last position the client saw, to recover what it missed.
        since: Option<StreamPosition>,
    },
    /// `leave_room {room}`.
    LeaveRoom {
        /// The room to leave.
        room: RoomId,
    },
    /// `message {room, content, …}`: `payload` is what recipients get (all fields but `room`).
    Message {
        /// The room addressed.
        room: RoomId,
        /// The forwarded payload.
        payload: Box<RawValue>,
    },
    /// `broadcast {content, …}`: the payload is forwarded as sent.
    Broadcast {
        /// The forwarded payload.
        payload: &'a RawValue,
    },
    /// `subscribe {channel, since?}`: a channel name, or a pattern ending in `*`.
    Subscribe {
        /// The channel or pattern.
        channel: ChannelSpec,
        /// The last position the client saw, to recover what it missed (channels only).
        since: Option<StreamPosition>,
    },
    /// `unsubscribe {channel}`.
    Unsubscribe {
        /// The channel or pattern.
        channel: ChannelSpec,
    },
    /// `publish {channel, data}`: subscribers get `data` as the payload of a `publish` frame.
    Publish {
        /// The channel.
        channel: ChannelId,
        /// The published data.
        data: &'a RawValue,
    },
    /// `presence {status, metadata?}`.
    Presence {
        /// The status the user chooses.
        status: Status,
        /// New metadata, when given.
        metadata: Option<Box<RawValue>>,
    },
    /// `ping {timestamp?}`: answered with a `pong` carrying the same payload.
    Ping {
        /// The payload to echo, if any.
        payload: Option<&'a RawValue>,
    },
    /// `pong`: an answer to a server `ping`.
    Pong,
    /// `history {room | channel, limit?, since?}`: a stream's retained messages.
    History(HistoryRequest),
    /// `auth {token}`: authenticates a connection that brought no token to the upgrade.
    Auth {
        /// The JWT.
        token: Cow<'a, str>,
    },
    /// `refresh {token}`: replaces the connection's token (same user) and permissions.
    Refresh {
        /// The JWT.
        token: Cow<'a, str>,
    },
    /// Any other type: handled by a registered custom handler, or refused as `UNKNOWN_TYPE`.
    Other {
        /// The message type.
        kind: Cow<'a, str>,
        /// The payload, if any.
        payload: Option<&'a RawValue>,
    },
}

/// A frame that cannot be processed, and what to answer.
#[derive(Debug, Clone)]
pub struct Rejection<'a> {
    /// The error code to send.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: Cow<'static, str>,
    /// The client's `id`, when the frame was readable far enough to find it.
    pub id: Option<&'a RawValue>,
}

impl Rejection<'_> {
    pub(super) fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
            id: None,
        }
    }
}

/// The outer object; fields are kept raw so that a wrong `type` still lets us echo the `id`.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RoomPayload<'a> {
    #[serde(borrow)]
    room: Cow<'a, str>,
}

#[derive(Deserialize)]
struct JoinPayload<'a> {
    #[serde(borrow)]
    room: Cow<'a, str>,
    #[serde(borrow)]
    since: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ContentPayload<'a> {
    #[serde(borrow)]
    content: &'a RawValue,
}

#[derive(Deserialize)]
struct ChannelPayload<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
}

#[derive(Deserialize)]
struct SubscribePayload<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow)]
    since: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct PublishPayload<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct AuthPayload<'a> {
    #[serde(borrow)]
    token: Cow<'a, str>,
}

#[derive(Deserialize)]
struct PresencePayload<'a> {
    status: Status,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
}

/// Parses one text frame.
pub fn parse<'a>(text: &'a str, limits: &ParseLimits) -> Result<Inbound<'a>, Rejection<'a>> {
    if !text.trim_start().starts_with('{') {
        let code = match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => ErrorCode::InvalidMessage,
            Err(_) => ErrorCode::InvalidJson,
        };
        return Err(Rejection::new(code, "a frame must be one JSON object"));
    }
    let envelope: Envelope<'a> = serde_json::from_str(text).map_err(|e| {
        let code = match e.classify() {
            serde_json::error::Category::Data => ErrorCode::InvalidMessage,
            _ => ErrorCode::InvalidJson,
        };
        Rejection::new(code, e.to_string())
    })?;
    let id = envelope.id.filter(|raw| !is_null(raw));
    let with_id = |mut rejection: Rejection<'a>| {
        rejection.id = id;
        rejection
    };
    if let Some(raw) = id {
        let text = raw.get();
        let is_string_or_number =
            text.starts_with('"') || text.starts_with(|c: char| c == '-' || c.is_ascii_digit());
        if !is_string_or_number || text.len() > MAX_ID_LEN {
            return Err(Rejection::new(
                ErrorCode::InvalidMessage,
                format!("id must be a string or a number of at most {MAX_ID_LEN} bytes"),
            ));
        }
    }
    let kind: Cow<'a, str> = envelope
        .kind
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .ok_or_else(|| {
            with_id(Rejection::new(
                ErrorCode::InvalidMessage,
                "missing or non-string \"type\"",
            ))
        })?;
    let payload = envelope.payload.filter(|raw| !is_null(raw));
    let command = command(kind, payload, limits).map_err(with_id)?;
    Ok(Inbound { id, command })
}

fn command<'a>(
    kind: Cow<'a, str>,
    payload: Option<&'a RawValue>,
    limits: &ParseLimits,
) -> Result<Command<'a>, Rejection<'a>> {
    let Some(known) = ClientKind::parse(&kind) else {
        return Ok(Command::Other { kind, payload });
    };
    Ok(match known {
        ClientKind::JoinRoom => {
            let JoinPayload { room, since } = field(required(payload)?)?;
            Command::JoinRoom {
                room: room_name_to_id(&room, limits)?,
                since: history::since(since)?,
            }
        }
        ClientKind::LeaveRoom => Command::LeaveRoom {
            room: room(required(payload)?, limits)?,
        },
        ClientKind::Message => {
            let fields: RawFields<'a> = field(required(payload)?)?;
            let room_name: Cow<'_, str> = field(fields.require("room")?)?;
            check_content(fields.require("content")?, limits)?;
            Command::Message {
                room: room_name_to_id(&room_name, limits)?,
                payload: RawValue::from_string(fields.to_json_without("room")).map_err(|e| {
                    Rejection::new(ErrorCode::InvalidMessage, format!("payload: {e}"))
                })?,
            }
        }
        ClientKind::Broadcast => {
            let payload = required(payload)?;
            let ContentPayload { content } = field(payload)?;
            check_content(content, limits)?;
            Command::Broadcast { payload }
        }
        ClientKind::Subscribe => {
            let SubscribePayload { channel, since } = field(required(payload)?)?;
            Command::Subscribe {
                channel: ChannelSpec::parse(&channel, limits.max_name_chars).map_err(|e| {
                    Rejection::new(ErrorCode::InvalidMessage, format!("channel: {e}"))
                })?,
                since: history::since(since)?,
            }
        }
        ClientKind::Unsubscribe => Command::Unsubscribe {
            channel: channel_spec(required(payload)?, limits)?,
        },
        ClientKind::Publish => {
            let PublishPayload { channel, data } = field(required(payload)?)?;
            let channel = ChannelId::parse(&channel, limits.max_name_chars)
                .map_err(|e| Rejection::new(ErrorCode::InvalidMessage, format!("channel: {e}")))?;
            check_content(data, limits)?;
            Command::Publish { channel, data }
        }
        ClientKind::Presence => {
            let PresencePayload { status, metadata } = field(required(payload)?)?;
            let metadata = metadata.filter(|raw| !is_null(raw));
            if let Some(raw) = metadata
                && raw.get().len() > limits.max_metadata_bytes
            {
                return Err(Rejection::new(
                    ErrorCode::MessageTooLarge,
                    format!(
                        "metadata is {} bytes; the limit is {}",
                        raw.get().len(),
                        limits.max_metadata_bytes
                    ),
                ));
            }
            Command::Presence {
                status,
                metadata: metadata.map(|raw| raw.to_owned()),
            }
        }
        ClientKind::Ping => Command::Ping { payload },
        ClientKind::Pong => Command::Pong,
        ClientKind::Auth => {
            let AuthPayload { token } = field(required(payload)?)?;
            Command::Auth { token }
        }
        ClientKind::Refresh => {
            let AuthPayload { token } = field(required(payload)?)?;
            Command::Refresh { token }
        }
        ClientKind::History => Command::History(history::request(required(payload)?, limits)?),
    })
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

fn required(payload: Option<&RawValue>) -> Result<&RawValue, Rejection<'static>> {
    payload.ok_or_else(|| Rejection::new(ErrorCode::InvalidMessage, "missing \"payload\""))
}

pub(super) fn field<'a, T: Deserialize<'a>>(
    payload: &'a RawValue,
) -> Result<T, Rejection<'static>> {
    serde_json::from_str(payload.get())
        .map_err(|e| Rejection::new(ErrorCode::InvalidMessage, format!("payload: {e}")))
}

fn room(payload: &RawValue, limits: &ParseLimits) -> Result<RoomId, Rejection<'static>> {
    let RoomPayload { room } = field(payload)?;
    room_name_to_id(&room, limits)
}

fn channel_spec(
    payload: &RawValue,
    limits: &ParseLimits,
) -> Result<ChannelSpec, Rejection<'static>> {
    let ChannelPayload { channel } = field(payload)?;
    ChannelSpec::parse(&channel, limits.max_name_chars)
        .map_err(|e| Rejection::new(ErrorCode::InvalidMessage, format!("channel: {e}")))
}

pub(super) fn room_name_to_id(
    name: &str,
    limits: &ParseLimits,
) -> Result<RoomId, Rejection<'static>> {
    RoomId::parse(name, limits.max_name_chars)
        .map_err(|e| Rejection::new(ErrorCode::InvalidMessage, format!("room: {e}")))
}

/// Checks that `content` (or `data`) is at most `max_content_chars` characters.
fn check_content(content: &RawValue, limits: &ParseLimits) -> Result<(), Rejection<'static>> {
    let raw = content.get();
    let chars = match serde_json::from_str::<Cow<'_, str>>(raw) {
        Ok(text) => text.chars().count(),
        Err(_) => raw.chars().count(),
    };
    if chars > limits.max_content_chars {
        return Err(Rejection::new(
            ErrorCode::MessageTooLarge,
            format!(
                "content is {chars} characters; the limit is {}",
                limits.max_content_chars
            ),
        ));
    }
    Ok(())
}

/// An object's fields in order, values kept as raw JSON.
struct RawFields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> RawFields<'a> {
    fn require(&self, name: &'static str) -> Result<&'a RawValue, Rejection<'static>> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| *value)
            .ok_or_else(|| {
                Rejection::new(
                    ErrorCode::InvalidMessage,
                    format!("payload: missing field `{name}`"),
                )
            })
    }

    /// The object without the field `name`, as JSON text; other fields keep their order and
    /// their exact text.
    fn to_json_without(&self, name: &str) -> String {
        let capacity = self
            .0
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum();
        let mut out = String::with_capacity(capacity);
        out.push('{');
        for (key, value) in self.0.iter().filter(|(key, _)| key != name) {
            if out.len() > 1 {
                out.push(',');
            }
            // Keys came out of JSON, so re-encoding them cannot fail.
            out.push_str(&serde_json::to_string(key).unwrap_or_default());
            out.push(':');
            out.push_str(value.get());
        }
        out.push('}');
        out
    }
}

impl<'de> Deserialize<'de> for RawFields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = RawFields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(entry) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(RawFields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
