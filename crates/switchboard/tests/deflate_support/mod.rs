//! permessage-deflate as a client does it, with flate2 (an implementation independent of the
//! server's): the offer a browser sends, and compressing and inflating message payloads.

// Each test binary that declares `mod deflate_support` uses part of it.
#![allow(dead_code)]

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// What a browser offers.
pub(crate) const OFFER: &str =
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
/// The end of a sync flush, stripped by the sender and put back by the receiver.
pub(crate) const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// A message payload compressed as a client sends it (sync flush, tail stripped).
pub(crate) fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    compress
        .compress_vec(data, &mut out, FlushCompress::Sync)
        .unwrap();
    out.truncate(out.len() - TAIL.len());
    out
}

/// A compressed message payload as received, inflated.
pub(crate) fn inflate(data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend_from_slice(&TAIL);
    let mut decompress = Decompress::new(false);
    let mut out = Vec::with_capacity(4096);
    // Until all input is used and the output had room to spare (no output left behind).
    loop {
        out.reserve(out.capacity());
        let rest = &input[decompress.total_in() as usize..];
        decompress
            .decompress_vec(rest, &mut out, FlushDecompress::Sync)
            .unwrap();
        if decompress.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
    }
}
