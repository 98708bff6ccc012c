use switchboard_protocol::ws::encode_masked_frame;

use super::OwnedMessage as Owned;
use super::*;

const LIMITS: Limits = Limits {
    max_frame: 1024,
    max_message: 4096,
    deflate: false,
};

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_masked_frame(&mut out, first, payload, [0x37, 0xFA, 0x21, 0x3D]);
    out
}

fn text(s: &str) -> Vec<u8> {
    masked(0x81, s.as_bytes())
}

/// Feeds `chunks` one after the other, collecting messages, stopping at the first error.
fn decode(decoder: &mut Decoder, chunks: &[&[u8]]) -> (Vec<Owned>, Result<Flow, Violation>) {
    let mut out = Vec::new();
    let mut result = Ok(Flow::Continue);
    for chunk in chunks {
        let mut chunk = chunk.to_vec();
        result = decoder.feed(&mut chunk, &mut |m| {
            out.push(Owned::from(m));
            Flow::Continue
        });
        if result.is_err() {
            break;
        }
    }
    (out, result)
}

#[test]
fn decodes_several_frames_from_one_read() {
    let mut input = text("hello");
    input.extend(masked(0x82, &[1, 2, 3]));
    input.extend(masked(0x89, b"p"));
    input.extend(masked(0x8A, b""));
    let (out, result) = decode(&mut Decoder::new(LIMITS), &[&input]);
    assert_eq!(result, Ok(Flow::Continue));
    assert_eq!(
        out,
        vec![
            Owned::Text("hello".into()),
            Owned::Binary(vec![1, 2, 3]),
            Owned::Ping(b"p".to_vec()),
            Owned::Pong(vec![]),
        ]
    );
}

#[test]
fn frames_split_at_every_byte_boundary_decode_the_same() {
    let mut input = text("first message");
    input.extend(masked(0x81, &[b'x'; 300]));
    input.extend(text("third"));
    for cut in 1..input.len() {
        let mut decoder = Decoder::new(LIMITS);
        let (out, result) = decode(&mut decoder, &[&input[..cut], &input[cut..]]);
        assert_eq!(result, Ok(Flow::Continue), "cut {cut}");
        assert_eq!(out.len(), 3, "cut {cut}");
        assert_eq!(out[1], Owned::Text("x".repeat(300)));
        assert!(decoder.unfinished.0.is_none());
    }
}

#[test]
fn byte_by_byte_delivery_works_and_leaves_no_buffer() {
    let input = masked(0x81, &[b'y'; 2000 / 2]);
    let chunks: Vec<&[u8]> = input.chunks(1).collect();
    let mut decoder = Decoder::new(LIMITS);
    let (out, result) = decode(&mut decoder, &chunks);
    assert_eq!(result, Ok(Flow::Continue));
    assert_eq!(out, vec![Owned::Text("y".repeat(1000))]);
    assert!(decoder.unfinished.0.is_none());
}

#[test]
fn fragmented_text_with_a_ping_in_between() {
    let mut input = masked(0x01, b"Hel");
    input.extend(masked(0x89, b"ping"));
    input.extend(masked(0x00, b"lo, "));
    input.extend(masked(0x80, "wörld".as_bytes()));
    let (out, result) = decode(&mut Decoder::new(LIMITS), &[&input]);
    assert_eq!(result, Ok(Flow::Continue));
    assert_eq!(
        out,
        vec![
            Owned::Ping(b"ping".to_vec()),
            Owned::Text("Hello, wörld".into())
        ]
    );
}

#[test]
fn a_character_split_across_fragments_is_valid() {
    let bytes = "é".as_bytes();
    let mut input = masked(0x01, &bytes[..1]);
    input.extend(masked(0x80, &bytes[1..]));
    let (out, result) = decode(&mut Decoder::new(LIMITS), &[&input]);
    assert_eq!(result, Ok(Flow::Continue));
    assert_eq!(out, vec![Owned::Text("é".into())]);
}

