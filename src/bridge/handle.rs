//! [`Bridge`]: the public handle. It owns the listener, heartbeat and
//! reconnect threads (and, through the shared thread set, every handshake and
//! connection thread) and joins them all on shutdown.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use super::config::{BridgeConfig, BridgeIdentity};
use super::connection::{CloseReason, Outgoing};
use super::core::Shared;
use super::error::BridgeError;
use super::events::{BridgeEvent, lock};
use super::protocol::RemoteMessage;
use super::sink::InboundSink;
use super::stats::BridgeStats;
use super::threads::join_quietly;
use super::{dialer, heartbeat, listener, reconnect};

/// One side of the WebSocket bridge: a listener for peers that dial in, and
/// the connections to peers, dialed or accepted, keyed by network id.
pub struct Bridge {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// Taken by the first `shutdown`, which may come through a shared reference.
    owned: std::sync::Mutex<OwnedThreads>,
}

/// The threads the handle itself starts and joins.
#[derive(Default)]
struct OwnedThreads {
    listener: Option<JoinHandle<()>>,
    heartbeat: Option<JoinHandle<()>>,
    heartbeat_stop: Option<Sender<()>>,
    reconnect: Option<JoinHandle<()>>,
}

impl Bridge {
    /// Binds `config.bind_address:config.bind_port` and starts the listener,
    /// heartbeat and reconnect threads.
    pub fn start(
        identity: BridgeIdentity,
        config: BridgeConfig,
        sink: Arc<dyn InboundSink>,
    ) -> Result<Bridge, BridgeError> {
        let address = format!("{}:{}", config.bind_address, config.bind_port);
        let bind_error = |source| BridgeError::Bind {
            address: address.clone(),
            source,
        };
        let tcp_listener = TcpListener::bind(address.as_str()).map_err(bind_error)?;
        let local_addr = tcp_listener.local_addr().map_err(bind_error)?;

        // At most one request per dropped dialed connection, themselves
        // bounded by max_connections; the dispatcher drains it continuously.
        let (reconnect_tx, reconnect_rx) = unbounded();
        let shared = Arc::new(Shared::new(identity, config, sink, reconnect_tx));
        let (stop_tx, stop_rx) = bounded::<()>(1);
        let bridge = Bridge {
            shared: Arc::clone(&shared),
            local_addr,
            owned: std::sync::Mutex::new(OwnedThreads {
                heartbeat_stop: Some(stop_tx),
                ..OwnedThreads::default()
            }),
        };
        // A failure part way leaves `bridge` to shut down what did start.
        lock(&bridge.owned).listener = Some(spawn("bridge-listener", {
            let shared = Arc::clone(&shared);
            move || listener::run(shared, tcp_listener)
        })?);
        lock(&bridge.owned).heartbeat = Some(spawn("bridge-heartbeat", {
            let shared = Arc::clone(&shared);
            move || heartbeat::run(&shared, &stop_rx)
        })?);
        lock(&bridge.owned).reconnect = Some(spawn("bridge-reconnect", {
            let shared = Arc::clone(&shared);
            move || reconnect::run_dispatcher(&shared, reconnect_rx)
        })?);
        log::info!(
            "Bridge of network {} listening on {local_addr}",
            shared.identity.network_id
        );
        Ok(bridge)
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Dials `endpoint` (`host:port`) and returns the network found there. If
    /// that endpoint's network is already connected, returns at once. A dialed
    /// connection that drops is redialed per `config.reconnect`.
    pub fn connect(&self, endpoint: &str) -> Result<String, BridgeError> {
        if self.shared.is_stopping() {
            return Err(BridgeError::ShuttingDown);
        }
        let known = lock(&self.shared.dialed_endpoints).get(endpoint).cloned();
        if let Some(network_id) = known.filter(|n| self.shared.registry.contains(n)) {
            return Ok(network_id);
        }
        dialer::dial(&self.shared, endpoint)
    }

    /// Queues `message` for `message.target_network`, waiting up to `timeout`
    /// for room in that connection's outbound queue.
    pub fn send(&self, message: RemoteMessage, timeout: Duration) -> Result<(), BridgeError> {
        let (connection, item) = self.prepare(&message)?;
        connection.enqueue(item, timeout)
    }

    /// Queues `message` if there is room now.
    pub fn try_send(&self, message: RemoteMessage) -> Result<(), BridgeError> {
        let (connection, item) = self.prepare(&message)?;
        connection.try_enqueue(item)
    }

    fn prepare(
        &self,
        message: &RemoteMessage,
    ) -> Result<(Arc<super::connection::Connection>, Outgoing), BridgeError> {
        if self.shared.is_stopping() {
            return Err(BridgeError::ShuttingDown);
        }
        let connection = self
            .shared
            .registry
            .get(&message.target_network)
            .ok_or_else(|| BridgeError::NoConnection(message.target_network.clone()))?;
        let text = serde_json::to_string(message).map_err(|err| BridgeError::Encode(err.to_string()))?;
        log::debug!(
            "Sending message {} to {}.{}@{}",
            message.message_id,
            message.target_actor,
            message.target_port,
            message.target_network
        );
        Ok((
            connection,
            Outgoing {
                text,
                is_message: true,
            },
        ))
    }

    pub fn is_connected_to(&self, network_id: &str) -> bool {
        self.shared.registry.contains(network_id)
    }

    pub fn connection_count(&self) -> usize {
        self.shared.registry.len()
    }

    /// Connected network ids, sorted.
    pub fn connected_networks(&self) -> Vec<String> {
        self.shared.registry.networks()
    }

    /// A bounded stream of lifecycle events; a subscriber that falls behind
    /// loses events (the bridge never waits for it).
    pub fn subscribe(&self) -> Receiver<BridgeEvent> {
        self.shared.events.subscribe()
    }

    pub fn stats(&self) -> BridgeStats {
        self.shared.stats.snapshot()
    }

    /// Sends a Close frame to every peer, stops every thread and joins them.
    /// Connections get `close_timeout` to finish their close; a reader inside
    /// a blocking delivery is waited for. Calling it again does nothing.
    pub fn shutdown(&self) {
        let owned = std::mem::take(&mut *lock(&self.owned));
        let Some(listener) = owned.listener else {
            return;
        };
        let shared = &self.shared;
        shared.begin_stopping();
        wake_listener(self.local_addr, shared.config.connect_timeout);
        join_quietly(listener);
        drop(owned.heartbeat_stop);
        owned.heartbeat.into_iter().for_each(join_quietly);
        owned.reconnect.into_iter().for_each(join_quietly);

        let connections = shared.registry.close();
        for connection in &connections {
            connection.close_gracefully(CloseReason::Shutdown);
        }
        shared.abort_pending();
        if !shared.threads.wait_all(Instant::now() + shared.close_grace()) {
            let running = shared.threads.running();
            log::debug!("Peers did not finish closing within close_timeout; cutting {running:?}");
            connections.iter().for_each(|c| c.abort(CloseReason::Shutdown));
        }
        shared.threads.join_all();
        log::info!("Bridge of network {} shut down", shared.identity.network_id);
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, BridgeError> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
        .map_err(BridgeError::Spawn)
}

/// Unblocks the listener's `accept` by connecting to it.
fn wake_listener(addr: SocketAddr, timeout: Duration) {
    let target = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    };
    if let Err(err) = TcpStream::connect_timeout(&target, timeout) {
        log::warn!("Cannot wake the bridge listener at {target}: {err}");
    }
}
