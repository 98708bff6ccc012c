//! The y-websocket message decoder (`/yjs`): any bytes decode to a message or an error, never a
//! panic; a decoded message re-encodes to itself; an update it carries is applied as the server
//! applies it.
//!
//! yrs panics on some crafted updates; the server catches those panics where it applies an
//! update (`hub/docs.rs`, `apply`) and refuses the update with 1007. libFuzzer's panic hook
//! would abort on them before they are caught, so panics raised inside yrs are let through to
//! that catch; a panic anywhere else still aborts and is a finding.
#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;

static CAUGHT_IN_YRS: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    CAUGHT_IN_YRS.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info
                .location()
                .is_some_and(|location| location.file().contains("/yrs-"))
            {
                return;
            }
            fuzzer_hook(info);
        }));
    });
    switchboard::fuzzing::yjs_message(data);
});
