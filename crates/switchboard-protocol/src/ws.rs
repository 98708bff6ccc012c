//! The client side of WebSocket framing (RFC 6455 §5.2): opcodes, and the masked frames a
//! client sends. The bench tool sends with it; the server's tests build with it the frames a
//! client would send, or must not.
//!
//! Not here: server frames (unmasked, encoded once for every recipient) and the parsing of
//! client frames, which are the server's own `ws` layer; reading server frames, which is the
//! bench's scanner (the Rust client leaves framing to tungstenite).

/// Opcode of a continuation frame (the second and later frames of a fragmented message).
pub const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;

/// The FIN bit of a frame's first byte: set on the last (or only) frame of a message.
pub const FIN: u8 = 0x80;

/// The MASK bit of a frame's second byte: set on every client frame.
const MASKED: u8 = 0x80;

/// Appends to `out` one masked client frame with FIN set (a whole message, or a control
/// frame) carrying `payload`, in the shortest of the three length forms (7, 16 or 64 bits).
pub fn encode_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    encode_masked_frame(out, FIN | opcode, payload, mask);
}

/// Appends to `out` a masked close frame with status `code` and `reason`. The reason is
/// written whole: a control frame's payload is at most 125 bytes, so a reason over 123 bytes
/// makes a frame the peer must refuse.
pub fn encode_client_close(out: &mut Vec<u8>, code: u16, reason: &str, mask: [u8; 4]) {
    encode_parts(
        out,
        FIN | OP_CLOSE,
        &[&code.to_be_bytes(), reason.as_bytes()],
        mask,
    );
}

/// Appends to `out` one masked frame whose first byte is `first_byte` as given (FIN, the
/// three reserved bits and the opcode): for fragments (`OP_TEXT` without [`FIN`], then
/// [`OP_CONTINUATION`]s, the last with [`FIN`]) and for frames a server must refuse.
pub fn encode_masked_frame(out: &mut Vec<u8>, first_byte: u8, payload: &[u8], mask: [u8; 4]) {
    encode_parts(out, first_byte, &[payload], mask);
}

/// Writes the header for the total length of `parts`, then the parts masked as one payload.
fn encode_parts(out: &mut Vec<u8>, first_byte: u8, parts: &[&[u8]], mask: [u8; 4]) {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    out.reserve(14 + len);
    out.push(first_byte);
    match len {
        0..=125 => out.push(MASKED | len as u8),
        126..=0xFFFF => {
            out.push(MASKED | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(MASKED | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    let payload = parts.iter().flat_map(|part| part.iter());
    out.extend(
        payload
            .zip(mask.iter().cycle())
            .map(|(byte, key)| byte ^ key),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header length and declared payload length of an encoded frame.
    fn header(frame: &[u8]) -> (usize, usize) {
        match frame[1] & 0x7f {
            126 => (4, usize::from(u16::from_be_bytes([frame[2], frame[3]]))),
            127 => {
                let mut len = [0; 8];
                len.copy_from_slice(&frame[2..10]);
                (10, u64::from_be_bytes(len) as usize)
            }
            n => (2, usize::from(n)),
        }
    }

    #[test]
    fn client_frames_are_masked_and_unmask_back() {
        let mask = [1, 2, 3, 4];
        for len in [0, 5, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            encode_client_frame(&mut out, OP_TEXT, &payload, mask);
            assert_eq!(out[0], 0x81);
            assert_eq!(out[1] & 0x80, 0x80, "mask bit");
            let (header_len, declared) = header(&out);
            assert_eq!(declared, len);
            assert_eq!(&out[header_len..header_len + 4], &mask);
            let unmasked: Vec<u8> = out[header_len + 4..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(unmasked, payload);
        }
    }

    #[test]
    fn close_frames_carry_the_code_then_the_reason() {
        let mut out = Vec::new();
        encode_client_close(&mut out, 1000, "", [0; 4]);
        assert_eq!(out, [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]);
        out.clear();
        let mask = [9, 8, 7, 6];
        encode_client_close(&mut out, 1001, "bye", mask);
        let unmasked: Vec<u8> = out[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!((out[0], out[1]), (0x88, 0x85));
        assert_eq!(unmasked, [0x03, 0xe9, b'b', b'y', b'e']);
    }

    #[test]
    fn frames_appended_after_others_keep_the_first_byte_given() {
        let mut out = Vec::new();
        encode_masked_frame(&mut out, OP_TEXT, b"He", [0; 4]);
        encode_masked_frame(&mut out, FIN | OP_CONTINUATION, b"y", [0; 4]);
        encode_masked_frame(&mut out, 0xC1, b"", [0; 4]);
        assert_eq!(
            out,
            [
                0x01, 0x82, 0, 0, 0, 0, b'H', b'e', 0x80, 0x81, 0, 0, 0, 0, b'y', 0xC1, 0x80, 0, 0,
                0, 0
            ]
        );
    }
}
