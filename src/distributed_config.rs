//! `DistributedConfig`: everything a `DistributedNetwork` needs, one layer's
//! settings per field.

use crate::bridge::BridgeConfig;
use crate::discovery::DiscoveryClientConfig;
use crate::runtime::NetworkConfig;
use crate::secret::Secret;

/// Settings of one peer. Start from [`DistributedConfig::new`] and change
/// fields; every default is documented on its field and listed, with its
/// TOML key, in `docs/configuration.md`.
///
/// ```
/// use std::time::Duration;
///
/// use reflow_distributed::DistributedConfig;
///
/// let mut config = DistributedConfig::new("beta");
/// assert_eq!(config.instance_id, "beta-1");
/// config.auth_token = Some("shared-secret".into());
/// config.bridge.bind_port = 9200;
/// config.bridge.heartbeat_interval = Duration::from_millis(250);
/// config.discovery.endpoints = vec!["http://127.0.0.1:9000".into()];
/// assert!(!format!("{config:?}").contains("shared-secret"));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DistributedConfig {
    /// This peer's network name (`alpha`); remote actors are addressed `actor@alpha`.
    pub network_id: String,
    /// This process's instance name (`alpha-1`); a restarted peer may use a new one.
    pub instance_id: String,
    /// Address other peers dial, as registered with discovery. Default: none,
    /// meaning the bound address, or a detected local address when bound to
    /// `0.0.0.0`. `0.0.0.0` (or `::`) registers the wildcard and leaves the
    /// address to discovery: a server lists the request's source address,
    /// etcd this host's address toward the member.
    pub advertise_address: Option<String>,
    /// Shared secret checked in the bridge handshake; never logged.
    pub auth_token: Option<Secret>,
    /// Hold a link to every network that discovery lists, while it is listed.
    /// Default true.
    pub auto_connect: bool,
    /// Send the token in clear to discovery-listed peers that speak only
    /// protocol 1.0 (async Reflow) and so cannot do the 1.1 proof. Default
    /// false; `[[connect]]` entries have their own `legacy_auth`.
    pub legacy_auth: bool,
    /// Bridge bounds, including bind address and port.
    pub bridge: BridgeConfig,
    /// Discovery endpoints and refresh interval.
    pub discovery: DiscoveryClientConfig,
    /// The local network's pool and inbox bounds.
    pub network: NetworkConfig,
    /// `host:port` of the admin listener (`/healthz`, `/readyz`,
    /// `/metrics`, `/links`; port 0 picks one). Default none: no listener.
    /// Not authenticated: bind it to loopback or a management network.
    pub admin_bind: Option<String>,
}

impl DistributedConfig {
    /// Defaults for network `network_id`, instance `network_id-1`.
    pub fn new(network_id: impl Into<String>) -> Self {
        let network_id = network_id.into();
        DistributedConfig {
            instance_id: format!("{network_id}-1"),
            network_id,
            advertise_address: None,
            auth_token: None,
            auto_connect: true,
            legacy_auth: false,
            bridge: BridgeConfig::default(),
            discovery: DiscoveryClientConfig::default(),
            network: NetworkConfig::default(),
            admin_bind: None,
        }
    }
}
