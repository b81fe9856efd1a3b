//! `DistributedNetwork`: a local network, the bridge that links it to other
//! peers, and the discovery client that finds them.

mod advertise;
mod error;
mod inbound;
mod proxy;
mod watcher;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use serde_json::Value;

pub use self::error::DistributedError;
use self::inbound::{BridgeSender, LocalRouter};
use self::proxy::{ProxyTarget, RemoteProxy};
use self::watcher::Watcher;
use crate::admin::{AdminServer, PeerView};
use crate::bridge::{
    Bridge, BridgeEvent, BridgeIdentity, BridgeStats, HoldOptions, Outbound, SendError as BridgeSendError,
    SendOptions,
};
use crate::discovery::{DiscoveryService, RegistrationInfo};
use crate::distributed_config::DistributedConfig;
use crate::message::Message;
use crate::runtime::{Actor, Network};

/// One peer of a federation: a local [`Network`], the bridge that links it
/// to other peers, and the discovery client that finds them. All methods
/// take `&self`; share it in an `Arc` to use it from several threads.
///
/// Register actors, [`start`](Self::start), then link to other peers
/// ([`connect_to_network`](Self::connect_to_network),
/// [`hold_connection`](Self::hold_connection), or discovery with
/// `auto_connect`). An actor of another peer is reached through a proxy node
/// `actor@network` ([`register_remote_actor`](Self::register_remote_actor)).
/// [`shutdown`](Self::shutdown) (also run on drop) joins every thread.
///
/// # Example
///
/// Two peers in one process, on free ports of 127.0.0.1:
///
/// ```
/// use std::time::Duration;
///
/// use reflow_distributed::runtime::Recorder;
/// use reflow_distributed::{DistributedConfig, DistributedNetwork, Message};
///
/// let alpha = DistributedNetwork::new(DistributedConfig::new("alpha"))?;
/// let recorder = Recorder::new(Recorder::DEFAULT_HISTORY);
/// let seen = recorder.log();
/// alpha.register_local_actor("recorder", Box::new(recorder), serde_json::Value::Null)?;
/// alpha.start()?;
///
/// let beta = DistributedNetwork::new(DistributedConfig::new("beta"))?;
/// let proxy = beta.register_remote_actor("recorder", "alpha")?;
/// assert_eq!(proxy, "recorder@alpha");
/// beta.start()?;
/// let endpoint = alpha.local_addr().expect("started").to_string();
/// assert_eq!(beta.connect_to_network(&endpoint)?, "alpha");
///
/// beta.send_to_actor(&proxy, "in", "hello")?;
/// assert!(seen.wait_until(Duration::from_secs(10), |records| !records.is_empty()));
/// assert_eq!(seen.records()[0].message, Message::string("hello"));
///
/// beta.shutdown();
/// alpha.shutdown();
/// # Ok::<(), reflow_distributed::DistributedError>(())
/// ```
pub struct DistributedNetwork {
    config: DistributedConfig,
    network: Network,
    bridge: Arc<OnceLock<Arc<Bridge>>>,
    discovery: OnceLock<Arc<DiscoveryService>>,
    advertised: OnceLock<String>,
    watcher: Mutex<Option<Watcher>>,
    admin: Mutex<Option<AdminServer>>,
    /// Names of the proxy nodes registered through `register_remote_actor`;
    /// looked up by every `send_to_actor`, so a fast hasher (Cargo.toml,
    /// foldhash): the names are this peer's own.
    proxies: RwLock<HashSet<String, foldhash::fast::RandomState>>,
    started: AtomicBool,
    stopped: AtomicBool,
}

impl DistributedNetwork {
    /// A peer that is not started yet: register actors, then call `start`.
    /// Nothing is bound and no thread runs until then.
    ///
    /// # Errors
    ///
    /// [`DistributedError::InvalidName`] when `config.network_id` is not an
    /// id (`names::check_id`).
    pub fn new(config: DistributedConfig) -> Result<DistributedNetwork, DistributedError> {
        check_name("network_id", &config.network_id)?;
        let network = Network::new(config.network.clone());
        Ok(DistributedNetwork {
            config,
            network,
            bridge: Arc::new(OnceLock::new()),
            discovery: OnceLock::new(),
            advertised: OnceLock::new(),
            watcher: Mutex::new(None),
            admin: Mutex::new(None),
            proxies: RwLock::new(HashSet::default()),
            started: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        })
    }

    /// The settings this peer was made with.
    pub fn config(&self) -> &DistributedConfig {
        &self.config
    }

    /// This peer's network id.
    pub fn network_id(&self) -> &str {
        &self.config.network_id
    }

