//! [`Outgoing`]: one encoded server frame on its way to one or many connections, with the
//! compressed form that connections which negotiated permessage-deflate get.
//!
//! Encode once (DESIGN.md §5.1) survives compression: the compressed form is made at most once
//! per fan-out, by the first recipient that needs it, and every compressing recipient queues
//! that same `Bytes`. A connection without compression pays one branch: no allocation, no
//! copy. A client that allows only a smaller window than the one the shared form was made with
//! (`server_max_window_bits`, which browsers do not send) gets a form of its own.
//!
//! SSE connections (`Wire::Sse`) get the frame's event form (`crate::sse`), made the same way:
//! at most once per fan-out, by the first SSE recipient, and shared by the others.

use std::borrow::Cow;
use std::cell::OnceCell;

use bytes::Bytes;

use crate::ws::deflate::{self, Deflate};

/// A frame and, made on first use, its compressed form.
pub(crate) struct Outgoing<'a> {
    frame: &'a Bytes,
    /// The window it was compressed with, and the compressed frame (`None`: not worth it).
    deflated: OnceCell<(u8, Option<Bytes>)>,
    /// The SSE event (`None`: the frame has no SSE form, see `sse::event_of_frame`).
    sse: OnceCell<Option<Bytes>>,
}

impl<'a> Outgoing<'a> {
    /// A frame built by `ws::frame`, complete and unmasked.
    pub(crate) fn new(frame: &'a Bytes) -> Self {
        Self {
            frame,
            deflated: OnceCell::new(),
            sse: OnceCell::new(),
        }
    }

    /// The frame as it is, uncompressed.
    pub(crate) fn plain(&self) -> &'a Bytes {
        self.frame
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
        let Some(deflate) = deflate else {
            return Cow::Borrowed(self.frame);
        };
        if crate::ws::frame::server_payload(self.frame).len() < threshold {
            return Cow::Borrowed(self.frame);
        }
        let bits = deflate.window_bits();
        let (made_with, deflated) = self
            .deflated
            .get_or_init(|| (bits, deflate::compress_frame(self.frame, bits)));
        // A frame compressed with a window of 2^w is valid for every client allowing 2^w.
        if *made_with <= bits {
            return Cow::Borrowed(deflated.as_ref().unwrap_or(self.frame));
        }
        match deflate::compress_frame(self.frame, bits) {
            Some(own) => Cow::Owned(own),
            None => Cow::Borrowed(self.frame),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::{self, OpCode};

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
}
