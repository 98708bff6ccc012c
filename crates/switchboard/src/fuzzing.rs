//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`; not a public API).
//!
//! The JSON client-frame parser ([`crate::protocol::parse`]) and the configuration
//! ([`crate::config`]) are public already; this module exposes only what is private: the
//! WebSocket frame decoder and the y-websocket message decoder.

use crate::ws::decoder::{Decoder, Flow, Limits, Message, OwnedMessage as Owned};

/// Limits small enough for the fuzzer to reach them.
const LIMITS: Limits = Limits {
    max_frame: 256,
    max_message: 1024,
    deflate: false,
};

/// Decodes `input` as one read, then again split into reads at the sizes `splits` gives (each
/// byte one read size, cycled), as the driver would: stopping at a close frame or a protocol
/// violation. Panics if the two decodings differ (in messages or in the violation), if a text
/// message is not UTF-8, or if a message exceeds the limits.
pub fn ws_decoder(splits: &[u8], input: &[u8]) {
    let whole = decode(input, &[input.len()]);
    let sizes: Vec<usize> = splits.iter().map(|&b| usize::from(b) + 1).collect();
    let chunked = decode(input, if sizes.is_empty() { &[1] } else { &sizes });
    assert_eq!(
        whole, chunked,
        "decoding depends on how the input was split"
    );
    for message in &whole.0 {
        match message {
            Owned::Text(text) => assert!(text.len() <= LIMITS.max_message as usize),
            Owned::Binary(data) => assert!(data.len() <= LIMITS.max_message as usize),
            Owned::Ping(data) | Owned::Pong(data) => {
                assert!(data.len() <= LIMITS.max_frame as usize)
            }
            Owned::Close(_) => {}
        }
    }
}

/// The messages decoded from `input` fed in reads of `sizes` (cycled), and the violation that
/// ended the decoding, if any.
fn decode(input: &[u8], sizes: &[usize]) -> (Vec<Owned>, Option<String>) {
    let mut decoder = Decoder::new(LIMITS);
    let mut messages = Vec::new();
    let mut rest = input.to_vec();
    let mut rest = rest.as_mut_slice();
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (read, after) = rest.split_at_mut(size.min(rest.len()));
        rest = after;
        let flow = decoder.feed(read, &mut |message| {
            let stop = matches!(message, Message::Close(_));
            messages.push(Owned::from(message));
            if stop { Flow::Stop } else { Flow::Continue }
        });
        match flow {
            Ok(Flow::Continue) => {}
            Ok(Flow::Stop) => break,
            Err(violation) => return (messages, Some(violation.to_string())),
        }
    }
    (messages, None)
}

/// Decodes `input` as a y-websocket message, re-encodes what it decoded and decodes that again
/// (panics if the two differ), and applies an update it carries to a fresh document as the
/// server does. Panics only on a bug of ours: a panic of yrs on a crafted update is caught
/// there, and must stay caught.
pub fn yjs_message(input: &[u8]) {
    use crate::yjs::{self, Message};
    let Ok(message) = yjs::decode(input) else {
        return;
    };
    let again = match &message {
        Message::SyncStep1(body) => yjs::sync_step1(body),
        Message::SyncStep2(body) => yjs::sync_step2(body),
        Message::Update(body) => yjs::update(body),
        Message::Awareness(entries) => yjs::awareness(entries.iter().copied()),
        Message::QueryAwareness => vec![3],
    };
    assert_eq!(
        yjs::decode(&again).as_ref(),
        Ok(&message),
        "re-encoding changed the message"
    );
    if let Message::SyncStep2(update) | Message::Update(update) = message {
        let _ = crate::hub::apply_update(&yrs::Doc::new(), update);
    }
}
