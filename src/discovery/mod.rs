//! Discovery: how peers find each other.
//!
//! - [`registry`]: the roster with TTL (pure logic plus a shared handle).
//! - [`router`]: the HTTP contract, mountable in any `tiny_http` application.
//! - [`server`]: [`DiscoveryServer`](server::DiscoveryServer), the contract on
//!   its own socket with health, metrics and hardened connection handling.
//! - [`DiscoveryService`]: the client a peer runs to register and to follow
//!   the roster as [`DiscoveryEvent`]s.
mod client;
mod config;
mod connection;
mod error;
mod http;
mod info;
mod metrics;
mod registry;
mod roster;
pub mod router;
mod server;

pub use client::DiscoveryService;
pub use config::DiscoveryClientConfig;
pub use error::DiscoveryError;
pub use info::{NetworkInfo, RegistrationInfo};
pub use roster::DiscoveryEvent;
pub use server::{DiscoveryServer, ServerConfig};

/// The server's request-head parser, for fuzz targets and regression tests.
/// Not part of the supported API.
#[doc(hidden)]
pub mod inspect {
    pub use super::http::{HeadError, MAX_HEADERS, RequestHead, head_len, parse_head};
    pub use super::info::parse_registration;
}
