//! The configuration file: any text is either a TOML error naming the problem, or settings
//! that validate into a configuration or fail with an error naming the setting; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::Config;
use switchboard::config::RawSettings;

fuzz_target!(|text: &str| {
    let Ok(raw) = toml::from_str::<RawSettings>(text) else {
        return;
    };
    if let Err(error) = Config::from_settings(raw) {
        let message = error.to_string();
        assert!(message.starts_with("invalid setting `"), "{message}");
    }
});
