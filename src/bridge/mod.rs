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
