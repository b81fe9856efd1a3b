//! reflow_distributed: Reflow's actor runtime and its distributed layer, on
//! plain std threads.
//!
//! - [`runtime`]: the in-process actor runtime (actors, networks, backpressure).
//! - [`discovery`]: the discovery registry, its HTTP contract and the client.
//! - [`bridge`]: the WebSocket bridge between peers.
//! - [`names`]: the rules for network, instance and actor ids, and escaping of
//!   untrusted text for logs.
#![forbid(unsafe_code)]

pub mod bridge;
pub mod clock;
pub mod discovery;
pub mod distributed_config;
pub mod distributed_network;
pub mod ids;
pub mod message;
pub mod names;
pub mod peer_cli;
pub mod peer_config;
pub mod peer_runner;
pub mod runtime;

pub use discovery::router;
pub use distributed_config::DistributedConfig;
pub use message::{Message, RemoteReference};
