//! Protocol 1.1 binary frames as a reader sees them: the input is cut into
//! frames at every 0xFF byte (which no tag uses) and fed to the decoder, the
//! BATCH reader and the fragment reassembler under a small limit. Nothing
//! may panic; the reassembler never yields more messages than frames, and a
//! BATCH entry takes at least six bytes (array header, three names, a bin).
#![no_main]

use libfuzzer_sys::fuzz_target;
use reflow_distributed::bridge::inspect;

fuzz_target!(|data: &[u8]| {
    let frames: Vec<&[u8]> = data.split(|b| *b == 0xff).collect();
    let messages = inspect::read_binary_frames(&frames, 4096);
    assert!(messages <= frames.len() + data.len() / 6);
    for frame in &frames {
        let _ = inspect::classify_binary_frame(frame);
    }
    // The same bytes as text: a 1.1 challenge a dialer with a token reads.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = inspect::dialer_accepts_reply(text);
    }
});
