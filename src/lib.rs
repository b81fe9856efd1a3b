//! reflow_distributed: Reflow's actor runtime and its distributed layer, on
//! plain std threads.
//!
//! A peer is a [`DistributedNetwork`]: a local actor graph
//! ([`runtime::Network`]), a WebSocket [`bridge`] to other peers and,
//! optionally, a [`discovery`] client. An actor of another peer is reached
//! through a local proxy node named `actor@network`.
//!
//! - [`DistributedNetwork`], [`DistributedConfig`]: one peer, and its settings.
//! - [`peer_config`]: the TOML file `reflow-peer` reads, as a [`PeerConfig`].
//! - [`runtime`]: the in-process actor runtime (actors, networks, backpressure).
//! - [`bridge`]: the WebSocket bridge between peers, usable on its own.
//! - [`discovery`]: the discovery client and server; [`router`] is its HTTP
//!   contract, mountable in a `tiny_http` application.
//! - [`names`]: the rules for network, instance and actor ids, and escaping
//!   of untrusted text for logs.
//! - [`Message`], [`RemoteReference`]: what travels between actors.
//! - [`Secret`]: the shared auth token, never printed.
//!
//! # Logging
//!
//! The library logs through the [`log`](https://docs.rs/log) facade (info for
//! lifecycle, warn for retries and refusals, debug for per-message traces)
//! and installs no logger: a program that wants the lines installs one, such
//! as `simple_logger` or `env_logger`. Untrusted text (ids, reasons given by
//! other peers) is escaped before it reaches a line, and the token never does.
//!
//! # Features
//!
//! `cli` (default): the `reflow-peer` and `reflow-discovery` binaries and
//! their dependencies (`lexopt`, `signal-hook`, `simple_logger`). The
//! library is the same without it: `default-features = false` when only
//! embedding a peer.
//!
//! # Example
//!
//! A peer that sends to the actor `recorder` of the peer `alpha` (the
//! walk-through's alpha, which listens on `127.0.0.1:9100` and expects the
//! token `shared-secret`):
//!
//! ```no_run
//! use reflow_distributed::{DistributedConfig, DistributedNetwork};
//!
//! let mut config = DistributedConfig::new("beta");
//! config.auth_token = Some("shared-secret".into());
//! let peer = DistributedNetwork::new(config)?;
//! let proxy = peer.register_remote_actor("recorder", "alpha")?; // "recorder@alpha"
//! peer.start()?;
//! peer.connect_to_network("127.0.0.1:9100")?;
//! peer.send_to_actor(&proxy, "in", "hello-from-beta")?;
//! peer.shutdown();
//! # Ok::<(), reflow_distributed::DistributedError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, clippy::missing_errors_doc)]

mod admin;
pub mod bridge;
mod clock;
pub mod discovery;
mod distributed_config;
pub mod distributed_network;
mod http_server;
mod ids;
mod message;
pub mod names;
pub mod peer_config;
pub mod runtime;
mod secret;

pub use discovery::router;
pub use distributed_config::DistributedConfig;
pub use distributed_network::{DistributedError, DistributedNetwork};
pub use message::{Message, RemoteReference};
pub use peer_config::PeerConfig;
pub use secret::Secret;
