//! The WebSocket frame decoder: any bytes, read in any pieces, decode to the same messages (or
//! the same violation) without panicking, and within the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte says how many of the next bytes are read sizes; the rest is the stream.
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let (splits, input) = rest.split_at(usize::from(count % 16).min(rest.len()));
    switchboard::fuzzing::ws_decoder(splits, input);
});