#[test]
fn invalid_utf8_fails_fast_in_the_first_fragment() {
    let input = masked(0x01, &[b'a', 0xFF, b'b']);
    let (_, result) = decode(&mut Decoder::new(LIMITS), &[&input]);
    assert_eq!(result, Err(Violation::InvalidUtf8));
    let (_, result) = decode(&mut Decoder::new(LIMITS), &[&masked(0x81, &[0xC3])]);
    assert_eq!(
        result,
        Err(Violation::InvalidUtf8),
        "truncated character at FIN"
    );
}

/// A text message of `parts.len()` fragments (text, continuation..., final continuation).
fn fragmented(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    let last = parts.len() - 1;
    let first_byte = |i: usize| match (i, i == last) {
        (0, true) => 0x81,
        (0, false) => 0x01,
        (_, true) => 0x80,
        (_, false) => 0x00,
    };
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| masked(first_byte(i), part))
        .collect()
}

/// Invalid UTF-8: overlong encodings, UTF-16 surrogates, code points past U+10FFFF, stray
/// continuation bytes and bytes that never occur.
const INVALID: &[&[u8]] = &[
    &[0xC0, 0xAF],
    &[0xC1, 0xBF],
    &[0xE0, 0x80, 0xAF],
    &[0xF0, 0x80, 0x80, 0xAF],
    &[0xED, 0xA0, 0x80],
    &[0xED, 0xBF, 0xBF],
    &[0xF4, 0x90, 0x80, 0x80],
    &[0x80],
    &[0xFE],
];

#[test]
fn invalid_utf8_in_the_first_of_three_fragments_fails_before_the_others_arrive() {
    let frames = fragmented(&[&[b'a', 0xFF], b"b", b"c"]);
    let mut decoder = Decoder::new(LIMITS);
    let (out, result) = decode(&mut decoder, &[&frames[0]]);
    assert_eq!(result, Err(Violation::InvalidUtf8));
    assert!(out.is_empty());
}

#[test]
fn a_four_byte_character_split_across_fragments_is_valid() {
    let bytes = "a😀b".as_bytes();
    for cut in 2..=4 {
        // 1+3, 2+2 and 3+1 bytes of the character; every way of reading the frames, too.
        let frames = fragmented(&[&bytes[..cut], &bytes[cut..]]);
        let input = frames.concat();
        for split in 0..input.len() {
            let (out, result) = decode(
                &mut Decoder::new(LIMITS),
                &[&input[..split], &input[split..]],
            );
            assert_eq!(result, Ok(Flow::Continue), "cut {cut}, split {split}");
            assert_eq!(out, vec![Owned::Text("a😀b".into())], "cut {cut}");
        }
    }
    // And one byte per fragment.
    let frames = fragmented(&[b"a", &bytes[1..2], &bytes[2..3], &bytes[3..4], &bytes[4..]]);
    let (out, result) = decode(&mut Decoder::new(LIMITS), &[&frames.concat()]);
    assert_eq!(result, Ok(Flow::Continue));
    assert_eq!(out, vec![Owned::Text("a😀b".into())]);
}

#[test]
fn an_incomplete_character_at_the_end_of_the_final_fragment_is_invalid() {
    let bytes = "😀".as_bytes();
    for len in 1..4 {
        let frames = fragmented(&[b"ok", &bytes[..len]]);
        let (_, result) = decode(&mut Decoder::new(LIMITS), &[&frames.concat()]);
        assert_eq!(result, Err(Violation::InvalidUtf8), "{len} of 4 bytes");
    }
    // Also when the final fragment arrives byte by byte.
    let input = fragmented(&[b"ok", &bytes[..3]]).concat();
    let chunks: Vec<&[u8]> = input.chunks(1).collect();
    let (_, result) = decode(&mut Decoder::new(LIMITS), &chunks);
    assert_eq!(result, Err(Violation::InvalidUtf8));
}

