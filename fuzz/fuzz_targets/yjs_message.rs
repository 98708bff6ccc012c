//! The y-websocket message decoder (`/yjs`): any bytes decode to a message or an error, never a
//! panic; a decoded message re-encodes to itself; an update it carries is applied as the server
//! applies it (a yrs panic on a crafted update is caught there).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| switchboard::fuzzing::yjs_message(data));
