//! A peer's TOML config file, read with an empty environment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reflow_distributed::peer_config::PeerConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match PeerConfig::from_str_with_env(text, "fuzz.toml", |_| None) {
        Ok(config) => {
            let _ = format!("{config:?}");
            let _ = config.to_distributed_config();
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