#[test]
fn overlong_encodings_and_surrogates_are_invalid_wherever_they_are() {
    for bad in INVALID {
        let whole = masked(0x81, bad);
        let (_, result) = decode(&mut Decoder::new(LIMITS), &[&whole]);
        assert_eq!(result, Err(Violation::InvalidUtf8), "{bad:x?} in one frame");
        // Split across two fragments after each of its bytes.
        for cut in 0..=bad.len() {
            let frames = fragmented(&[&bad[..cut], &bad[cut..], b"rest"]);
            let (_, result) = decode(&mut Decoder::new(LIMITS), &[&frames.concat()]);
            assert_eq!(result, Err(Violation::InvalidUtf8), "{bad:x?} cut at {cut}");
        }
    }
}

#[test]
fn invalid_utf8_in_a_frame_arriving_in_pieces_fails_when_it_arrives() {
    // Autobahn 6.4.3/6.4.4: one text frame sent in three pieces, the invalid bytes in the
    // second. The violation comes with the second read, before the third.
    let mut payload = "κόσμε".as_bytes().to_vec();
    payload.extend_from_slice(&[0xF4, 0x90, 0x80, 0x80]);
    payload.extend_from_slice(b"edited");
    let input = masked(0x81, &payload);
    let cut = input.len() - 6;
    let mut decoder = Decoder::new(LIMITS);
    let (_, result) = decode(&mut decoder, &[&input[..10]]);
    assert_eq!(result, Ok(Flow::Continue));
    let (_, result) = decode(&mut decoder, &[&input[10..cut]]);
    assert_eq!(result, Err(Violation::InvalidUtf8));
    // Only the first byte of the bad sequence has arrived: it may still turn out valid.
    let (_, result) = decode(&mut Decoder::new(LIMITS), &[&input[..cut - 3]]);
    assert_eq!(result, Ok(Flow::Continue));
    // A continuation frame arriving in pieces, the bad bytes right after a carried lead byte.
    let mut input = masked(0x01, &[b'a', 0xF0]);
    input.extend(masked(0x80, &[0x28, b'b', b'c', b'd']));
    let (_, result) = decode(&mut Decoder::new(LIMITS), &[&input[..input.len() - 3]]);
    assert_eq!(result, Err(Violation::InvalidUtf8));
}

#[test]
fn text_split_into_reads_anywhere_decodes_the_same() {
    let text = "ascii, then é and ☃ and 😀, again: é☃😀 — end";
    let bytes = text.as_bytes();
    let mut single = masked(0x81, bytes);
    single
        .extend(fragmented(&[&bytes[..13], &bytes[13..30], &bytes[30..31], &bytes[31..]]).concat());
    single.extend(fragmented(&[&bytes[..28], &bytes[28..]]).concat());
    for size in 1..single.len() {
        let chunks: Vec<&[u8]> = single.chunks(size).collect();
        let (out, result) = decode(&mut Decoder::new(LIMITS), &chunks);
        assert_eq!(result, Ok(Flow::Continue), "reads of {size}");
        let expected: Vec<Owned> = (0..3).map(|_| Owned::Text(text.into())).collect();
        assert_eq!(out, expected, "reads of {size}");
    }
    for cut in 1..single.len() {
        let (out, result) = decode(&mut Decoder::new(LIMITS), &[&single[..cut], &single[cut..]]);
        assert_eq!(result, Ok(Flow::Continue), "cut {cut}");
        assert_eq!(out.len(), 3, "cut {cut}");
    }
}

#[test]
fn binary_frames_arriving_in_pieces_are_not_checked_as_text() {
    let input = masked(0x82, &[0xFF; 300]);
    let chunks: Vec<&[u8]> = input.chunks(7).collect();
    let (out, result) = decode(&mut Decoder::new(LIMITS), &chunks);
    assert_eq!(result, Ok(Flow::Continue));
    assert_eq!(out, vec![Owned::Binary(vec![0xFF; 300])]);
}

