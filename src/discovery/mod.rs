//! Discovery: how peers find each other (`docs/discovery.md`).
//!
//! - [`DiscoveryService`]: the client a peer runs to register and to follow
//!   the roster as [`DiscoveryEvent`]s, with discovery servers, an etcd
//!   cluster, or both. A `DistributedNetwork` runs one when its config
//!   lists discovery endpoints.
//! - [`DiscoveryServer`]: the contract on its own socket, with health,
//!   metrics and hardened connection handling; `reflow-discovery` runs it.
//! - [`router`]: the HTTP contract alone, mountable in any `tiny_http`
//!   application, over a [`router::SharedRegistry`] (the roster with TTL).
//! - [`auth`]: signed registrations (optional): [`ServerConfig`]'s token
//!   makes the server refuse unsigned or stale writes; a peer signs with its
//!   own `auth_token`; any client can with [`auth::sign`]
//!   (`docs/discovery.md`).
//!
//! ```
//! use reflow_distributed::discovery::{DiscoveryServer, ServerConfig};
//!
//! let server = DiscoveryServer::start(ServerConfig::new("127.0.0.1:0"))?;
//! assert!(server.local_addr().port() > 0);
//! assert_eq!(server.registry().live_count(), 0);
//! server.shutdown();
//! # Ok::<(), reflow_distributed::discovery::DiscoveryError>(())
//! ```
pub mod auth;
mod backend;
mod client;
mod config;
mod endpoint;
mod error;
mod etcd;
mod info;
mod metrics;
mod registry;
mod roster;
pub mod router;
mod routes;
mod server;
mod server_backend;

pub use client::DiscoveryService;
pub use config::{DiscoveryClientConfig, EtcdCredentials};
pub use error::DiscoveryError;
pub use info::{NetworkInfo, RegistrationInfo};
pub use roster::DiscoveryEvent;
pub use server::{DiscoveryServer, ServerConfig};

/// The server's request-head parser, for fuzz targets and regression tests.
/// Not part of the supported API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod inspect {
    pub use super::info::parse_registration;
    pub use crate::http_server::head::RequestHead;
    pub use crate::http_server::{HeadError, MAX_HEADERS, head_len, parse_head};
}
