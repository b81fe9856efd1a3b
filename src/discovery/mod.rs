//! Discovery: how peers find each other.
//!
//! - [`registry`]: the roster with TTL (pure logic plus a shared handle).
//! - [`router`]: the HTTP contract, mountable in any `tiny_http` application.
//! - [`server`]: [`DiscoveryServer`](server::DiscoveryServer), the contract on
//!   its own socket with health, metrics and hardened connection handling.
//! - [`auth`]: signed registrations and deregistrations (optional).
//! - [`DiscoveryService`]: the client a peer runs to register and to follow
//!   the roster as [`DiscoveryEvent`]s.
pub mod auth;
mod client;
pub mod config;
mod error;
mod info;
pub mod metrics;
pub mod registry;
mod roster;
pub mod router;
mod routes;
pub mod server;

pub use client::DiscoveryService;
pub use config::DiscoveryClientConfig;
pub use error::DiscoveryError;
pub use info::{
    NetworkInfo, RegistrationInfo, parse_registration, parse_registration_from, resolve_wildcard,
    validate_endpoint, validate_registration,
};
pub use roster::DiscoveryEvent;

/// The server's request-head parser, for fuzz targets and regression tests.
/// Not part of the supported API.
#[doc(hidden)]
pub mod inspect {
    pub use crate::http_server::{HeadError, MAX_HEADERS, RequestHead, head_len, parse_head};
}
