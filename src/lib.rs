//! reflow_distributed: Reflow's actor runtime and its distributed layer, on
//! plain std threads.
//!
//! - [`runtime`]: the in-process actor runtime (actors, networks, backpressure).
//! - [`discovery`]: the discovery registry, its HTTP contract and the client.
//! - [`bridge`]: the WebSocket bridge between peers.
//! - [`names`]: the rules for network, instance and actor ids, and escaping of
//!   untrusted text for logs.
//! - [`peer_cli`], [`peer_runner`], [`cli`]: the command lines of the two
//!   binaries (the `cli` feature, on by default).
#![forbid(unsafe_code)]

mod admin;
pub mod bridge;
#[cfg(feature = "cli")]
pub mod cli;
pub mod clock;
pub mod discovery;
pub mod distributed_config;
pub mod distributed_network;
mod http_server;
pub mod ids;
pub mod message;
pub mod names;
#[cfg(feature = "cli")]
pub mod peer_cli;
pub mod peer_config;
#[cfg(feature = "cli")]
pub mod peer_runner;
pub mod runtime;

pub use discovery::router;
pub use distributed_config::DistributedConfig;
pub use message::{Message, RemoteReference};
