//! The JSON of protocol v1, as far as the load tool needs it, without a JSON parser on the hot
//! path.
//!
//! Owns: the client frames the tool sends (`join_room`, stamped `message` and `broadcast`), the
//! send-time stamp `t=<ns>;` embedded in `content`, and the cheap byte-level checks applied to
//! server frames (which type is it, where is the stamp), in JSON or in MessagePack
//! ([`Format`]). Does not own framing (`ws`).

use std::borrow::Cow;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use switchboard_protocol::{ClientKind, ServerKind, msgpack};

/// The server frames a scenario counts as deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// Room messages (`fanout`).
    Message,
    /// Broadcasts (`broadcast`).
    Broadcast,
}

impl Kind {
    /// The kind of server frame counted.
    pub(crate) fn server_kind(self) -> ServerKind {
        match self {
            Self::Message => ServerKind::Message,
            Self::Broadcast => ServerKind::Broadcast,
        }
    }
}

/// How the tool's connections encode frames (`--format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Format {
    /// JSON text frames.
    #[default]
    Json,
    /// MessagePack binary frames (subprotocol `switchboard.v1.msgpack`).
    Msgpack,
}

impl Format {
    /// The `Sec-WebSocket-Protocol` line of the upgrade request (empty for JSON).
    pub(crate) fn protocol_header(self) -> String {
        match self {
            Self::Json => String::new(),
            Self::Msgpack => format!("Sec-WebSocket-Protocol: {}\r\n", msgpack::SUBPROTOCOL),
        }
    }

    /// The opcode and payload of the client frame whose JSON is `json`. The tool writes that
    /// JSON itself, so it transcodes; if it did not, the empty frame would get the server's
    /// `INVALID_JSON`, which the run reports.
    pub(crate) fn client_payload(self, json: &[u8]) -> (u8, Cow<'_, [u8]>) {
        match self {
            Self::Json => (crate::ws::OP_TEXT, Cow::Borrowed(json)),
            Self::Msgpack => (
                crate::ws::OP_BINARY,
                Cow::Owned(msgpack::from_json(json).unwrap_or_default()),
            ),
        }
    }

    /// Whether a server frame in this format has `type` `kind`.
    pub(crate) fn has_type(self, frame: &[u8], kind: ServerKind) -> bool {
        match self {
            Self::Json => has_type(frame, kind),
            Self::Msgpack => has_msgpack_type(frame, kind),
        }
    }
}

/// Whether a MessagePack server frame has `"type": "<kind>"` among its first 64 bytes (the
/// server writes `type` first; type names are short, so each is a fixstr).
fn has_msgpack_type(frame: &[u8], kind: ServerKind) -> bool {
    let name = kind.as_str().as_bytes();
    let mut needle = Vec::with_capacity(name.len() + 6);
    needle.extend_from_slice(b"\xa4type");
    needle.push(0xa0 | (name.len() as u8 & 0x1f));
    needle.extend_from_slice(name);
    let head = &frame[..frame.len().min(64)];
    head.windows(needle.len()).any(|w| w == needle)
}

/// Nanoseconds since the Unix epoch on CLOCK_REALTIME, the clock every process of a run shares.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Whether a server frame's JSON has `"type":"<kind>"`.
///
/// Switchboard writes `type` first, so the check is a prefix comparison; other servers get a
/// search of the first 64 bytes.
pub(crate) fn has_type(json: &[u8], kind: ServerKind) -> bool {
    const OPEN: &[u8] = b"{\"type\":\"";
    let name = kind.as_str().as_bytes();
    let prefixed = json.len() > OPEN.len() + name.len()
        && json.starts_with(OPEN)
        && json[OPEN.len()..].starts_with(name)
        && json[OPEN.len() + name.len()] == b'"';
    prefixed || {
        let head = &json[..json.len().min(64)];
        let mut needle = Vec::with_capacity(name.len() + 10);
        needle.extend_from_slice(b"\"type\":\"");
        needle.extend_from_slice(name);
        needle.push(b'"');
        head.windows(needle.len()).any(|w| w == needle)
    }
}

