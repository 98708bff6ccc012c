//! The WebSocket frame layout (RFC 6455 §5.2): parsing client frame headers with every rule a
//! server must enforce, unmasking, and building server frames.
//!
//! Server frames are unmasked, so one encoded frame (header and payload in one contiguous
//! [`Bytes`]) is valid for every recipient: that is what makes "encode once" possible. Nothing
//! here allocates per recipient.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use switchboard_protocol::ws::{OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};

use super::Violation;

/// Header room reserved in front of a server frame's payload (servers never mask).
const SERVER_HEADER_ROOM: usize = 10;
/// Control frames carry at most 125 payload bytes (RFC 6455 §5.5).
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode (RFC 6455 §5.2). Reserved opcodes are refused while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            OP_CONTINUATION => Self::Continuation,
            OP_TEXT => Self::Text,
            OP_BINARY => Self::Binary,
            OP_CLOSE => Self::Close,
            OP_PING => Self::Ping,
            OP_PONG => Self::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => OP_CONTINUATION,
            Self::Text => OP_TEXT,
            Self::Binary => OP_BINARY,
            Self::Close => OP_CLOSE,
            Self::Ping => OP_PING,
            Self::Pong => OP_PONG,
        }
    }

    pub(crate) fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A parsed client frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) fin: bool,
    pub(crate) opcode: OpCode,
    pub(crate) mask: [u8; 4],
    /// RSV1: the message is compressed (permessage-deflate); whether that is allowed is the
    /// decoder's to check, as it knows what was negotiated.
    pub(crate) compressed: bool,
    /// Payload length in bytes.
    pub(crate) payload_len: u64,
    /// Length of the header itself in bytes.
    pub(crate) header_len: usize,
}

impl Header {
    /// Header plus payload, in bytes. Only meaningful once `payload_len` was checked against a
    /// limit that fits in `usize`.
    pub(crate) fn frame_len(&self) -> usize {
        self.header_len + self.payload_len as usize
    }
}

/// Parses a client frame header from the start of `buf`. `Ok(None)` means more bytes are needed.
/// Refuses what no extension we support could make valid: RSV2 and RSV3, RSV1 on a control
/// or continuation frame (permessage-deflate marks only a message's first frame), reserved
/// opcodes, unmasked client frames, fragmented or oversized control frames, 64-bit lengths
/// with the top bit set.
pub(crate) fn parse_header(buf: &[u8]) -> Result<Option<Header>, Violation> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x30 != 0 {
        return Err(Violation::Protocol(
            "reserved bits set without a negotiated extension",
        ));
    }
    let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(Violation::Protocol("reserved opcode"))?;
    let compressed = b0 & 0x40 != 0;
    if compressed && (opcode == OpCode::Continuation || opcode.is_control()) {
        return Err(Violation::Protocol(
            "RSV1 set on a control or continuation frame",
        ));
    }
    let fin = b0 & 0x80 != 0;
    if b1 & 0x80 == 0 {
        return Err(Violation::Protocol("client frames must be masked"));
    }
    let (payload_len, len_bytes) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 2),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut len = [0; 8];
                len.copy_from_slice(b);
                let len = u64::from_be_bytes(len);
                if len >> 63 != 0 {
                    return Err(Violation::Protocol("payload length has its top bit set"));
                }
                (len, 8)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 0),
    };
    if opcode.is_control() {
        if !fin {
            return Err(Violation::Protocol("control frames must not be fragmented"));
        }
        if payload_len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(Violation::Protocol("control frame payload over 125 bytes"));
        }
    }
    let mask_at = 2 + len_bytes;
    let Some(m) = buf.get(mask_at..mask_at + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask: [m[0], m[1], m[2], m[3]],
        compressed,
        payload_len,
        header_len: mask_at + 4,
    }))
}

/// The full length of the header that starts `partial`, as far as its first two bytes tell
/// (2 while they have not arrived).
pub(crate) fn header_len_hint(partial: &[u8]) -> usize {
    match partial.get(1) {
        None => 2,
        Some(b1) => match b1 & 0x7F {
            126 => 8,
            127 => 14,
            _ => 6,
        },
    }
}

