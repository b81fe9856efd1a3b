//! One text frame as a bridge sees it: as a dialer's first frame, as an
//! acceptor's reply, and as a frame after the handshake.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reflow_distributed::bridge::inspect;

fuzz_target!(|data: &[u8]| {
    // tungstenite only hands over text frames that are valid UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = inspect::accepts_handshake_request(text);
    let _ = inspect::accepts_handshake_reply(text);
    let kind = inspect::classify_frame(text);
    // Whatever is classified as a message must be valid JSON.
    if kind == "message" {
        assert!(serde_json::from_str::<serde_json::Value>(text).is_ok());
    }
});
