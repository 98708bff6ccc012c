use switchboard_protocol::ws::encode_masked_frame;

use super::OwnedMessage as Owned;
use super::*;

const LIMITS: Limits = Limits {
    max_frame: 1024,
    max_message: 4096,
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
        assert!(decoder.partial.is_empty());
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
    assert_eq!(
        decoder.partial.capacity(),
        decoder.partial.capacity().min(KEEP_CAPACITY)
    );
    assert!(decoder.fragments.is_none());
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