    /// Adds a local node `id` running `actor`; remote peers address it by
    /// `id`. `metadata` is kept with the node (`Value::Null` for none).
    /// Before or after `start`.
    ///
    /// # Errors
    ///
    /// [`DistributedError::InvalidName`] when `id` is not an id;
    /// [`DistributedError::Runtime`] when a node `id` exists already, the
    /// actor's declaration is inconsistent, or the network is shut down.
    pub fn register_local_actor(
        &self,
        id: &str,
        actor: Box<dyn Actor>,
        metadata: Value,
    ) -> Result<(), DistributedError> {
        check_name("actor id", id)?;
        Ok(self.network.add_actor(id, actor, metadata)?)
    }

    /// Adds (once) a proxy node `actor@network` that forwards every message it
    /// receives, on any port, to `actor`'s port of that name in `network`. Use
    /// it with `send_to_actor` or as the target of connections. Returns its name.
    ///
    /// # Errors
    ///
    /// [`DistributedError::InvalidName`] when either id is not an id;
    /// [`DistributedError::Runtime`] when the local network is shut down.
    pub fn register_remote_actor(
        &self,
        actor_id: &str,
        network_id: &str,
    ) -> Result<String, DistributedError> {
        check_name("actor id", actor_id)?;
        check_name("network id", network_id)?;
        let name = RemoteProxy::node_name(actor_id, network_id);
        if self.network.has_node(&name) {
            return Ok(name);
        }
        let proxy = RemoteProxy {
            target: Arc::new(ProxyTarget {
                node_name: name.clone(),
                actor_id: actor_id.to_string(),
                network_id: network_id.to_string(),
                bridge: self.bridge.clone(),
                send_timeout: self.config.network.send_timeout,
            }),
        };
        self.network.add_actor(&name, Box::new(proxy), Value::Null)?;
        self.proxies
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.clone());
        Ok(name)
    }

    /// Starts the local network, the bridge listener and discovery (register,
    /// poll, and dial what it reports when `auto_connect` is on). Returns
    /// once the listener is bound; discovery works in the background.
    ///
    /// # Errors
    ///
    /// [`DistributedError::AlreadyStarted`] on a second call,
    /// [`DistributedError::NotStarted`] after `shutdown`;
    /// [`DistributedError::Bridge`] when the listener cannot bind (the
    /// error names the cause: port in use, address not on this host…);
    /// [`DistributedError::Discovery`] or [`DistributedError::Runtime`] when
    /// a thread cannot start. On an error nothing is left running.
    pub fn start(&self) -> Result<(), DistributedError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(DistributedError::NotStarted);
        }
        if self.started.swap(true, Ordering::AcqRel) {
            return Err(DistributedError::AlreadyStarted);
        }
        self.network.set_remote(Arc::new(BridgeSender {
            bridge: self.bridge.clone(),
            send_timeout: self.config.network.send_timeout,
        }));
        self.network.start()?;
        let mut identity = BridgeIdentity::new(&self.config.network_id, &self.config.instance_id);
        identity.auth_token = self.config.auth_token.clone();
        let router = LocalRouter {
            network: self.network.clone(),
            delivery_timeout: self.config.bridge.delivery_timeout,
        };
        let bridge = match Bridge::start(identity, self.config.bridge.clone(), Arc::new(router)) {
            Ok(bridge) => Arc::new(bridge),
            Err(e) => {
                self.network.shutdown();
                return Err(e.into());
            }
        };
        let _ = self.bridge.set(bridge.clone());
        let advertised =
            advertise::advertised_endpoint(self.config.advertise_address.as_deref(), bridge.local_addr());
        let _ = self.advertised.set(advertised.clone());
        let me = RegistrationInfo {
            network_id: self.config.network_id.clone(),
            instance_id: self.config.instance_id.clone(),
            endpoint: advertised,
            capabilities: self.config.discovery.capabilities.clone(),
        };
        let mut discovery_config = self.config.discovery.clone();
        // Servers that require signed registrations check the federation's token.
        if discovery_config.auth_token.is_none() {
            discovery_config.auth_token = self.config.auth_token.clone();
        }
        let discovery = match DiscoveryService::start(discovery_config, me) {
            Ok(discovery) => Arc::new(discovery),
            Err(e) => {
                bridge.shutdown();
                self.network.shutdown();
                return Err(e.into());
            }
        };
        // Stored before the watcher starts, so `shutdown` stops it whatever follows.
        let _ = self.discovery.set(discovery.clone());
        if self.config.auto_connect && !self.config.discovery.endpoints.is_empty() {
            let watcher = Watcher::start(&self.config, bridge.clone(), discovery.clone())?;
            *self
                .watcher
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(watcher);
        }
        if let Some(bind) = &self.config.admin_bind {
            let view = PeerView {
                network_id: self.config.network_id.clone(),
                bridge,
                discovery: (!self.config.discovery.endpoints.is_empty()).then_some(discovery),
            };
            match AdminServer::start(bind, view) {
                Ok(admin) => {
                    *self
                        .admin
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(admin);
                }
                Err(source) => {
                    self.shutdown();
                    return Err(DistributedError::Admin {
                        bind: bind.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// The address the admin listener is bound to; `None` without
    /// `admin_bind` or before `start`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(AdminServer::local_addr)
    }

    /// Dials the peer at `host:port` on the calling thread and returns its
    /// network id; from then on the link is held (redialed with backoff
    /// whenever it drops) until shutdown.
    ///
    /// # Errors
    ///
    /// [`DistributedError::NotStarted`]; [`DistributedError::Bridge`] with
    /// the dial's error (the endpoint is then not held: see
    /// [`DistributedNetwork::hold_connection`]).
    pub fn connect_to_network(&self, endpoint: &str) -> Result<String, DistributedError> {
        Ok(self.bridge()?.connect(endpoint)?)
    }

    /// Holds a link to `host:port` for the life of this peer without
    /// waiting: dialed now in the background and redialed with backoff and
    /// jitter whenever it is down. `options` may name the network expected
    /// there (an acceptor that answers as another is refused) and allow the
    /// token in clear toward an async Reflow 1.0 peer.
    ///
    /// # Errors
    ///
    /// [`DistributedError::NotStarted`]; [`DistributedError::Bridge`] when
    /// the supervisor thread cannot start or the bridge is shutting down.
    pub fn hold_connection(&self, endpoint: &str, options: HoldOptions) -> Result<(), DistributedError> {
        Ok(self.bridge()?.hold(endpoint, options)?)
    }

    /// Messages that were queued for `network` and lost with a connection
    /// that ended before writing them.
    pub fn lost_messages(&self, network: &str) -> u64 {
        self.bridge.get().map_or(0, |b| b.lost_messages(network))
    }

    /// Sends `message` to `actor.port` in `network` (as source actor
    /// `unknown`), waiting up to `send_timeout` for room.
    ///
    /// # Errors
    ///
    /// [`DistributedError::NotStarted`]; [`DistributedError::NotSent`], which hands the message back
    /// ([`DistributedError::into_message`]): no connection to `network`, a
    /// message larger than the peer accepts, a kind its protocol cannot
    /// carry, or the queue still full after the timeout.
    pub fn send_to_remote_actor(
        &self,
        network: &str,
        actor: &str,
        port: &str,
        message: impl Into<Message>,
    ) -> Result<(), DistributedError> {
        self.send_to_remote_actor_with(network, actor, port, message, self.send_options())
    }

    /// Sends `message` to `actor.port` in `network` with explicit options
    /// (delivery mode and timeout), as source actor `unknown`.
    ///
    /// # Errors
    /// As [`DistributedNetwork::send_to_remote_actor`], plus those of
    /// acknowledged delivery ([`Bridge::send_with`]).
    pub fn send_to_remote_actor_with(
        &self,
        network: &str,
        actor: &str,
        port: &str,
        message: impl Into<Message>,
        options: SendOptions,
    ) -> Result<(), DistributedError> {
        let parts = Outbound {
            source_actor: "unknown",
            target_network: network,
            target_actor: actor,
            target_port: port,
        };
        self.send_parts(&parts, message.into(), options)
    }

    /// The configured delivery mode, waiting up to `send_timeout`.
    fn send_options(&self) -> SendOptions {
        SendOptions::new(self.config.bridge.delivery.mode, self.config.network.send_timeout)
    }

    /// Sends by parts (no envelope toward a peer that reads BATCH frames);
    /// a failure hands the message back in a whole [`RemoteMessage`].
    fn send_parts(
        &self,
        parts: &Outbound<'_>,
        payload: Message,
        options: SendOptions,
    ) -> Result<(), DistributedError> {
        self.bridge()?
            .send_parts_with(parts, payload, options)
            .map_err(|(error, payload)| {
                let message = parts.to_remote(&self.config.network_id, payload);
                DistributedError::NotSent(BridgeSendError::new(error, message))
            })
    }

    /// Messages to `network` accepted under acknowledged delivery and not
    /// yet acknowledged by it.
    pub fn unacknowledged(&self, network: &str) -> usize {
        self.bridge.get().map_or(0, |b| b.unacknowledged(network))
    }

    /// Waits up to `timeout` until `network` has acknowledged every message
    /// sent to it under acknowledged delivery; returns how many are still
    /// unacknowledged (0: all were consumed by their actors).
    pub fn wait_acknowledged(&self, network: &str, timeout: std::time::Duration) -> usize {
        self.bridge
            .get()
            .map_or(0, |b| b.wait_acknowledged(network, timeout))
    }

    /// Delivers `message` to a local node, proxies included (`recorder@alpha`).
    /// A message for a proxy goes straight onto the bridge from the calling
    /// thread (waiting up to `send_timeout` for room in the connection's
    /// queue), which saves the hand-off to the proxy's thread.
    ///
    /// # Errors
    ///
    /// For a proxy, as [`DistributedNetwork::send_to_remote_actor`]; for a
    /// local node, [`DistributedError::Send`] (unknown node or port, inbox
    /// full), which hands the message back too.
    pub fn send_to_actor(
        &self,
        node: &str,
        port: &str,
        message: impl Into<Message>,
    ) -> Result<(), DistributedError> {
        if let Some((actor, network)) = self.proxy_target(node) {
            let parts = Outbound {
                source_actor: node,
                target_network: network,
                target_actor: actor,
                target_port: port,
            };
            return self.send_parts(&parts, message.into(), self.send_options());
        }
        Ok(self.network.send_to_actor(node, port, message)?)
    }

    /// `(actor, network)` when `node` is a proxy this peer registered.
    fn proxy_target<'a>(&self, node: &'a str) -> Option<(&'a str, &'a str)> {
        let (actor, network) = node.split_once('@')?;
        let proxies = self
            .proxies
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        proxies.contains(node).then_some((actor, network))
    }

    /// A handle to the local network, usable from any thread.
    pub fn get_local_network(&self) -> Network {
        self.network.clone()
    }

    /// The discovery client (subscribe to its events); `None` before `start`.
    pub fn discovery(&self) -> Option<&DiscoveryService> {
        self.discovery.get().map(|d| &**d)
    }

    /// A new receiver of bridge events (connections made, lost, redialed).
    /// It holds up to `BridgeConfig::event_queue_capacity` events; a receiver
    /// that falls further behind loses events rather than slowing the bridge.
    ///
    /// # Errors
    ///
    /// [`DistributedError::NotStarted`].
    pub fn bridge_events(&self) -> Result<crossbeam_channel::Receiver<BridgeEvent>, DistributedError> {
        Ok(self.bridge()?.subscribe())
    }

    /// The bridge's counters; `None` before `start`.
    pub fn bridge_stats(&self) -> Option<BridgeStats> {
        self.bridge.get().map(|b| b.stats())
    }

    /// Live bridge connections now (0 before `start`).
    pub fn connection_count(&self) -> usize {
        self.bridge.get().map_or(0, |b| b.connection_count())
    }

    /// Whether a live connection to `network` is in the bridge's map now.
    pub fn is_connected_to(&self, network: &str) -> bool {
        self.bridge.get().is_some_and(|b| b.is_connected_to(network))
    }

    /// The networks with a live connection now.
    pub fn connected_networks(&self) -> Vec<String> {
        self.bridge
            .get()
            .map(|b| b.connected_networks())
            .unwrap_or_default()
    }

    /// The address the bridge listens on; `None` before `start`.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.bridge.get().map(|b| b.local_addr())
    }

    /// The `host:port` registered with discovery; `None` before `start`.
    pub fn advertised_endpoint(&self) -> Option<&str> {
        self.advertised.get().map(String::as_str)
    }

    /// Stops discovery, sends close frames to every peer, stops the local
    /// network, and returns once every thread is joined. Idempotent.
    pub fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let admin = self
            .admin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(admin) = admin {
            admin.shutdown();
        }
        if let Some(watcher) = self
            .watcher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            watcher.stop();
        }
        if let Some(discovery) = self.discovery.get() {
            discovery.stop();
        }
        // Readers blocked handing a message to a full inbox must not hold the
        // bridge's shutdown up for their delivery_timeout.
        self.network.close_external_input();
        if let Some(bridge) = self.bridge.get() {
            bridge.shutdown();
        }
        self.network.shutdown();
    }

    fn bridge(&self) -> Result<&Arc<Bridge>, DistributedError> {
        self.bridge.get().ok_or(DistributedError::NotStarted)
    }
}

impl Drop for DistributedNetwork {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn check_name(what: &str, name: &str) -> Result<(), DistributedError> {
    crate::names::check_id(name).map_err(|rule| {
        DistributedError::InvalidName(format!(
            "{what} {} is not usable: it {rule}",
            crate::names::escaped(name).max_chars(64)
        ))
    })
}
