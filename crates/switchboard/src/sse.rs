//! The `text/event-stream` form of server frames (DESIGN.md §9, the SSE fallback): what an SSE
//! connection's stream carries in place of WebSocket frames.
//!
//! Server frames are built once as complete WebSocket frames (`ws::frame`); an SSE connection
//! gets each one re-encoded here as one event whose data is the frame's JSON text. The fan-out
//! makes that form at most once per message (`hub::Outgoing`), so SSE recipients share one
//! buffer just as WebSocket ones do. A heartbeat ping becomes an SSE comment, which keeps
//! proxies from closing a quiet stream and which `EventSource` and our client ignore. This
//! module owns the bytes only: the stream itself is `connection::sse`.

use bytes::{BufMut, Bytes, BytesMut};

use crate::ws::frame;

/// The heartbeat of an SSE stream: a comment line, in place of a WebSocket ping.
pub(crate) const HEARTBEAT: &[u8] = b": ping\n\n";

/// The first bytes of every stream: a comment that makes proxies and browsers start delivering
/// at once, and the reconnection delay an `EventSource` would use (our client reconnects by
/// itself; the field is there for `EventSource` users).
pub(crate) const PREAMBLE: &[u8] = b": switchboard\nretry: 1000\n\n";

/// The SSE form of a server frame built by `ws::frame` (complete, unmasked): a text frame
/// becomes one event, a ping the heartbeat comment. Other frames (binary, pong, close) have no
/// SSE form: an SSE connection reads protocol v1 JSON only, and closes are events of their own
/// (`connection::sse`).
pub(crate) fn event_of_frame(ws_frame: &[u8]) -> Option<Bytes> {
    /// The opcodes of text and ping frames (RFC 6455 §5.2), in a first byte's low bits.
    const TEXT: u8 = 0x1;
    const PING: u8 = 0x9;
    match ws_frame.first().map(|first| first & 0x0F) {
        Some(TEXT) => Some(data_event(frame::server_payload(ws_frame))),
        Some(PING) => Some(Bytes::from_static(HEARTBEAT)),
        _ => None,
    }
}

/// One event whose data is `text` (JSON): `data: <text>\n\n`. JSON a client sent may hold line
/// breaks (whitespace between tokens, which a string cannot contain unescaped); each line gets
/// its own `data:` field, and the reader joins them with `\n`, which is whitespace to JSON too.
pub(crate) fn data_event(text: &[u8]) -> Bytes {
    let mut event = BytesMut::with_capacity(text.len() + 8);
    let mut rest = text;
    loop {
        event.put_slice(b"data: ");
        match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(end) => {
                event.put_slice(&rest[..end]);
                event.put_u8(b'\n');
                let skip = if rest[end..].starts_with(b"\r\n") {
                    2
                } else {
                    1
                };
                rest = &rest[end + skip..];
            }
            None => {
                event.put_slice(rest);
                event.put_slice(b"\n\n");
                return event.freeze();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::OpCode;

    #[test]
    fn a_text_frame_becomes_one_data_event() {
        let json = br#"{"type":"message","payload":{"content":"hi"}}"#;
        let event = event_of_frame(&frame::frame(OpCode::Text, json)).unwrap();
        assert_eq!(
            &event[..],
            &[b"data: ".as_slice(), json, b"\n\n"].concat()[..]
        );
    }

    #[test]
    fn long_frames_lose_their_extended_length_header() {
        let json = format!(r#"{{"type":"message","payload":"{}"}}"#, "x".repeat(70_000));
        let event = event_of_frame(&frame::frame(OpCode::Text, json.as_bytes())).unwrap();
        assert_eq!(event.len(), json.len() + 8);
        assert!(event.starts_with(b"data: {\"type\""));
    }

    #[test]
    fn line_breaks_split_the_data_into_lines() {
        let event = data_event(b"{\"a\":\n1,\r\n\"b\":\r2}");
        assert_eq!(
            &event[..],
            b"data: {\"a\":\ndata: 1,\ndata: \"b\":\ndata: 2}\n\n"
        );
        assert_eq!(&data_event(b"x\n")[..], b"data: x\ndata: \n\n");
    }

    #[test]
    fn pings_become_comments_and_other_frames_have_no_event() {
        assert_eq!(
            event_of_frame(&frame::ping_frame()).as_deref(),
            Some(HEARTBEAT)
        );
        assert_eq!(event_of_frame(&frame::frame(OpCode::Binary, b"\x00")), None);
        assert_eq!(event_of_frame(&frame::frame(OpCode::Pong, b"")), None);
        assert_eq!(event_of_frame(&frame::close_frame(1000, "bye")), None);
        assert_eq!(event_of_frame(b""), None);
    }
}
