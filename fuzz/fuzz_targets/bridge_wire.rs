//! Raw bytes arriving on an established bridge connection, read with the
//! bridge's WebSocket limits (default `BridgeConfig`): frame headers, lengths,
//! masking, fragmentation, UTF-8, control frames. Every text frame that comes
//! out goes through the reader's frame parser.
#![no_main]

use std::io::{self, Cursor, Read, Write};

use libfuzzer_sys::fuzz_target;
use reflow_distributed::bridge::{BridgeConfig, inspect};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

/// Input from the fuzzer; writes go nowhere (the reader's stream is read-only).
struct Wire(Cursor<Vec<u8>>);

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let bridge = BridgeConfig::default();
    // A small frame limit lets the fuzzer reach the limit checks cheaply.
    let limit = 4096.min(bridge.max_frame_bytes);
    let config = WebSocketConfig::default()
        .read_buffer_size(bridge.read_buffer_bytes)
        .write_buffer_size(bridge.write_buffer_bytes)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let mut ws = WebSocket::from_raw_socket(Wire(Cursor::new(data.to_vec())), Role::Server, Some(config));
    for _ in 0..1024 {
        match ws.read() {
            Ok(Message::Text(text)) => {
                assert!(text.len() <= limit);
                let _ = inspect::classify_frame(text.as_str());
            }
            Ok(Message::Binary(bytes)) => assert!(bytes.len() <= limit),
            Ok(_) => {}
            Err(_) => break,
        }
    }
});
