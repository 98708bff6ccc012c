//! The client side of RFC 6455, as small as a measuring instrument can make it.
//!
//! Owns: the upgrade request and the check of the response head, and [`Scanner`], which splits
//! the server's byte stream into frames while keeping only the bytes of a frame that has not
//! fully arrived. The masked client frames and the opcodes are the protocol crate's (the server's
//! tests build theirs with the same encoder), re-exported here. Does not own sockets (see
//! `conn`) or any knowledge of the JSON protocol above (see `payload`).
//!
//! Not a general client: no extensions, no subprotocols, no check of `Sec-WebSocket-Accept` (a
//! server that answers 101 to our key is trusted), and fragmented messages are handed over frame
//! by frame (Switchboard never fragments).

use std::fmt::Write as _;

pub(crate) use switchboard_protocol::ws::{
    OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, encode_client_close,
    encode_client_frame,
};

/// Largest server frame the scanner buffers (a `room_joined` listing a huge room can be big).
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// The longest response head we accept before giving up on the upgrade.
pub(crate) const MAX_HEAD: usize = 16 << 10;

/// A complete server frame, borrowed from the read buffer or from the scanner's pending bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    /// The opcode (low four bits of the first byte).
    pub(crate) opcode: u8,
    /// The payload, unmasked (server frames are never masked).
    pub(crate) payload: &'a [u8],
}

/// A server byte stream that is not valid WebSocket framing for a client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Servers must not mask their frames (RFC 6455 §5.1).
    #[error("the server sent a masked frame")]
    Masked,
    /// A frame larger than [`MAX_FRAME`].
    #[error("the server sent a frame of {0} bytes, more than the {MAX_FRAME}-byte limit")]
    TooLarge(u64),
}

/// What the bytes at the start of a buffer say about the frame there.
enum Head {
    /// At least this many bytes are needed to read the header.
    Incomplete(usize),
    /// A complete header: its length and the frame's total length.
    Known {
        header_len: usize,
        total: usize,
        opcode: u8,
    },
}

fn read_head(buf: &[u8]) -> Result<Head, FrameError> {
    let [b0, b1, ..] = *buf else {
        return Ok(Head::Incomplete(2));
    };
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (header_len, len) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (4, u64::from(u16::from_be_bytes([b[0], b[1]]))),
            None => return Ok(Head::Incomplete(4)),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut raw = [0; 8];
                raw.copy_from_slice(b);
                (10, u64::from_be_bytes(raw))
            }
            None => return Ok(Head::Incomplete(10)),
        },
        short => (2, u64::from(short)),
    };
    let payload = usize::try_from(len)
        .ok()
        .filter(|&n| n <= MAX_FRAME)
        .ok_or(FrameError::TooLarge(len))?;
    Ok(Head::Known {
        header_len,
        total: header_len + payload,
        opcode: b0 & 0x0f,
    })
}

/// Splits a stream of server bytes into frames.
///
/// Complete frames are handed to the caller straight from the buffer being fed (no copy); only
/// the tail of a frame cut by the end of a read is kept, in `pending`, whose memory is released
/// once that frame is complete, so an idle connection holds no buffer.
#[derive(Debug, Default)]
pub(crate) struct Scanner {
    pending: Vec<u8>,
}

impl Scanner {
    /// Feeds bytes read from the socket; calls `on_frame` for every frame completed by them.
    pub(crate) fn feed(
        &mut self,
        mut data: &[u8],
        on_frame: &mut impl FnMut(Frame<'_>),
    ) -> Result<(), FrameError> {
        while !self.pending.is_empty() {
            let (need, known) = match read_head(&self.pending)? {
                Head::Incomplete(n) => (n, None),
                Head::Known {
                    header_len,
                    total,
                    opcode,
                } => (total, Some((header_len, opcode))),
            };
            let missing = need - self.pending.len();
            let take = missing.min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if take < missing {
                return Ok(());
            }
            if let Some((header_len, opcode)) = known {
                on_frame(Frame {
                    opcode,
                    payload: &self.pending[header_len..],
                });
                self.pending = Vec::new();
            }
        }
        while !data.is_empty() {
            match read_head(data)? {
                Head::Known {
                    header_len,
                    total,
                    opcode,
                } if total <= data.len() => {
                    on_frame(Frame {
                        opcode,
                        payload: &data[header_len..total],
                    });
                    data = &data[total..];
                }
                Head::Known { total, .. } => {
                    self.pending.reserve_exact(total);
                    break;
                }
                Head::Incomplete(_) => break,
            }
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    /// Whether a frame is partially received.
    #[cfg(test)]
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// The status code of a close frame's payload (1005, "no status", when it has none).
pub(crate) fn close_code(payload: &[u8]) -> u16 {
    match payload {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 1005,
    }
}

/// A random `Sec-WebSocket-Key` (base64 of 16 random bytes).
pub(crate) fn random_key() -> String {
    let bytes: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    base64(&bytes)
}

/// A random masking key; one per connection is enough for a load tool.
pub(crate) fn random_mask() -> [u8; 4] {
    fastrand::u32(..).to_be_bytes()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The HTTP/1.1 upgrade request for `path` (path and query) on `host` (the `Host` header).
pub(crate) fn upgrade_request(host: &str, path: &str, key: &str) -> String {
    let mut request = String::with_capacity(160 + path.len());
    let _ = write!(
        request,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    request
}

/// A parsed response head: its length in bytes (bytes after it belong to the WebSocket stream)
/// and the status code.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub(crate) len: usize,
    pub(crate) status: u16,
}

/// Finds the end of the response head in `buf`; `None` while it has not fully arrived.
pub(crate) fn response_head(buf: &[u8]) -> Option<ResponseHead> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let status = buf[..end]
        .split(|&b| b == b' ')
        .nth(1)
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.trim().parse().ok())
        .unwrap_or(0);
    Some(ResponseHead { len: end, status })
}

#[cfg(test)]
#[path = "ws_tests.rs"]
mod tests;
