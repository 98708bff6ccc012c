//! The JSON client-frame parser: any text parses to a command or to a rejection with an error
//! code, never a panic; accepted names and content respect the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::protocol::{Command, ParseLimits, parse};

const LIMITS: ParseLimits = ParseLimits {
    max_name_chars: 16,
    max_content_chars: 64,
    max_metadata_bytes: 64,
    max_history: 100,
};

fuzz_target!(|text: &str| {
    let Ok(inbound) = parse(text, &LIMITS) else {
        return;
    };
    if let Some(id) = inbound.id {
        assert!(id.get().len() <= switchboard::protocol::MAX_ID_LEN);
    }
    match inbound.command {
        Command::JoinRoom { room, since } => {
            assert!(room.as_str().chars().count() <= LIMITS.max_name_chars);
            if let Some(since) = since {
                assert!(since.epoch.len() <= switchboard::protocol::MAX_EPOCH_LEN);
            }
        }
        Command::LeaveRoom { room } => {
            assert!(room.as_str().chars().count() <= LIMITS.max_name_chars);
        }
        Command::History(request) => {
            assert!(request.limit.is_none_or(|limit| limit <= LIMITS.max_history));
        }
        Command::Message { room, .. } => {
            assert!(room.as_str().chars().count() <= LIMITS.max_name_chars);
        }
        _ => {}
    }
});
