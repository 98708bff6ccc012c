use flate2::{Compress, Compression, FlushCompress};

use super::*;

/// What a client sends: the raw deflate of `data`, sync-flushed, without the tail.
pub(crate) fn client_deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    compress
        .compress_vec(data, &mut out, FlushCompress::Sync)
        .expect("compress");
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - TAIL.len());
    out
}

fn inflated(compressed: &[u8], limit: usize) -> Result<Vec<u8>, Violation> {
    with_inflated(compressed, limit, |data| Ok(data.to_vec()))
}

#[test]
fn compressed_frames_inflate_back_to_the_payload() {
    let payload = br#"{"type":"message","payload":{"content":"hello"}}"#.repeat(40);
    let plain = frame::frame(OpCode::Text, &payload);
    for bits in 9..=15 {
        let compressed = compress_frame(&plain, bits).expect("JSON compresses");
        assert_eq!(compressed[0], 0x80 | RSV1 | 0x1);
        assert!(compressed.len() < plain.len() / 4);
        let body = frame::server_payload(&compressed);
        assert_eq!(inflated(body, payload.len()).unwrap(), payload);
    }
}

#[test]
fn what_does_not_shrink_or_is_not_data_is_not_compressed() {
    assert_eq!(compress_frame(&frame::frame(OpCode::Text, b""), 15), None);
    assert_eq!(compress_frame(&frame::frame(OpCode::Text, b"ab"), 15), None);
    assert_eq!(
        compress_frame(&frame::close_frame(1000, &"x".repeat(100)), 15),
        None
    );
    let long = frame::frame(OpCode::Binary, &[7; 4000]);
    assert_eq!(
        compress_frame(&long, 8),
        None,
        "no window of 256 bytes in zlib"
    );
    assert!(compress_frame(&long, 9).is_some());
}

#[test]
fn inflation_stops_one_byte_past_the_limit() {
    let bomb = client_deflate(&vec![b'a'; 1 << 20]);
    assert!(bomb.len() < 2048);
    assert_eq!(inflated(&bomb, 1 << 20).unwrap().len(), 1 << 20);
    assert_eq!(inflated(&bomb, (1 << 20) - 1), Err(Violation::TooBig));
    let mut grown = 0;
    let result = INFLATED.with(|cell| {
        let mut out = cell.borrow_mut();
        let result = inflate_into(&bomb, 1000, &mut out);
        grown = out.capacity();
        out.clear();
        result
    });
    assert_eq!(result, Err(Violation::TooBig));
    assert!(grown <= 1001, "capacity {grown} beyond the limit");
}

#[test]
fn corrupt_data_is_a_protocol_error() {
    assert!(matches!(
        inflated(&[0xFF, 0xFF, 0xFF, 0x00], 1000),
        Err(Violation::Protocol(_))
    ));
}

#[test]
fn empty_and_final_block_messages_inflate() {
    assert_eq!(inflated(&[0x00], 10).unwrap(), b"");
    // "Hello" as one final fixed-Huffman block, as some clients send it (RFC 7692 §7.2.3.1).
    let final_block = [0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00];
    assert_eq!(inflated(&final_block, 10).unwrap(), b"Hello");
}

#[test]
fn every_window_compresses_text_and_noise_of_many_sizes() {
    let mut rng = fastrand::Rng::with_seed(12);
    let text: Vec<u8> = (0..140_000)
        .map(|_| b"abcdefgh {}:,\" "[rng.usize(..15)])
        .collect();
    let noise: Vec<u8> = (0..140_000).map(|_| rng.u8(..)).collect();
    for bits in 9..=15 {
        for len in [16, 64, 256, 1000, 4096, 8191, 32768, 65536, 131_072] {
            for source in [&text, &noise] {
                let plain = frame::frame(OpCode::Binary, &source[..len]);
                if let Some(compressed) = compress_frame(&plain, bits) {
                    let body = frame::server_payload(&compressed);
                    assert_eq!(inflated(body, len).unwrap(), &source[..len]);
                }
            }
        }
    }
}
