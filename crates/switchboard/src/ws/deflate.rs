//! permessage-deflate (RFC 7692): compressing server frames and inflating client messages.
//!
//! No zlib state belongs to a connection. Both directions run without context takeover (the
//! handshake answer says so for both, `ws::extension`), so every message is compressed and
//! inflated on its own: the compressor and the decompressor are the worker thread's, reset
//! before each message, and an idle connection holds nothing. That is also what lets a
//! fan-out compress a message once for all its recipients (`hub::Outgoing`): a frame
//! compressed without context is valid for every client that negotiated the extension.
//!
//! Inflating is bounded: the output grows in steps and stops as soon as it passes the limit
//! (the client's `--max-frame-size`), so a small frame that would inflate to gigabytes costs
//! at most the limit and one step before it is refused with 1009.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::{BufMut, Bytes};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::Violation;
use super::frame::{self, OpCode};

/// The RSV1 bit of a frame's first byte: "this message is compressed" (RFC 7692 §6).
pub(crate) const RSV1: u8 = 0x40;
/// The end of a sync flush, which a sender strips and a receiver appends (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];
/// The largest LZ77 window, and the one client messages are inflated with: it reads data
/// compressed with any smaller window too.
pub(crate) const MAX_WINDOW_BITS: u8 = 15;
/// The smallest window zlib can compress with (raw deflate); a client that allows only a
/// smaller one gets its messages uncompressed.
const MIN_COMPRESS_WINDOW_BITS: u8 = 9;
/// Compression level: a fast one keeps most of the gain on JSON at a fraction of the CPU of
/// the default level (6). Not 1: zlib-rs 0.6's level 1 ("quick") panics on some inputs with a
/// window below 2^15 (`every_window_compresses_text_and_noise_of_many_sizes`).
const LEVEL: u32 = 2;
/// First and smallest growth step of the inflate output.
const INFLATE_STEP: usize = 16 << 10;
/// Inflate output buffers above this capacity are freed after the message.
const KEEP_CAPACITY: usize = 64 << 10;

/// permessage-deflate as agreed with one client: how our messages to it may be compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deflate {
    /// `server_max_window_bits` (8 to 15): our frames must use an LZ77 window at most 2^this.
    window_bits: u8,
}

impl Deflate {
    /// The agreement for a window of at most 2^`window_bits` (clamped to 8..=15).
    pub(crate) fn new(window_bits: u8) -> Self {
        Self {
            window_bits: window_bits.clamp(8, MAX_WINDOW_BITS),
        }
    }

    /// The window our frames to this client may use, in bits (never 0).
    pub(crate) fn window_bits(self) -> u8 {
        self.window_bits
    }

    /// The inverse of [`Deflate::window_bits`]; 0 is "not negotiated".
    pub(crate) fn from_bits(bits: u8) -> Option<Self> {
        (bits != 0).then_some(Self { window_bits: bits })
    }
}

