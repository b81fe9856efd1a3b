//! Discovery: registry, HTTP contract, server and client.
pub mod config;

pub use config::DiscoveryClientConfig;
