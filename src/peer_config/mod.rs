//! `PeerConfig`: the TOML file that `reflow-peer` takes, read and checked.
//!
//! ```
//! use reflow_distributed::peer_config::PeerConfig;
//!
//! let text = "network_id = \"alpha\"\nbind_port = 9100\n";
//! let config = PeerConfig::from_str_with_env(text, "alpha.toml", |_| None).expect("valid");
//! assert_eq!(config.instance_id, "alpha-1");
//! let distributed = config.to_distributed_config();
//! assert_eq!(distributed.bridge.bind_port, 9100);
//! ```
//!
//! Every key, its default and its meaning are listed in `docs/configuration.md`.
//! Errors name the file, the line and the key ([`ConfigError`]).

mod document;
mod error;
mod reader;
pub(crate) mod validate;

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use crate::bridge::{BridgeConfig, ReconnectPolicy};
use crate::discovery::DiscoveryClientConfig;
use crate::distributed_config::DistributedConfig;
use crate::runtime::NetworkConfig;

pub use error::{ConfigError, ConfigErrorKind};

/// Environment variable that supplies the auth token. When set and not empty
/// it replaces `auth_token` from the file, so the secret can stay out of it.
pub const AUTH_TOKEN_ENV: &str = "REFLOW_AUTH_TOKEN";

/// A peer's configuration as read from its TOML file.
///
/// Fields hold checked values with the defaults filled in. The bridge,
/// discovery and runtime settings go to [`DistributedConfig`] through
/// [`PeerConfig::to_distributed_config`]; `connect` and `remote_actors` are
/// for the program that starts the peer to act on.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct PeerConfig {
    /// This peer's network name. Required.
    pub network_id: String,
    /// This process's instance name. Default `<network_id>-1`.
    pub instance_id: String,
    /// Address the bridge listens on. Default `127.0.0.1`.
    pub bind_address: IpAddr,
    /// Port the bridge listens on; 0 picks a free port. Default 0.
    pub bind_port: u16,
    /// Host (no port) that other peers dial; the advertised port is the bound
    /// port. Default none: the bind address.
    pub advertise_address: Option<String>,
    /// Shared secret for the bridge handshake; from the file or
    /// [`AUTH_TOKEN_ENV`]. Never printed by `Debug`.
    pub auth_token: Option<String>,
    /// Dial networks that discovery reports. Default true.
    pub auto_connect: bool,
    /// Discovery servers, normalised to `http://host:port`. Default none.
    pub discovery_endpoints: Vec<String>,
    /// Re-registration and roster polling period. Default 15 s.
    pub discovery_refresh: Duration,
    /// Heartbeat period; 3 silent periods evict a connection. Default 1 s.
    pub heartbeat_interval: Duration,
    /// Live bridge connections at most. Default 64.
    pub max_connections: usize,
    /// Largest frame accepted. Default 1 MiB.
    pub max_frame_bytes: usize,
    /// Messages an inport holds. Default 64.
    pub inbox_capacity: usize,
    /// Worker threads; none means the machine's parallelism.
    pub workers: Option<usize>,
    /// Redialing of held links.
    pub reconnect: ReconnectPolicy,
    /// Send the token in clear to discovery-listed peers that speak only
    /// protocol 1.0 (async Reflow). Default false.
    pub legacy_auth: bool,
    /// Accept protocol 1.0 handshakes that carry the token in clear. Default true.
    pub accept_legacy_auth: bool,
    /// A held link down longer than this is reported at warn. Default 30 s.
    pub link_down_warning: Duration,
    /// `IP:PORT` of the admin listener (`/healthz`, `/readyz`, `/metrics`,
    /// `/links`). Default none: no listener.
    pub admin_bind: Option<String>,
    /// Peers to dial at start, from `[[connect]]` tables, in file order.
    pub connect: Vec<ConnectTarget>,
    /// Actors of other networks to register as proxies, from `[[remote_actor]]`.
    pub remote_actors: Vec<RemoteActor>,
}

/// A peer to dial at start (`[[connect]] endpoint = "host:port"`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectTarget {
    /// `host:port` of the other peer's bridge, as written in the file.
    pub endpoint: String,
    /// The network expected there; an endpoint that answers as another
    /// network is refused. Default none (whatever answers).
    pub network_id: Option<String>,
    /// Send the token in clear if the peer there speaks only protocol 1.0
    /// (async Reflow). Default: the top-level `legacy_auth`.
    pub legacy_auth: bool,
}

