//! The MessagePack transcoder of subprotocol `switchboard.v1.msgpack`: any bytes transcode to
//! JSON or to an error, never a panic or a stack overflow; JSON that came out is valid, reads
//! back as the same MessagePack value (transcoding it again gives the same JSON), and the
//! client-frame parser takes it like any text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::protocol::{ParseLimits, parse};
use switchboard_protocol::msgpack;

const LIMITS: ParseLimits = ParseLimits {
    max_name_chars: 16,
    max_content_chars: 64,
    max_metadata_bytes: 64,
    max_history: 100,
};

fuzz_target!(|data: &[u8]| {
    let Ok(json) = msgpack::to_json(data) else {
        return;
    };
    let packed = msgpack::from_json(json.as_bytes()).expect("our JSON transcodes back");
    assert_eq!(msgpack::to_json(&packed).as_deref(), Ok(json.as_str()));
    let _ = parse(&json, &LIMITS);
});