/// Unmasks (or masks: XOR is its own inverse) `payload` in place, starting at mask offset 0.
pub(crate) fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Writes an unmasked server frame header (first byte `first`) for a payload of `len` bytes;
/// returns its length.
fn server_header(first: u8, len: usize, out: &mut [u8; SERVER_HEADER_ROOM]) -> usize {
    out[0] = first;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if let Ok(len) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Builds one complete, unmasked server frame whose payload `fill` writes directly after room
/// reserved for the header, so the payload is never copied to prepend the header. The result is
/// shared by every recipient.
pub(crate) fn build<E>(
    opcode: OpCode,
    size_hint: usize,
    fill: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<Bytes, E> {
    build_with(0x80, opcode, size_hint, fill)
}

/// [`build`] with the FIN and RSV bits of the first byte given as `flags` (a compressed
/// message sets RSV1).
pub(crate) fn build_with<E>(
    flags: u8,
    opcode: OpCode,
    size_hint: usize,
    fill: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<Bytes, E> {
    let mut buf = BytesMut::with_capacity(SERVER_HEADER_ROOM + size_hint);
    buf.put_bytes(0, SERVER_HEADER_ROOM);
    fill(&mut buf)?;
    let mut header = [0; SERVER_HEADER_ROOM];
    let n = server_header(
        flags | opcode.bits(),
        buf.len() - SERVER_HEADER_ROOM,
        &mut header,
    );
    buf[SERVER_HEADER_ROOM - n..SERVER_HEADER_ROOM].copy_from_slice(&header[..n]);
    buf.advance(SERVER_HEADER_ROOM - n);
    Ok(buf.freeze())
}

/// A complete server frame with the given payload.
pub(crate) fn frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let built: Result<Bytes, std::convert::Infallible> = build(opcode, payload.len(), |buf| {
        buf.extend_from_slice(payload);
        Ok(())
    });
    match built {
        Ok(bytes) => bytes,
        Err(never) => match never {},
    }
}

/// A close frame with `code` and a reason cut to fit the 125-byte control payload limit.
pub(crate) fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    frame(OpCode::Close, &payload)
}

/// The payload of a complete server frame built by this module (its header skipped).
pub(crate) fn server_payload(frame: &[u8]) -> &[u8] {
    let header = match frame.get(1).map(|b| b & 0x7F) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    frame.get(header..).unwrap_or_default()
}

/// The heartbeat Ping frame (empty payload), shared by every connection.
pub(crate) fn ping_frame() -> Bytes {
    Bytes::from_static(&[0x89, 0x00])
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::ws::{FIN, encode_masked_frame};

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let fin = if fin { FIN } else { 0 };
        encode_masked_frame(&mut out, fin | opcode, payload, [1, 2, 3, 4]);
        out
    }

    #[test]
    fn parses_all_three_length_forms() {
        for len in [0, 125, 126, 65535, 65536, 1 << 20] {
            let bytes = masked(0x2, true, &vec![7; len]);
            let header = parse_header(&bytes).unwrap().unwrap();
            assert_eq!(header.payload_len, len as u64);
            assert_eq!(header.frame_len(), bytes.len());
            assert_eq!(header.opcode, OpCode::Binary);
        }
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        let bytes = masked(0x1, true, &[b'x'; 300]);
        for cut in 0..8 {
            assert_eq!(parse_header(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse_header(&bytes[..8]).unwrap().is_some());
    }

    #[test]
    fn refuses_what_a_server_must_refuse() {
        let unmasked = [0x81, 0x01, b'a'];
        assert!(parse_header(&unmasked).is_err());
        let rsv2 = [0xA1, 0x81, 0, 0, 0, 0, 0];
        assert!(parse_header(&rsv2).is_err());
        let compressed_ping = [0xC9, 0x80, 0, 0, 0, 0];
        assert!(parse_header(&compressed_ping).is_err());
        let compressed_continuation = [0xC0, 0x80, 0, 0, 0, 0];
        assert!(parse_header(&compressed_continuation).is_err());
        let compressed_text = [0xC1, 0x80, 0, 0, 0, 0];
        assert!(parse_header(&compressed_text).unwrap().unwrap().compressed);
        let reserved_opcode = [0x83, 0x80, 0, 0, 0, 0];
        assert!(parse_header(&reserved_opcode).is_err());
        let fragmented_ping = [0x09, 0x80, 0, 0, 0, 0];
        assert!(parse_header(&fragmented_ping).is_err());
        let long_ping = masked(0x9, true, &[0; 126]);
        assert!(parse_header(&long_ping).is_err());
        let mut huge = vec![0x82, 0xFF];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        huge.extend_from_slice(&[0; 4]);
        assert!(parse_header(&huge).is_err());
    }

    #[test]
    fn masking_round_trips_at_every_length() {
        for len in 0..40 {
            let original: Vec<u8> = (0..len as u8).collect();
            let mut data = original.clone();
            apply_mask(&mut data, [0xAA, 0x55, 0x0F, 0xF0]);
            let expected: Vec<u8> = original
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [0xAA, 0x55, 0x0F, 0xF0][i % 4])
                .collect();
            assert_eq!(data, expected);
            apply_mask(&mut data, [0xAA, 0x55, 0x0F, 0xF0]);
            assert_eq!(data, original);
        }
    }

    #[test]
    fn server_frames_have_minimal_headers() {
        for (len, header_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let payload = vec![b'x'; len];
            let frame = frame(OpCode::Text, &payload);
            assert_eq!(frame.len(), header_len + len);
            assert_eq!(frame[0], 0x81);
            assert_eq!(&frame[header_len..], &payload[..]);
        }
    }

    #[test]
    fn server_payload_skips_each_header_size() {
        for len in [0, 125, 126, 65536] {
            let payload = vec![b'p'; len];
            assert_eq!(server_payload(&frame(OpCode::Text, &payload)), &payload[..]);
        }
    }

    #[test]
    fn close_frames_cut_reasons_on_char_boundaries() {
        let frame = close_frame(1001, &"é".repeat(100));
        assert!(frame.len() - 2 <= MAX_CONTROL_PAYLOAD);
        assert_eq!(&frame[2..4], &1001u16.to_be_bytes());
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }
}