#[test]
fn fragmentation_rules_are_enforced() {
    let (_, result) = decode(&mut Decoder::new(LIMITS), &[&masked(0x80, b"x")]);
    assert!(matches!(result, Err(Violation::Protocol(_))));
    let mut input = masked(0x01, b"a");
    input.extend(text("b"));
    let (_, result) = decode(&mut Decoder::new(LIMITS), &[&input]);
    assert!(matches!(result, Err(Violation::Protocol(_))));
}

#[test]
fn an_oversized_frame_is_refused_from_its_header_alone() {
    let input = masked(0x82, &[0; 1025]);
    let mut decoder = Decoder::new(LIMITS);
    // Only the 8 header bytes arrive: the decision is made before any payload is buffered.
    let (_, result) = decode(&mut decoder, &[&input[..8]]);
    assert_eq!(result, Err(Violation::TooBig));
    let (out, result) = decode(&mut Decoder::new(LIMITS), &[&masked(0x82, &[0; 1024])]);
    assert_eq!(result, Ok(Flow::Continue), "exactly at the limit is fine");
    assert_eq!(out.len(), 1);
}

#[test]
fn an_oversized_fragmented_message_is_refused() {
    let mut input = Vec::new();
    input.extend(masked(0x02, &[0; 1024]));
    for _ in 0..3 {
        input.extend(masked(0x00, &[0; 1024]));
    }
    let (_, result) = decode(&mut Decoder::new(LIMITS), &[&input]);
    assert_eq!(
        result,
        Ok(Flow::Continue),
        "4096 bytes so far is at the limit"
    );
    let mut input = input.clone();
    input.extend(masked(0x80, &[0; 1]));
    let (_, result) = decode(&mut Decoder::new(LIMITS), &[&input]);
    assert_eq!(result, Err(Violation::TooBig));
}

#[test]
fn close_frames_are_validated() {
    let (out, _) = decode(&mut Decoder::new(LIMITS), &[&masked(0x88, b"")]);
    assert_eq!(out, vec![Owned::Close(None)]);
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    let (out, _) = decode(&mut Decoder::new(LIMITS), &[&masked(0x88, &payload)]);
    assert_eq!(out, vec![Owned::Close(Some((1000, "bye".into())))]);
    for bad in [
        &[0x03][..],
        &1005u16.to_be_bytes(),
        &999u16.to_be_bytes(),
        &2000u16.to_be_bytes(),
    ] {
        let (_, result) = decode(&mut Decoder::new(LIMITS), &[&masked(0x88, bad)]);
        assert!(matches!(result, Err(Violation::Protocol(_))), "{bad:?}");
    }
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.push(0xFF);
    let (_, result) = decode(&mut Decoder::new(LIMITS), &[&masked(0x88, &payload)]);
    assert_eq!(result, Err(Violation::InvalidUtf8));
}

#[test]
fn stop_discards_the_rest_of_the_input() {
    let mut input = text("one");
    input.extend(text("two"));
    let mut seen = 0;
    let flow = Decoder::new(LIMITS).feed(&mut input, &mut |_| {
        seen += 1;
        Flow::Stop
    });
    assert_eq!(flow, Ok(Flow::Stop));
    assert_eq!(seen, 1);
}

const DEFLATE: Limits = Limits {
    deflate: true,
    ..LIMITS
};

fn deflated(data: &[u8]) -> Vec<u8> {
    crate::ws::deflate::tests::client_deflate(data)
}

