//! [`Outgoing`]: one encoded server frame on its way to one or many connections, with the
//! compressed form that connections which negotiated permessage-deflate get, and the
//! MessagePack form that connections of subprotocol `switchboard.v1.msgpack` get.
//!
//! Encode once (DESIGN.md §5.1) survives compression: the compressed form is made at most once
//! per fan-out, by the first recipient that needs it, and every compressing recipient queues
//! that same `Bytes`. A connection without compression pays one branch: no allocation, no
//! copy. A client that allows only a smaller window than the one the shared form was made with
//! (`server_max_window_bits`, which browsers do not send) gets a form of its own.
//!
//! The MessagePack form follows the same rule (DESIGN.md §9: encoded once per encoding in
//! use): the first MessagePack recipient of a fan-out transcodes the JSON text frame into a
//! binary frame, and that form has its own compressed form, made at most once too. A fan-out
//! with no MessagePack recipient never transcodes.
//!
//! SSE connections (`Wire::Sse`) get the frame's event form (`crate::sse`), made the same way:
//! at most once per fan-out, by the first SSE recipient, and shared by the others.

use std::borrow::Cow;
use std::cell::OnceCell;

use bytes::Bytes;

use super::Wire;
use crate::protocol::{self, ErrorCode};
use crate::ws::deflate::{self, Deflate};
use crate::ws::frame::{self, OpCode};

/// A compressed form, made on first use: the window it was compressed with, and the
/// compressed frame (`None`: not worth it).
type Deflated = OnceCell<(u8, Option<Bytes>)>;

/// A frame and, made on first use, its compressed form and its MessagePack forms.
pub(crate) struct Outgoing<'a> {
    frame: &'a Bytes,
    deflated: Deflated,
    /// The MessagePack binary frame (for a text frame; other frames go as they are), and its
    /// compressed form.
    msgpack: OnceCell<(Bytes, Deflated)>,
    /// The SSE event (`None`: the frame has no SSE form, see `sse::event_of_frame`).
    sse: OnceCell<Option<Bytes>>,
}

impl<'a> Outgoing<'a> {
    /// A frame built by `ws::frame`, complete and unmasked.
    pub(crate) fn new(frame: &'a Bytes) -> Self {
        Self {
            frame,
            deflated: OnceCell::new(),
            msgpack: OnceCell::new(),
            sse: OnceCell::new(),
        }
    }

    /// The frame as it is, uncompressed.
    pub(crate) fn plain(&self) -> &'a Bytes {
        self.frame
    }

    /// The bytes to queue for a connection whose client reads `wire`: the frame itself, or
    /// its MessagePack form for a MessagePack client; compressed as [`Outgoing::for_peer`]
    /// says.
    pub(crate) fn for_wire(
        &self,
        wire: Wire,
        deflate: Option<Deflate>,
        threshold: usize,
    ) -> Cow<'_, Bytes> {
        if wire != Wire::MsgPack {
            return self.for_peer(deflate, threshold);
        }
        let (msgpack, deflated) = self
            .msgpack
            .get_or_init(|| (to_msgpack(self.frame), OnceCell::new()));
        compressed(msgpack, deflated, deflate, threshold)
    }

    /// The bytes to queue for an SSE connection: the frame's event, if it has one.
    pub(crate) fn for_sse(&self) -> Option<&Bytes> {
        self.sse
            .get_or_init(|| crate::sse::event_of_frame(self.frame))
            .as_ref()
    }

    /// The bytes to queue for a connection with `deflate` (what it negotiated): the compressed
    /// form for a data frame whose payload has at least `threshold` bytes, when compressing
    /// makes it smaller; otherwise the frame itself.
    pub(crate) fn for_peer(&self, deflate: Option<Deflate>, threshold: usize) -> Cow<'_, Bytes> {
        compressed(self.frame, &self.deflated, deflate, threshold)
    }
}

/// `frame`, or its compressed form (made once into `deflated`) when `deflate` was negotiated
/// and the payload has at least `threshold` bytes and shrinks.
fn compressed<'b>(
    frame: &'b Bytes,
    deflated: &'b Deflated,
    deflate: Option<Deflate>,
    threshold: usize,
) -> Cow<'b, Bytes> {
    let Some(deflate) = deflate else {
        return Cow::Borrowed(frame);
    };
    if frame::server_payload(frame).len() < threshold {
        return Cow::Borrowed(frame);
    }
    let bits = deflate.window_bits();
    let (made_with, shared) = deflated.get_or_init(|| (bits, deflate::compress_frame(frame, bits)));
    // A frame compressed with a window of 2^w is valid for every client allowing 2^w.
    if *made_with <= bits {
        return Cow::Borrowed(shared.as_ref().unwrap_or(frame));
    }
    match deflate::compress_frame(frame, bits) {
        Some(own) => Cow::Owned(own),
        None => Cow::Borrowed(frame),
    }
}