/// An actor of another network (`[[remote_actor]]`), reachable locally as
/// the proxy node `actor_id@network_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteActor {
    pub actor_id: String,
    pub network_id: String,
}

impl PeerConfig {
    /// All defaults for network `network_id` (not checked; the file readers check).
    pub fn new(network_id: impl Into<String>) -> Self {
        let network_id = network_id.into();
        let bridge = BridgeConfig::default();
        let network = NetworkConfig::default();
        PeerConfig {
            instance_id: format!("{network_id}-1"),
            network_id,
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            bind_port: bridge.bind_port,
            advertise_address: None,
            auth_token: None,
            auto_connect: true,
            discovery_endpoints: Vec::new(),
            discovery_refresh: DiscoveryClientConfig::default().refresh_interval,
            heartbeat_interval: bridge.heartbeat_interval,
            max_connections: bridge.max_connections,
            max_frame_bytes: bridge.max_frame_bytes,
            inbox_capacity: network.inbox_capacity,
            workers: None,
            reconnect: bridge.reconnect,
            legacy_auth: false,
            accept_legacy_auth: bridge.accept_legacy_auth,
            link_down_warning: bridge.link_down_warning,
            admin_bind: None,
            connect: Vec::new(),
            remote_actors: Vec::new(),
        }
    }

    /// Reads and checks the file at `path`; [`AUTH_TOKEN_ENV`] is read from
    /// the process environment. Errors are named after the path as given.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_path_with_env(path, |var| std::env::var_os(var))
    }

    /// As [`PeerConfig::from_path`], with `env` looking up environment variables.
    pub fn from_path_with_env(
        path: impl AsRef<Path>,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|err| ConfigError::new(&name, None, ConfigErrorKind::Io(err)))?;
        document::read(&text, &name, &env)
    }

    /// Reads `text` as if it were the file `name`, with the process
    /// environment, exactly as [`PeerConfig::from_path`] would.
    pub fn from_str_named(text: &str, name: &str) -> Result<Self, ConfigError> {
        Self::from_str_with_env(text, name, |var| std::env::var_os(var))
    }

    /// Reads `text` as the file `name`, with `env` looking up environment
    /// variables (`|_| None` for none).
    pub fn from_str_with_env(
        text: &str,
        name: &str,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self, ConfigError> {
        document::read(text, name, &env)
    }

    /// The settings of the bridge, discovery and local network, on top of
    /// their defaults.
    pub fn to_distributed_config(&self) -> DistributedConfig {
        let mut config = DistributedConfig::new(self.network_id.clone());
        config.instance_id = self.instance_id.clone();
        config.advertise_address = self.advertise_address.clone();
        config.auth_token = self.auth_token.clone();
        config.auto_connect = self.auto_connect;
        config.legacy_auth = self.legacy_auth;
        config.bridge.accept_legacy_auth = self.accept_legacy_auth;
        config.bridge.link_down_warning = self.link_down_warning;
        config.admin_bind = self.admin_bind.clone();

        config.bridge.bind_address = self.bind_address.to_string();
        config.bridge.bind_port = self.bind_port;
        config.bridge.max_connections = self.max_connections;
        config.bridge.heartbeat_interval = self.heartbeat_interval;
        config.bridge.max_frame_bytes = self.max_frame_bytes;
        config.bridge.reconnect = self.reconnect.clone();

        config.discovery.endpoints = self.discovery_endpoints.clone();
        config.discovery.refresh_interval = self.discovery_refresh;

        config.network.inbox_capacity = self.inbox_capacity;
        if let Some(workers) = self.workers {
            config.network.workers = workers;
        }
        config
    }
}

/// Never prints the token.
impl fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerConfig")
            .field("network_id", &self.network_id)
            .field("instance_id", &self.instance_id)
            .field("bind_address", &self.bind_address)
            .field("bind_port", &self.bind_port)
            .field("advertise_address", &self.advertise_address)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "<redacted>"))
            .field("auto_connect", &self.auto_connect)
            .field("discovery_endpoints", &self.discovery_endpoints)
            .field("discovery_refresh", &self.discovery_refresh)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("max_connections", &self.max_connections)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("inbox_capacity", &self.inbox_capacity)
            .field("workers", &self.workers)
            .field("reconnect", &self.reconnect)
            .field("admin_bind", &self.admin_bind)
            .field("connect", &self.connect)
            .field("remote_actors", &self.remote_actors)
            .finish()
    }
}

#[cfg(test)]
mod tests;
