//! The `connect` frame, the first frame of every WebSocket connection, written by hand: one
//! per handshake, with a fixed shape, so serde's generic machinery (its `Serialize` calls, the
//! connection id formatted through `fmt`) was a measurable part of a handshake's CPU
//! (BENCHMARKS.md, "Handshakes without hyper"). The bytes are exactly what
//! [`ServerFrame`](super::ServerFrame) with a [`ConnectPayload`](super::ConnectPayload)
//! encodes; strings that need escaping are escaped by `serde_json` itself, so the escaping
//! cannot differ. The SSE `connect` (which adds the session secret) still goes through serde.

use bytes::{BufMut, BytesMut};

use crate::ids::ConnId;
use crate::ws::frame::{self, OpCode};

/// What a `connect` frame tells the client.
pub(crate) struct Connect<'a> {
    /// The server's id for the connection.
    pub(crate) connection: ConnId,
    /// The user the server took the connection for.
    pub(crate) user: &'a str,
    /// The heartbeat period, in ms.
    pub(crate) heartbeat_ms: u64,
    /// The node serving the connection.
    pub(crate) node: &'a str,
    /// When the frame was made (ms since the epoch).
    pub(crate) timestamp: u64,
}

impl Connect<'_> {
    /// The complete WebSocket text frame:
    /// `{"type":"connect","timestamp":…,"payload":{"connectionId":…,"userId":…,"heartbeatInterval":…,"node":…}}`.
    pub(crate) fn encode(&self) -> bytes::Bytes {
        let size = 120 + self.user.len() + self.node.len();
        let built: Result<bytes::Bytes, std::convert::Infallible> =
            frame::build(OpCode::Text, size, |buf| {
                buf.put_slice(br#"{"type":"connect","timestamp":"#);
                put_decimal(buf, self.timestamp);
                buf.put_slice(br#","payload":{"connectionId":""#);
                put_hex(buf, self.connection.as_u64());
                buf.put_slice(br#"","userId":"#);
                put_string(buf, self.user);
                buf.put_slice(br#","heartbeatInterval":"#);
                put_decimal(buf, self.heartbeat_ms);
                buf.put_slice(br#","node":"#);
                put_string(buf, self.node);
                buf.put_slice(b"}}");
                Ok(())
            });
        match built {
            Ok(frame) => frame,
            Err(never) => match never {},
        }
    }
}

/// `n` in decimal, as JSON writes a number.
fn put_decimal(buf: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.put_slice(&digits[start..]);
}

/// `n` as 16 lowercase hex digits (a [`ConnId`]'s wire form).
fn put_hex(buf: &mut BytesMut, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((n >> (60 - 4 * i)) & 0xF) as usize];
    }
    buf.put_slice(&digits);
}

/// `s` as a JSON string. Most ids need no escaping and are copied as they are; any other is
/// written by `serde_json`, so that the escaping is the one every other frame uses.
fn put_string(buf: &mut BytesMut, s: &str) {
    let plain = s
        .bytes()
        .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\');
    if plain {
        buf.put_u8(b'"');
        buf.put_slice(s.as_bytes());
        buf.put_u8(b'"');
    } else if serde_json::to_writer(buf.writer(), s).is_err() {
        // Writing to memory cannot fail; an empty string keeps the frame valid JSON anyway.
        buf.put_slice(b"\"\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ConnectPayload, ServerFrame, ServerKind};

    /// What serde writes for the same frame.
    fn by_serde(connect: &Connect<'_>) -> bytes::Bytes {
        let payload = ConnectPayload::new(
            connect.connection,
            connect.user,
            connect.heartbeat_ms,
            connect.node,
        );
        ServerFrame::new(ServerKind::Connect, payload)
            .at(connect.timestamp)
            .encode()
    }

    #[test]
    fn the_frame_is_serde_s_byte_for_byte() {
        let long = "u".repeat(300);
        let users = [
            "alice",
            "",
            "anon-0123456789",
            "quote\"d",
            "back\\slash",
            "tab\tnew\nline\r",
            "\u{0}\u{1}\u{1f}\u{7f}",
            "é✓🦀",
            "</script>",
            long.as_str(),
        ];
        let connections = [ConnId::next(), ConnId::parse("0000000000000001").unwrap()];
        for user in users {
            for connection in connections {
                for (timestamp, heartbeat_ms) in
                    [(0, 0), (1_732_000_000_000, 30_000), (u64::MAX, 9)]
                {
                    let connect = Connect {
                        connection,
                        user,
                        heartbeat_ms,
                        node: "node-\"1\"",
                        timestamp,
                    };
                    assert_eq!(connect.encode(), by_serde(&connect), "{user:?}");
                }
            }
        }
    }
}
