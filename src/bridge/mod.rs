//! The WebSocket bridge between peers (protocol 1.0, see `docs/bridge.md`).
//!
//! A [`Bridge`] listens for peers and dials them; each live connection has a
//! blocking reader thread and a writer thread fed by a bounded queue, and only
//! the writer writes to the socket. Inbound remote messages go to an
//! [`InboundSink`]; outbound ones come in through [`Bridge::send`]. The bridge
//! knows nothing about actors.

pub mod config;

mod connection;
mod core;
mod dialer;
mod error;
mod events;
mod handle;
mod handshake;
mod heartbeat;
mod listener;
mod liveness;
mod protocol;
mod reader;
mod reconnect;
mod registry;
mod sink;
mod stats;
mod stream;
mod threads;
mod writer;

pub use config::{BridgeConfig, BridgeIdentity, ReconnectPolicy};
pub use error::{BridgeError, DeliveryError, HandshakeError};
pub use events::BridgeEvent;
pub use handle::Bridge;
pub use protocol::{ActorInfo, DiscoveryRequest, DiscoveryResponse, Heartbeat, RemoteMessage};
pub use sink::InboundSink;
pub use stats::BridgeStats;

/// Entry points into the bridge's input parsing for fuzz targets and
/// regression tests. Not part of the supported API.
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
}
