//! What the MessagePack tests share: [`Packed`], a client of subprotocol
//! `switchboard.v1.msgpack` on a raw socket (with or without permessage-deflate) that encodes
//! and decodes with `rmpv`, an implementation independent of the server's transcoder, and the
//! conversions between `rmpv` values and JSON.

// Each test binary that declares `mod msgpack_support` uses part of it.
#![allow(dead_code)]

use crate::deflate_support::{OFFER, deflate, inflate};
use base64::Engine as _;
pub(crate) use rmpv::Value as Pack;
use serde_json::{Value, json};
use switchboard_testkit::{RawClient, TestServer};

pub(crate) const PROTOCOL: &str = "Sec-WebSocket-Protocol: switchboard.v1.msgpack\r\n";

/// The JSON form of a MessagePack value, bytes as `{"$bytes": base64}` (docs/protocol.md).
pub(crate) fn json_of(value: &Pack) -> Value {
    match value {
        Pack::Nil => Value::Null,
        Pack::Boolean(b) => json!(b),
        Pack::Integer(i) => match i.as_u64() {
            Some(u) => json!(u),
            None => json!(i.as_i64().unwrap()),
        },
        Pack::F32(f) => json!(f),
        Pack::F64(f) => json!(f),
        Pack::String(s) => json!(s.as_str().unwrap()),
        Pack::Binary(b) => json!({"$bytes": base64::engine::general_purpose::STANDARD.encode(b)}),
        Pack::Array(items) => Value::Array(items.iter().map(json_of).collect()),
        Pack::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().unwrap().to_owned(), json_of(v)))
                .collect(),
        ),
        Pack::Ext(..) => panic!("the server sent an extension type"),
    }
}

/// The MessagePack form of a JSON value (no bytes: tests put those in by hand).
pub(crate) fn pack(value: &Value) -> Pack {
    match value {
        Value::Null => Pack::Nil,
        Value::Bool(b) => Pack::from(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Pack::from(u),
            (None, Some(i)) => Pack::from(i),
            _ => Pack::from(n.as_f64().unwrap()),
        },
        Value::String(s) => Pack::from(s.as_str()),
        Value::Array(items) => Pack::Array(items.iter().map(pack).collect()),
        Value::Object(entries) => Pack::Map(
            entries
                .iter()
                .map(|(k, v)| (Pack::from(k.as_str()), pack(v)))
                .collect(),
        ),
    }
}

pub(crate) fn encode(value: &Pack) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).unwrap();
    out
}

pub(crate) fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// A client of subprotocol `switchboard.v1.msgpack`, with or without permessage-deflate.
pub(crate) struct Packed {
    pub(crate) raw: RawClient,
    pub(crate) deflate: bool,
    /// Whether the last frame read came compressed.
    pub(crate) last_compressed: bool,
}

impl Packed {
    /// Connects as `user`, checks the negotiation and reads `connect`.
    pub(crate) async fn connect(server: &TestServer, user: &str, deflate: bool) -> Self {
        let headers = if deflate {
            format!("{PROTOCOL}{OFFER}")
        } else {
            PROTOCOL.to_owned()
        };
        let path = format!("/ws?userId={user}");
        let (raw, head) = RawClient::connect_with(server.addr, &path, &headers).await;
        assert_eq!(
            header(&head, "sec-websocket-protocol"),
            Some("switchboard.v1.msgpack")
        );
        assert_eq!(header(&head, "sec-websocket-extensions").is_some(), deflate);
        let mut client = Self {
            raw,
            deflate,
            last_compressed: false,
        };
        let connect = client.next().await;
        assert_eq!(connect["type"], "connect", "{connect}");
        assert_eq!(connect["payload"]["userId"], user);
        client
    }

    /// Connects and joins `room`.
    pub(crate) async fn member(server: &TestServer, user: &str, room: &str, deflate: bool) -> Self {
        let mut client = Self::connect(server, user, deflate).await;
        client
            .send_json(&json!({"type": "join_room", "payload": {"room": room}}))
            .await;
        client.expect("room_joined").await;
        client
    }

    /// Sends `value` as one binary frame (compressed when the client negotiated it).
    pub(crate) async fn send(&mut self, value: &Pack) {
        self.send_bytes(&encode(value)).await;
    }

    pub(crate) async fn send_json(&mut self, value: &Value) {
        self.send(&pack(value)).await;
    }

    pub(crate) async fn send_bytes(&mut self, data: &[u8]) {
        if self.deflate {
            self.raw.send_frame(0xC2, &deflate(data)).await;
        } else {
            self.raw.send_frame(0x82, data).await;
        }
    }

    /// The next data frame, which must be binary MessagePack, as its MessagePack value.
    pub(crate) async fn next_pack(&mut self) -> Pack {
        loop {
            let (first, payload) = self.raw.read_frame().await;
            match first & 0x0F {
                0x2 => {}
                0x1 => panic!("a text frame on a MessagePack connection"),
                _ => continue,
            }
            self.last_compressed = first & 0x40 != 0;
            let data = if self.last_compressed {
                inflate(&payload)
            } else {
                payload
            };
            let mut rest = &data[..];
            let value = rmpv::decode::read_value(&mut rest).unwrap();
            assert!(rest.is_empty(), "one value per frame");
            return value;
        }
    }

    /// The next frame in its JSON form.
    pub(crate) async fn next(&mut self) -> Value {
        json_of(&self.next_pack().await)
    }

    pub(crate) async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.next().await;
        assert_eq!(frame["type"], kind, "{frame}");
        frame
    }

    /// The next frame of type `kind`, skipping the others.
    pub(crate) async fn until(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    pub(crate) async fn expect_error(&mut self, code: &str) -> Value {
        let frame = self.expect("error").await;
        assert_eq!(frame["payload"]["code"], code, "{frame}");
        frame
    }

    /// Proves the connection still works: a ping is answered.
    pub(crate) async fn still_open(&mut self) {
        self.send_json(&json!({"type": "ping", "payload": {"timestamp": 7}}))
            .await;
        assert_eq!(self.expect("pong").await["payload"]["timestamp"], 7);
    }
}

/// `{"type": kind, "payload": payload, "id"?}` with MessagePack values.
pub(crate) fn frame(kind: &str, payload: Vec<(&str, Pack)>, id: Option<&str>) -> Pack {
    let mut entries = vec![
        (Pack::from("type"), Pack::from(kind)),
        (
            Pack::from("payload"),
            Pack::Map(
                payload
                    .into_iter()
                    .map(|(k, v)| (Pack::from(k), v))
                    .collect(),
            ),
        ),
    ];
    if let Some(id) = id {
        entries.push((Pack::from("id"), Pack::from(id)));
    }
    Pack::Map(entries)
}