#[test]
fn compressed_messages_are_inflated_whole_or_fragmented() {
    let text = "compressed text ".repeat(20);
    let body = deflated(text.as_bytes());
    let (out, result) = decode(&mut Decoder::new(DEFLATE), &[&masked(0xC1, &body)]);
    assert_eq!(result, Ok(Flow::Continue));
    assert_eq!(out, vec![Owned::Text(text.clone())]);
    let (first, rest) = body.split_at(body.len() / 2);
    let mut input = masked(0x41, first);
    input.extend(masked(0x89, b"between"));
    input.extend(masked(0x80, rest));
    for split in [1, input.len() / 2, input.len() - 1] {
        let (out, result) = decode(
            &mut Decoder::new(DEFLATE),
            &[&input[..split], &input[split..]],
        );
        assert_eq!(result, Ok(Flow::Continue));
        assert_eq!(
            out,
            vec![Owned::Ping(b"between".to_vec()), Owned::Text(text.clone())]
        );
    }
}

#[test]
fn rsv1_needs_the_extension_and_a_first_frame() {
    let body = deflated(b"hello");
    let (_, result) = decode(&mut Decoder::new(LIMITS), &[&masked(0xC1, &body)]);
    assert!(matches!(result, Err(Violation::Protocol(_))));
    let mut input = masked(0x01, b"he");
    input.extend(masked(0xC0, b"llo"));
    let (_, result) = decode(&mut Decoder::new(DEFLATE), &[&input]);
    assert!(matches!(result, Err(Violation::Protocol(_))));
}

#[test]
fn the_message_limit_applies_to_the_inflated_size() {
    let limit = DEFLATE.max_message as usize;
    let at_limit = deflated(&vec![b'a'; limit]);
    let (out, result) = decode(&mut Decoder::new(DEFLATE), &[&masked(0xC2, &at_limit)]);
    assert_eq!(result, Ok(Flow::Continue));
    assert_eq!(out, vec![Owned::Binary(vec![b'a'; limit])]);
    let over = deflated(&vec![b'a'; limit + 1]);
    let (out, result) = decode(&mut Decoder::new(DEFLATE), &[&masked(0xC2, &over)]);
    assert_eq!(result, Err(Violation::TooBig));
    assert!(out.is_empty());
}

#[test]
fn invalid_utf8_after_inflation_is_refused() {
    let body = deflated(&[b'a', 0xFF, b'b']);
    let (_, result) = decode(&mut Decoder::new(DEFLATE), &[&masked(0xC1, &body)]);
    assert_eq!(result, Err(Violation::InvalidUtf8));
}

#[test]
fn a_stop_leaves_the_following_frames_unread_and_they_decode_later() {
    let frames = [text("first"), text("second"), masked(0x82, &[7])];
    let split = frames[0].len() + 3;
    // The second read completes a partial frame before the stop, and the stop is in the
    // middle of the loop too: both report what they left.
    let input: Vec<u8> = frames.concat();
    let (head, tail) = input.split_at(split);
    let mut decoder = Decoder::new(LIMITS);
    let mut seen = Vec::new();
    let fed = decoder
        .feed_until(&mut head.to_vec(), &mut |m| {
            seen.push(Owned::from(m));
            Flow::Stop
        })
        .unwrap();
    assert_eq!(
        fed,
        Fed {
            flow: Flow::Stop,
            unread: 3
        }
    );
    assert_eq!(seen, vec![Owned::Text("first".into())]);
    // Whatever stayed unread is fed again, in front of the next read.
    let mut again = head[split - fed.unread..].to_vec();
    again.extend_from_slice(tail);
    let fed = decoder
        .feed_until(&mut again, &mut |m| {
            seen.push(Owned::from(m));
            Flow::Stop
        })
        .unwrap();
    assert_eq!(
        fed,
        Fed {
            flow: Flow::Stop,
            unread: frames[2].len()
        }
    );
    let len = again.len();
    let fed = decoder
        .feed_until(&mut again[len - fed.unread..], &mut |m| {
            seen.push(Owned::from(m));
            Flow::Continue
        })
        .unwrap();
    assert_eq!(
        fed,
        Fed {
            flow: Flow::Continue,
            unread: 0
        }
    );
    assert_eq!(
        seen,
        vec![
            Owned::Text("first".into()),
            Owned::Text("second".into()),
            Owned::Binary(vec![7]),
        ]
    );
}
