//! The WebSocket bridge between peers.
pub mod config;

pub use config::{BridgeConfig, BridgeIdentity, ReconnectPolicy};