thread_local! {
    /// The worker thread's compressor and the window it was made for.
    static COMPRESSOR: RefCell<Option<(u8, Compress)>> = const { RefCell::new(None) };
    /// The worker thread's decompressor.
    static DECOMPRESSOR: RefCell<Option<Decompress>> = const { RefCell::new(None) };
    /// The worker thread's inflate output, lent to the message handler.
    static INFLATED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The compressed form of `frame`, a complete unfragmented data frame built by
/// [`frame::build`], for clients that accept a window of 2^`window_bits`; `None` when it is
/// not a data frame, or compressing would not make it smaller.
pub(crate) fn compress_frame(frame: &[u8], window_bits: u8) -> Option<Bytes> {
    let opcode = match frame.first()? {
        0x81 => OpCode::Text,
        0x82 => OpCode::Binary,
        _ => return None,
    };
    if window_bits < MIN_COMPRESS_WINDOW_BITS {
        return None;
    }
    let payload = frame::server_payload(frame);
    // A fan-out compresses inside its delivery loop: a panic in zlib would cut the loop short
    // for every later recipient. It sends the frame plain instead, with a fresh compressor.
    let built = catch_unwind(AssertUnwindSafe(|| {
        frame::build_with(0x80 | RSV1, opcode, payload.len(), |buf| {
            COMPRESSOR.with(|cell| match cell.try_borrow_mut() {
                Ok(mut slot) => {
                    let compress = match &mut *slot {
                        Some((bits, compress)) if *bits == window_bits => compress,
                        slot => &mut slot.insert((window_bits, new_compressor(window_bits))).1,
                    };
                    compress.reset();
                    compress_into(compress, payload, buf)
                }
                Err(_) => compress_into(&mut new_compressor(window_bits), payload, buf),
            })
        })
    }));
    match built {
        Ok(built) => built.ok(),
        Err(_) => {
            COMPRESSOR.with(|cell| cell.replace(None));
            None
        }
    }
}

fn new_compressor(window_bits: u8) -> Compress {
    Compress::new_with_window_bits(Compression::new(LEVEL), false, window_bits)
}

/// Why a payload is sent uncompressed.
struct NotSmaller;

/// Appends the compressed `payload` (without the sync-flush tail) to `buf`, in less room than
/// the payload itself takes.
fn compress_into(
    compress: &mut Compress,
    payload: &[u8],
    buf: &mut bytes::BytesMut,
) -> Result<(), NotSmaller> {
    let start = buf.len();
    // Room for the payload plus the tail: output that does not fit is not worth sending.
    let room = payload.len() + TAIL.len();
    buf.put_bytes(0, room);
    let (in_before, out_before) = (compress.total_in(), compress.total_out());
    let status = compress.compress(payload, &mut buf[start..], FlushCompress::Sync);
    let consumed = usize::try_from(compress.total_in() - in_before).unwrap_or(0);
    let produced = usize::try_from(compress.total_out() - out_before).unwrap_or(usize::MAX);
    if status.is_err() || consumed != payload.len() || produced >= room {
        return Err(NotSmaller);
    }
    buf.truncate(start + produced);
    if !buf.ends_with(&TAIL) || produced - TAIL.len() >= payload.len() {
        return Err(NotSmaller);
    }
    buf.truncate(start + produced - TAIL.len());
    Ok(())
}

/// Inflates a compressed message and hands the result to `use_it`; a violation when the data
/// is not deflate data, or when it inflates to more than `limit` bytes (1009), found before
/// more than about `limit` bytes are produced.
pub(crate) fn with_inflated<R>(
    compressed: &[u8],
    limit: usize,
    use_it: impl FnOnce(&[u8]) -> Result<R, Violation>,
) -> Result<R, Violation> {
    INFLATED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut out) => {
            let result = inflate_into(compressed, limit, &mut out).and_then(|()| use_it(&out));
            out.clear();
            if out.capacity() > KEEP_CAPACITY {
                *out = Vec::new();
            }
            result
        }
        Err(_) => {
            let mut out = Vec::new();
            inflate_into(compressed, limit, &mut out)?;
            use_it(&out)
        }
    })
}

fn inflate_into(compressed: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), Violation> {
    DECOMPRESSOR.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            let decompress = slot.get_or_insert_with(new_decompressor);
            decompress.reset(false);
            inflate_parts(decompress, compressed, limit, out)
        }
        Err(_) => inflate_parts(&mut new_decompressor(), compressed, limit, out),
    })
}

fn new_decompressor() -> Decompress {
    Decompress::new_with_window_bits(false, MAX_WINDOW_BITS)
}

/// Inflates `compressed` followed by the sync-flush tail into `out`, never letting `out` hold
/// more than `limit + 1` bytes.
fn inflate_parts(
    decompress: &mut Decompress,
    compressed: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), Violation> {
    const CORRUPT: Violation = Violation::Protocol("invalid compressed data");
    for part in [compressed, &TAIL[..]] {
        let mut rest = part;
        loop {
            if out.len() == out.capacity() {
                // Doubling, capped one byte past the limit: reaching it proves the message
                // too big without producing more.
                let target = (out.capacity() * 2)
                    .max(INFLATE_STEP)
                    .min(limit.saturating_add(1));
                out.reserve_exact(target.saturating_sub(out.len()).max(1));
            }
            let (in_before, out_before) = (decompress.total_in(), decompress.total_out());
            let status = decompress
                .decompress_vec(rest, out, FlushDecompress::Sync)
                .map_err(|_| CORRUPT)?;
            if out.len() > limit {
                return Err(Violation::TooBig);
            }
            let consumed = usize::try_from(decompress.total_in() - in_before).unwrap_or(0);
            let produced = decompress.total_out() - out_before;
            rest = &rest[consumed..];
            if status == Status::StreamEnd {
                return Ok(());
            }
            // Output that filled the room may have more behind it; otherwise zlib stopped
            // because it has used all it was given (or can make no progress with it).
            let filled = out.len() == out.capacity();
            if !filled && (rest.is_empty() || (consumed == 0 && produced == 0)) {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "deflate_tests.rs"]
pub(crate) mod tests;
