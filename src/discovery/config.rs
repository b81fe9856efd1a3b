//! Settings of the discovery client.

use std::time::Duration;

use crate::secret::Secret;

/// How a peer talks to its discovery servers.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DiscoveryClientConfig {
    /// Base URLs such as `http://127.0.0.1:9000`; a bare `host:port` gets `http://`.
    /// Empty: no discovery (the service starts no thread).
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
        }
    }
}