/// The MessagePack form of a server frame: a text frame's JSON becomes a binary frame; control
/// frames (and binary ones) are the same for every client. The server wrote the JSON, so it
/// transcodes, unless a client's payload nested deeper than JSON parsing allows once wrapped
/// in a server frame (a `history` reply adds levels): then the client gets an `INTERNAL`
/// error in its place, as any client does for a server fault.
fn to_msgpack(text: &Bytes) -> Bytes {
    const TEXT: u8 = 0x1;
    if text.first().map(|first| first & 0x0F) != Some(TEXT) {
        return text.clone();
    }
    let payload = frame::server_payload(text);
    match switchboard_protocol::msgpack::from_json(payload) {
        Ok(msgpack) => frame::frame(OpCode::Binary, &msgpack),
        Err(error) => {
            tracing::warn!(%error, "a frame could not be encoded as MessagePack");
            let replacement = protocol::error_frame(
                ErrorCode::Internal,
                "a frame could not be encoded as MessagePack",
                None,
            );
            let json = frame::server_payload(&replacement);
            let msgpack = switchboard_protocol::msgpack::from_json(json).unwrap_or_default();
            frame::frame(OpCode::Binary, &msgpack)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compresses_once_and_shares_the_result() {
        let frame = frame::frame(OpCode::Text, "hello hello hello ".repeat(100).as_bytes());
        let outgoing = Outgoing::new(&frame);
        let deflate = Some(Deflate::new(15));
        assert!(std::ptr::eq(&*outgoing.for_peer(None, 0), &frame));
        let first = outgoing.for_peer(deflate, 0).into_owned();
        let second = outgoing.for_peer(deflate, 0).into_owned();
        assert_eq!(first[0], 0xC1, "FIN, RSV1, text");
        assert!(first.len() < frame.len());
        assert_eq!(first.as_ptr(), second.as_ptr(), "the same buffer for both");
        let smaller_window = outgoing.for_peer(Some(Deflate::new(9)), 0);
        assert_ne!(smaller_window.as_ptr(), first.as_ptr());
    }

    #[test]
    fn the_sse_event_is_made_once_and_shared() {
        let frame = frame::frame(OpCode::Text, br#"{"type":"broadcast"}"#);
        let outgoing = Outgoing::new(&frame);
        let first = outgoing.for_sse().unwrap().clone();
        assert_eq!(&first[..], b"data: {\"type\":\"broadcast\"}\n\n");
        assert_eq!(first.as_ptr(), outgoing.for_sse().unwrap().as_ptr());
        let binary = frame::frame(OpCode::Binary, b"\x01");
        assert_eq!(Outgoing::new(&binary).for_sse(), None);
    }

    #[test]
    fn small_frames_control_frames_and_incompressible_ones_stay_plain() {
        let deflate = Some(Deflate::new(15));
        let small = frame::frame(OpCode::Text, b"short");
        assert_eq!(Outgoing::new(&small).for_peer(deflate, 1024)[..], small[..]);
        let ping = frame::frame(OpCode::Ping, &[b'a'; 100]);
        assert_eq!(Outgoing::new(&ping).for_peer(deflate, 0)[..], ping[..]);
        let mut rng = fastrand::Rng::with_seed(7);
        let noise: Vec<u8> = (0..2000).map(|_| rng.u8(..)).collect();
        let random = frame::frame(OpCode::Binary, &noise);
        assert_eq!(Outgoing::new(&random).for_peer(deflate, 0)[..], random[..]);
    }

    #[test]
    fn transcodes_once_for_msgpack_peers_and_compresses_that_form() {
        let json = format!(
            r#"{{"type":"message","payload":{{"content":"{}"}}}}"#,
            "hi ".repeat(500)
        );
        let text = frame::frame(OpCode::Text, json.as_bytes());
        let outgoing = Outgoing::new(&text);
        assert!(std::ptr::eq(
            &*outgoing.for_wire(Wire::Json, None, 0),
            &text
        ));
        let first = outgoing.for_wire(Wire::MsgPack, None, 0).into_owned();
        let second = outgoing.for_wire(Wire::MsgPack, None, 0).into_owned();
        assert_eq!(first[0], 0x82, "FIN, binary");
        assert_eq!(first.as_ptr(), second.as_ptr(), "one transcoding");
        let payload = frame::server_payload(&first);
        assert_eq!(
            switchboard_protocol::msgpack::to_json(payload).unwrap(),
            json
        );
        let deflate = Some(Deflate::new(15));
        let small = outgoing.for_wire(Wire::MsgPack, deflate, 1 << 20);
        assert_eq!(small.as_ptr(), first.as_ptr(), "below the threshold");
        let packed = outgoing.for_wire(Wire::MsgPack, deflate, 0).into_owned();
        let again = outgoing.for_wire(Wire::MsgPack, deflate, 0).into_owned();
        assert_eq!(packed[0], 0xC2, "FIN, RSV1, binary");
        assert_eq!(packed.as_ptr(), again.as_ptr(), "one compression");
        let json_packed = outgoing.for_wire(Wire::Json, deflate, 0);
        assert_eq!(
            json_packed[0], 0xC1,
            "JSON peers keep their own compressed form"
        );
    }

    #[test]
    fn control_frames_are_the_same_for_msgpack_peers() {
        let ping = frame::frame(OpCode::Ping, b"x");
        let outgoing = Outgoing::new(&ping);
        assert_eq!(outgoing.for_wire(Wire::MsgPack, None, 0)[..], ping[..]);
    }

    #[test]
    fn a_frame_too_deep_to_transcode_becomes_an_internal_error() {
        let json = format!(r#"{{"payload":{}{}}}"#, "[".repeat(200), "]".repeat(200));
        let text = frame::frame(OpCode::Text, json.as_bytes());
        let msgpack = Outgoing::new(&text)
            .for_wire(Wire::MsgPack, None, 0)
            .into_owned();
        let back = switchboard_protocol::msgpack::to_json(frame::server_payload(&msgpack)).unwrap();
        assert!(back.contains(r#""code":"INTERNAL""#), "{back}");
    }
}