/// The send time stamped in a frame, in ns: the digits of the first `t=<digits>;` in it.
pub(crate) fn find_stamp(json: &[u8]) -> Option<u64> {
    let mut rest = json;
    while let Some(at) = rest.windows(2).position(|w| w == b"t=") {
        rest = &rest[at + 2..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if (1..=20).contains(&digits) && rest.get(digits) == Some(&b';') {
            let text = std::str::from_utf8(&rest[..digits]).ok()?;
            return text.parse().ok();
        }
    }
    None
}

/// `{"type":"join_room","payload":{"room":"<room>"}}`. Room names made by the tool need no
/// escaping.
pub(crate) fn join_room(room: &str) -> String {
    let kind = ClientKind::JoinRoom;
    format!(r#"{{"type":"{kind}","payload":{{"room":"{room}"}}}}"#)
}

/// Writes stamped client frames (`message` to a room, or `broadcast`) of a fixed content size.
#[derive(Debug, Clone)]
pub(crate) struct Stamped {
    /// The JSON up to the opening quote of `content`'s value.
    prefix: String,
    /// Content bytes wanted, stamp included.
    size: usize,
}

impl Stamped {
    /// Messages to `room`, or broadcasts when `room` is `None`, with `size`-byte contents.
    pub(crate) fn new(room: Option<&str>, size: usize) -> Self {
        let prefix = match room {
            Some(room) => {
                let kind = ClientKind::Message;
                format!(r#"{{"type":"{kind}","payload":{{"room":"{room}","content":""#)
            }
            None => {
                let kind = ClientKind::Broadcast;
                format!(r#"{{"type":"{kind}","payload":{{"content":""#)
            }
        };
        Self { prefix, size }
    }

    /// Replaces `out` with the JSON of one frame stamped `stamp_ns`. The content is
    /// `t=<stamp_ns>;` padded with `x` to the configured size (never cut below the stamp).
    pub(crate) fn write(&self, out: &mut Vec<u8>, stamp_ns: u64) {
        out.clear();
        out.extend_from_slice(self.prefix.as_bytes());
        let start = out.len();
        // Writing into a Vec cannot fail.
        let _ = write!(out, "t={stamp_ns};");
        let written = out.len() - start;
        out.resize(start + written.max(self.size), b'x');
        out.extend_from_slice(b"\"}}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_recognised_by_prefix_or_near_the_start() {
        let msg = br#"{"type":"message","room":"r","payload":{"content":"hi"}}"#;
        assert!(has_type(msg, ServerKind::Message));
        assert!(!has_type(msg, ServerKind::Broadcast));
        assert!(!has_type(br#"{"type":"messages"}"#, ServerKind::Message));
        assert!(has_type(
            br#"{"room":"r","type":"message"}"#,
            ServerKind::Message
        ));
        assert!(!has_type(
            br#"{"type":"user_joined","room":"r"}"#,
            ServerKind::Message
        ));
        assert!(!has_type(b"", ServerKind::Message));
    }

    #[test]
    fn stamps_round_trip_through_server_frames() {
        let mut out = Vec::new();
        Stamped::new(Some("room-1"), 64).write(&mut out, 1_732_000_000_123_456_789);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let content = json["payload"]["content"].as_str().unwrap();
        assert_eq!(content.len(), 64);
        assert!(content.starts_with("t=1732000000123456789;xxx"));
        assert_eq!(json["payload"]["room"], "room-1");
        let delivered = format!(
            r#"{{"type":"message","room":"room-1","userId":"pub-0","timestamp":1732000000123,"payload":{{"content":"{content}"}}}}"#
        );
        assert_eq!(
            find_stamp(delivered.as_bytes()),
            Some(1_732_000_000_123_456_789)
        );
    }

    #[test]
    fn small_sizes_keep_the_whole_stamp_and_broadcasts_have_no_room() {
        let mut out = Vec::new();
        Stamped::new(None, 1).write(&mut out, 42);
        assert_eq!(
            out,
            br#"{"type":"broadcast","payload":{"content":"t=42;"}}"#.to_vec()
        );
    }

    #[test]
    fn stamps_need_digits_and_a_semicolon() {
        assert_eq!(find_stamp(b"t=;t=12"), None);
        assert_eq!(find_stamp(b"at=x t=7;"), Some(7));
        assert_eq!(find_stamp(b"no stamp"), None);
        assert_eq!(find_stamp(b"t=123456789012345678901;"), None);
    }

    #[test]
    fn msgpack_frames_are_recognised_and_keep_their_stamp() {
        let delivered = br#"{"type":"message","room":"r","payload":{"content":"t=99;xx"}}"#;
        let packed = msgpack::from_json(delivered).unwrap();
        assert!(Format::Msgpack.has_type(&packed, ServerKind::Message));
        assert!(!Format::Msgpack.has_type(&packed, ServerKind::Broadcast));
        assert!(!Format::Msgpack.has_type(delivered, ServerKind::Message));
        let joined = msgpack::from_json(br#"{"type":"room_joined"}"#).unwrap();
        assert!(!Format::Msgpack.has_type(&joined, ServerKind::Message));
        assert!(Format::Msgpack.has_type(&joined, ServerKind::RoomJoined));
        assert_eq!(find_stamp(&packed), Some(99));
        let join = join_room("r");
        let (opcode, payload) = Format::Msgpack.client_payload(join.as_bytes());
        assert_eq!(opcode, crate::ws::OP_BINARY);
        assert_eq!(
            msgpack::to_json(&payload).unwrap(),
            join_room("r"),
            "the same frame"
        );
        assert_eq!(Format::Json.client_payload(b"{}").1, &b"{}"[..]);
    }

    #[test]
    fn join_room_is_valid_json() {
        let json: serde_json::Value = serde_json::from_str(&join_room("room-7")).unwrap();
        assert_eq!(json["type"], "join_room");
        assert_eq!(json["payload"]["room"], "room-7");
    }
}
