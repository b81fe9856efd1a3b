//! Settings of the discovery client.

use std::time::Duration;

use crate::secret::Secret;

/// How a peer talks to its discovery servers.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DiscoveryClientConfig {
    /// Where the roster is kept. A discovery server is `http://host:port`
    /// (a bare `host:port` gets `http://`); each is registered with on its
    /// own. A member of an etcd cluster is `etcd://host:port[/prefix]`
    /// (prefix `/reflow/networks/` by default): every `etcd://` entry is a
    /// member of one cluster, tried in turn, and they must name the same
    /// prefix. The rosters of all are merged. Empty: no discovery (the
    /// service starts no thread). See `docs/discovery.md`, "Backends".
    pub endpoints: Vec<String>,
    /// Period of re-registration and roster polling. Default 15 s.
    pub refresh_interval: Duration,
    /// TCP connect timeout per request. Default 2 s.
    pub connect_timeout: Duration,
    /// Whole-request timeout (connect, send, read). Default 5 s.
    pub request_timeout: Duration,
    /// Capabilities advertised at registration. Default `["actor_messaging"]`.
    pub capabilities: Vec<String>,
    /// Events buffered per subscriber; a subscriber that falls this far behind
    /// misses events (logged) rather than stalling the service. Default 256.
    pub subscriber_capacity: usize,
    /// Token to sign requests with (`X-Reflow-Timestamp`,
    /// `X-Reflow-Signature`; see [`auth`](super::auth)), for servers that
    /// require signed registrations. A `DistributedNetwork` fills it with
    /// its bridge `auth_token` when left unset. Default none. A [`Secret`]:
    /// never printed.
    pub auth_token: Option<Secret>,
    /// How long this peer's entry outlives its last refresh in etcd: the
    /// lease TTL, rounded up to whole seconds. Must exceed
    /// `refresh_interval`. Discovery servers keep their own TTL
    /// (`reflow-discovery --entry-ttl-secs`) and ignore it. Default 60 s.
    pub entry_ttl: Duration,
    /// The etcd user to authenticate as, for clusters with auth enabled.
    /// Default none.
    pub etcd_credentials: Option<EtcdCredentials>,
}

/// An etcd user and password (etcd's `/v3/auth/authenticate`). The
/// password is a [`Secret`]: never printed. Without TLS it crosses the
/// network in clear, as every etcd request would.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdCredentials {
    /// The etcd user name.
    pub user: String,
    /// Its password.
    pub password: Secret,
}

impl EtcdCredentials {
    /// `user` with `password`.
    pub fn new(user: impl Into<String>, password: Secret) -> EtcdCredentials {
        EtcdCredentials {
            user: user.into(),
            password,
        }
    }
}

impl Default for DiscoveryClientConfig {
    fn default() -> Self {
        DiscoveryClientConfig {
            endpoints: Vec::new(),
            refresh_interval: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            capabilities: vec!["actor_messaging".to_string()],
            subscriber_capacity: 256,
            auth_token: None,
            entry_ttl: Duration::from_secs(60),
            etcd_credentials: None,
        }
    }
}
