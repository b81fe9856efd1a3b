//! The WebSocket bridge between peers (protocols 1.0 and 1.1, see
//! `docs/bridge.md` and `docs/protocol.md`).
//!
//! ```text
//! Bridge (handle.rs) ── owns ──┬── listener thread ── handshake threads (listener.rs)
//!                              ├── heartbeat thread (heartbeat.rs)
//!                              ├── supervisors, one per held target (supervisor.rs)
//!                              │     └── its one dial in flight (dial.rs)
//!                              └── hub (hub.rs): the map of sessions (registry.rs)
//!                                    └── Session (session/), one per connection
//!                                          ├── reader thread (session/reader.rs)
//!                                          └── writer thread (session/writer.rs)
//! ```
//!
//! A session owns its socket, its two threads, its control and data lanes,
//! its liveness and its teardown; reader and writer know only their half of
//! the socket and their session. Inbound remote messages go to an
//! [`InboundSink`]; outbound ones come in through [`Bridge::send`], the one
//! route to the wire, which hands the message back on every failure it can
//! know of. The bridge knows nothing about actors.

pub(crate) mod auth;
mod backoff;
mod batch;
mod config;
mod delivery;
mod dial;
mod error;
mod events;
mod frame;
mod handle;
mod handshake;
mod heartbeat;
mod hub;
mod journal;
mod listener;
mod liveness;
mod protocol;
mod registry;
mod sending;
mod session;
mod sink;
mod stats;
mod stream;
mod supervisor;
mod threads;

pub use config::{BridgeConfig, BridgeIdentity, DeliveryConfig, DeliveryMode, HoldOptions, ReconnectPolicy};
pub use error::{BridgeError, DeliveryError, HandshakeError, SendError};
pub use events::BridgeEvent;
pub use handle::{Bridge, HeldLink};
pub(crate) use protocol::Outbound;
pub use protocol::RemoteMessage;
pub use sending::SendOptions;
pub use sink::{Arrival, InboundSink, Tracking};
pub use stats::{BridgeStats, LinkStats, REFUSAL_REASONS};
pub(crate) use threads::STACK_BYTES as READER_STACK_BYTES;

/// Entry points into the bridge's input parsing for fuzz targets and
/// regression tests. Not part of the supported API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod inspect {
    /// What the reader makes of one text frame after the handshake:
    /// `"message"`, `"heartbeat"`, `"discovery-request"`,
    /// `"discovery-response"`, `"bad-message"` or `"unrecognised"`.
    pub fn classify_frame(text: &str) -> &'static str {
        use super::protocol::{FrameProblem, Inbound, parse_frame};
        match parse_frame(text) {
            Ok(Inbound::Message(_)) => "message",
            Ok(Inbound::Heartbeat(_)) => "heartbeat",
            Ok(Inbound::DiscoveryRequest(_)) => "discovery-request",
            Ok(Inbound::DiscoveryResponse(_)) => "discovery-response",
            Err(FrameProblem::BadMessage { .. }) => "bad-message",
            Err(FrameProblem::Unrecognised(_)) => "unrecognised",
        }
    }

    /// Whether `text` is accepted as a dialer's first frame, as the acceptor
    /// reads it.
    pub fn accepts_handshake_request(text: &str) -> bool {
        super::handshake::parse_request(text).is_ok()
    }

    /// Whether `text` is accepted as a successful handshake reply, as the
    /// dialer reads it.
    pub fn accepts_handshake_reply(text: &str) -> bool {
        super::handshake::parse_reply(text).is_ok()
    }

    /// Feeds binary frames to a 1.1 reader's decoder and reassembler (limit
    /// `limit` bytes) and returns how many messages came out (a BATCH
    /// frame's good entries each count); errors are counted as a reader
    /// would, never a panic.
    pub fn read_binary_frames(frames: &[&[u8]], limit: usize) -> usize {
        use super::frame::{Frame, Reassembly, decode};
        let mut reassembly = Reassembly::new(limit);
        let mut messages = 0;
        for bytes in frames {
            if bytes.first() == Some(&super::batch::TAG) {
                if let Ok(entries) = super::batch::entries(bytes) {
                    messages += entries
                        .filter(|e| e.as_ref().is_ok_and(|e| e.payload.is_ok()))
                        .count();
                }
                continue;
            }
            match decode(bytes) {
                Ok(Frame::Data(_) | Frame::Sequenced { .. }) => messages += 1,
                Ok(Frame::Fragment { more, chunk }) => {
                    if let Ok(Some(_)) = reassembly.push(more, &chunk) {
                        messages += 1;
                    }
                }
                _ => {}
            }
        }
        messages
    }

    /// Whether a dialer with a token (network `beta`, expecting `alpha`)
    /// would go on after reading `text` as the acceptor's first answer.
    pub fn dialer_accepts_reply(text: &str) -> bool {
        use super::handshake::{DialMode, Dialer};
        let mut identity = super::BridgeIdentity::new("beta", "beta-1");
        identity.auth_token = Some("fuzz-token".into());
        Dialer::new(&identity, Some("alpha"), DialMode::Offer, 1 << 20)
            .is_ok_and(|dialer| dialer.on_reply(text).is_ok())
    }

    /// What a 1.1 reader makes of one binary frame: `"data"`, `"sequenced"`, `"fragment"`,
    /// `"heartbeat"`, `"ack"`, `"credit"`, `"close"`, `"batch"` (readable entries, even if
    /// some payloads are not) or `"bad-frame"`.
    pub fn classify_binary_frame(bytes: &[u8]) -> &'static str {
        use super::frame::{Control, Frame, decode};
        if bytes.first() == Some(&super::batch::TAG) {
            let readable =
                super::batch::entries(bytes).is_ok_and(|mut entries| entries.all(|entry| entry.is_ok()));
            return if readable { "batch" } else { "bad-frame" };
        }
        match decode(bytes) {
            Ok(Frame::Data(_)) => "data",
            Ok(Frame::Sequenced { .. }) => "sequenced",
            Ok(Frame::Fragment { .. }) => "fragment",
            Ok(Frame::Control(Control::Heartbeat { .. })) => "heartbeat",
            Ok(Frame::Control(Control::Ack { .. })) => "ack",
            Ok(Frame::Control(Control::Credit { .. })) => "credit",
            Ok(Frame::Control(Control::Close { .. })) => "close",
            Err(_) => "bad-frame",
        }
    }
}
