//! [`Bridge`]: the public handle. It owns the listener, the heartbeat
//! thread and one supervisor per held dial target, and (through the hub's
//! thread set) every handshake and session thread; it joins them all on
//! shutdown.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

use super::config::{BridgeConfig, BridgeIdentity, DeliveryMode, HoldOptions};
use super::delivery;
use super::dial::{DialTarget, dial};
use super::error::{BridgeError, SendError};
use super::events::{BridgeEvent, lock};
use super::hub::Hub;
use super::protocol::{Outbound, RemoteMessage};
use super::sending::{self, SendOptions};
use super::session::CloseReason;
use super::sink::InboundSink;
use super::stats::{BridgeStats, LinkStats};
use super::supervisor::Supervisor;
use super::threads::join_quietly;
use super::{heartbeat, listener};
use crate::message::Message;

/// A link the bridge holds, as [`Bridge::held_links`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeldLink {
    /// The `host:port` dialed.
    pub endpoint: String,
    /// The network expected there, or found by the latest dial that reached
    /// it; `None` while an endpoint without a configured network was never reached.
    pub network_id: Option<String>,
    /// Held because discovery lists the network (else configured or asked for).
    pub discovered: bool,
    /// A session with that network is up.
    pub up: bool,
}

/// One side of the WebSocket bridge: a listener for peers that dial in, and
/// the sessions with peers, dialed or accepted, keyed by network id.
///
/// A `DistributedNetwork` runs one; use it directly to carry
/// [`RemoteMessage`]s without a local actor graph. Inbound messages go to
/// the [`InboundSink`] given at start (a closure will do).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use crossbeam_channel::unbounded;
/// use reflow_distributed::Message;
/// use reflow_distributed::bridge::{Bridge, BridgeConfig, BridgeIdentity, DeliveryError, RemoteMessage};
///
/// let (inbox, received) = unbounded();
/// let sink = move |message: RemoteMessage| -> Result<(), DeliveryError> {
///     inbox.send(message).map_err(|_| DeliveryError::ShuttingDown)
/// };
/// let alpha = Bridge::start(BridgeIdentity::new("alpha", "alpha-1"), BridgeConfig::default(), Arc::new(sink))?;
/// let drop_all = |_: RemoteMessage| -> Result<(), DeliveryError> { Ok(()) };
/// let beta = Bridge::start(BridgeIdentity::new("beta", "beta-1"), BridgeConfig::default(), Arc::new(drop_all))?;
///
/// assert_eq!(beta.connect(&alpha.local_addr().to_string())?, "alpha");
/// let message = RemoteMessage::new("beta", "unknown", "alpha", "recorder", "in", Message::from("hi"));
/// beta.send(message, Duration::from_secs(5))?; // a failure hands the message back
/// let got = received.recv_timeout(Duration::from_secs(10)).expect("delivered");
/// assert_eq!((got.target_actor.as_str(), got.payload.as_str()), ("recorder", Some("hi")));
///
/// beta.shutdown();
/// alpha.shutdown();
/// # Ok::<(), reflow_distributed::bridge::BridgeError>(())
/// ```
pub struct Bridge {
    hub: Arc<Hub>,
    local_addr: SocketAddr,
    /// Taken by the first `shutdown`, which may come through a shared reference.
    owned: Mutex<OwnedThreads>,
    /// One supervisor per held target, keyed by `endpoint:<host:port>` or
    /// `network:<id>` (discovery).
    supervisors: Mutex<HashMap<String, Supervisor>>,
    /// Supervisors told to stop (a network that left discovery), joined at
    /// shutdown: releasing one never waits for its dial in flight.
    retired: Mutex<Vec<JoinHandle<()>>>,
}

/// The threads the handle itself starts and joins.
#[derive(Default)]
struct OwnedThreads {
    listener: Option<JoinHandle<()>>,
    heartbeat: Option<JoinHandle<()>>,
    heartbeat_stop: Option<Sender<()>>,
}

impl Bridge {
    /// Binds `config.bind_address:config.bind_port` and starts the listener
    /// and heartbeat threads.
    ///
    /// # Errors
    ///
    /// [`BridgeError::Bind`] when the address cannot be bound;
    /// [`BridgeError::Spawn`] when a thread cannot be started.
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
        let durable = match &config.delivery.outbox_dir {
            Some(dir) => {
                Some(delivery::reopen(dir, config.delivery.outbox_fsync).map_err(BridgeError::Journal)?)
            }
            None => None,
        };
        let incarnation = match &durable {
            Some(reopened) => reopened.incarnation,
            None => getrandom::u64().map_err(|err| {
                BridgeError::Spawn(std::io::Error::other(format!("no random incarnation: {err}")))
            })?,
        };
        let store = durable.as_ref().map(|reopened| Arc::clone(&reopened.store));
        let hub = Arc::new(Hub::new(identity, config, sink, incarnation.max(1), store));
        if let Some(reopened) = durable {
            restore_outboxes(&hub, reopened);
        }
        let (stop_tx, stop_rx) = bounded::<()>(1);
        let bridge = Bridge {
            hub: Arc::clone(&hub),
            local_addr,
            owned: Mutex::new(OwnedThreads {
                heartbeat_stop: Some(stop_tx),
                ..OwnedThreads::default()
            }),
            supervisors: Mutex::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
        };
        // A failure part way leaves `bridge` to shut down what did start.
        lock(&bridge.owned).listener = Some(spawn("bridge-listener", {
            let hub = Arc::clone(&hub);
            move || listener::run(hub, tcp_listener)
        })?);
        lock(&bridge.owned).heartbeat = Some(spawn("bridge-heartbeat", {
            let hub = Arc::clone(&hub);
            move || heartbeat::run(&hub, &stop_rx)
        })?);
        log::info!(
            "Bridge of network {} listening on {local_addr}",
            hub.identity.network_id
        );
        Ok(bridge)
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Dials `endpoint` (`host:port`) on the calling thread and returns the
    /// network found there; from then on the endpoint is held: redialed with
    /// backoff whenever its session ends, until shutdown.
    ///
    /// # Errors
    ///
    /// The dial's error ([`BridgeError::Resolve`], [`BridgeError::Connect`],
    /// [`BridgeError::ConnectTimedOut`], [`BridgeError::Handshake`] …); the
    /// endpoint is then not held (use [`Bridge::hold`] for that).
    pub fn connect(&self, endpoint: &str) -> Result<String, BridgeError> {
        self.connect_with(endpoint, HoldOptions::default())
    }

    /// [`Bridge::connect`] with the options of a configured link.
    ///
    /// # Errors
    ///
    /// As [`Bridge::connect`]; [`BridgeError::Handshake`] with
    /// `WrongNetwork` when the endpoint answers as another network than
    /// `options.network_id`.
    pub fn connect_with(&self, endpoint: &str, options: HoldOptions) -> Result<String, BridgeError> {
        if self.hub.is_stopping() {
            return Err(BridgeError::ShuttingDown);
        }
        let key = format!("endpoint:{endpoint}");
        let target = DialTarget {
            endpoint: endpoint.to_string(),
            expected: options.network_id,
            legacy_auth: options.legacy_auth,
            discovered: false,
        };
        if let Some(network) = self.held_network(&key) {
            return Ok(network);
        }
        let mut warned = false;
        let network = dial(&self.hub, &target, &mut warned)?;
        self.supervise(key, target, Some(network.clone()))?;
        Ok(network)
    }

    /// Holds a link to `endpoint` for the life of the bridge without waiting:
    /// a supervisor dials it now and redials it with backoff whenever it is
    /// down. Watch [`Bridge::subscribe`] or [`Bridge::is_connected_to`].
    ///
    /// # Errors
    ///
    /// [`BridgeError::ShuttingDown`]; [`BridgeError::Spawn`].
    pub fn hold(&self, endpoint: &str, options: HoldOptions) -> Result<(), BridgeError> {
        if self.hub.is_stopping() {
            return Err(BridgeError::ShuttingDown);
        }
        let target = DialTarget {
            endpoint: endpoint.to_string(),
            expected: options.network_id,
            legacy_auth: options.legacy_auth,
            discovered: false,
        };
        self.supervise(format!("endpoint:{endpoint}"), target, None)
    }

    /// Holds a link to `network_id` at `endpoint` while discovery lists it
    /// (a new endpoint replaces the old target).
    ///
    /// # Errors
    ///
    /// [`BridgeError::ShuttingDown`]; [`BridgeError::Spawn`].
    pub fn hold_network(
        &self,
        network_id: &str,
        endpoint: &str,
        legacy_auth: bool,
    ) -> Result<(), BridgeError> {
        let key = format!("network:{network_id}");
        let same = lock(&self.supervisors)
            .get(&key)
            .is_some_and(|s| s.target.endpoint == endpoint);
        if same {
            return Ok(());
        }
        self.release(&key);
        let target = DialTarget {
            endpoint: endpoint.to_string(),
            expected: Some(network_id.to_string()),
            legacy_auth,
            discovered: true,
        };
        self.supervise(key, target, None)
    }

    /// Stops holding a discovery-listed network (its session, if any, stays).
    pub fn release_network(&self, network_id: &str) {
        self.release(&format!("network:{network_id}"));
    }

    fn release(&self, key: &str) {
        let supervisor = lock(&self.supervisors).remove(key);
        if let Some(supervisor) = supervisor {
            let mut retired = lock(&self.retired);
            // Join the ones that have already ended, so the list stays short.
            let (done, running): (Vec<_>, Vec<_>) = retired.drain(..).partition(|h| h.is_finished());
            done.into_iter().for_each(join_quietly);
            *retired = running;
            retired.push(supervisor.signal_stop());
        }
    }

    fn held_network(&self, key: &str) -> Option<String> {
        let supervisors = lock(&self.supervisors);
        let expected = supervisors.get(key)?.target.expected.clone();
        expected.filter(|n| self.hub.sessions.contains(n))
    }

    fn supervise(
        &self,
        key: String,
        target: DialTarget,
        connected: Option<String>,
    ) -> Result<(), BridgeError> {
        let mut supervisors = lock(&self.supervisors);
        if self.hub.is_stopping() {
            return Err(BridgeError::ShuttingDown);
        }
        if supervisors.contains_key(&key) {
            return Ok(());
        }
        let linked = connected.is_some();
        let target = DialTarget {
            expected: connected.or(target.expected),
            ..target
        };
        let supervisor = Supervisor::spawn(&self.hub, target, linked).map_err(BridgeError::Spawn)?;
        supervisors.insert(key, supervisor);
        Ok(())
    }

    /// Sends `message` to `message.target_network` in the configured
    /// delivery mode (`BridgeConfig::delivery.mode`), waiting up to
    /// `timeout` for room. See [`Bridge::send_with`].
    ///
    /// # Errors
    ///
    /// As [`Bridge::send_with`].
    pub fn send(&self, message: RemoteMessage, timeout: Duration) -> Result<(), SendError> {
        let mode = self.hub.config.delivery.mode;
        self.send_with(message, SendOptions::new(mode, timeout))
    }

    /// Sends `message` in `options.mode`. At most once: queued on the live
    /// session. Acknowledged: accepted into the network's outbox, kept until
    /// the receiver acknowledges it (see [`Bridge::wait_acknowledged`]),
    /// even while the link is down if it is held. Toward a peer that grants
    /// per-target credits, both wait for a credit of the target actor.
    ///
    /// # Errors
    /// A [`SendError`] that hands the message back, with the reason: no
    /// session to that network (and, for acknowledged, no held link); the
    /// peer's size limit; a kind the peer's protocol cannot carry; the
    /// target's credit window, the queue or the outbox still full after the
    /// timeout; acknowledged delivery toward a peer without it; the durable
    /// outbox failing; the session closing; the bridge shutting down.
    pub fn send_with(&self, message: RemoteMessage, options: SendOptions) -> Result<(), SendError> {
        sending::send(&self.hub, message, options, |network| self.is_held(network))
    }

    /// Sends a message given by its parts in the configured delivery mode,
    /// waiting up to `timeout` for room: as [`Bridge::send`], without
    /// building an envelope toward a peer that reads BATCH frames.
    ///
    /// # Errors
    /// As [`Bridge::send_with`], with the payload handed back.
    pub(crate) fn send_parts(
        &self,
        parts: &Outbound<'_>,
        payload: Message,
        timeout: Duration,
    ) -> Result<(), (BridgeError, Message)> {
        let options = SendOptions::new(self.hub.config.delivery.mode, timeout);
        self.send_parts_with(parts, payload, options)
    }

    /// [`Bridge::send_parts`] in `options.mode`.
    ///
    /// # Errors
    /// As [`Bridge::send_with`], with the payload handed back.
    pub(crate) fn send_parts_with(
        &self,
        parts: &Outbound<'_>,
        payload: Message,
        options: SendOptions,
    ) -> Result<(), (BridgeError, Message)> {
        sending::send_parts(&self.hub, parts, payload, options, |network| {
            self.is_held(network)
        })
    }

    /// Messages to `network_id` accepted under acknowledged delivery and
    /// not acknowledged yet.
    pub fn unacknowledged(&self, network_id: &str) -> usize {
        self.hub
            .existing_outbox(network_id)
            .map_or(0, |outbox| outbox.unacknowledged())
    }

    /// Waits until every message to `network_id` under acknowledged
    /// delivery has been acknowledged, or `timeout` passes; returns how many
    /// are still unacknowledged (0: all delivered and consumed).
    pub fn wait_acknowledged(&self, network_id: &str, timeout: Duration) -> usize {
        match self.hub.existing_outbox(network_id) {
            Some(outbox) => outbox.wait_empty(Instant::now() + timeout),
            None => 0,
        }
    }

    /// The configured delivery mode of [`Bridge::send`].
    pub fn delivery_mode(&self) -> DeliveryMode {
        self.hub.config.delivery.mode
    }

    /// Whether a supervisor holds a link to `network_id`.
    fn is_held(&self, network_id: &str) -> bool {
        let supervisors = lock(&self.supervisors);
        supervisors.contains_key(&format!("network:{network_id}"))
            || supervisors
                .values()
                .any(|s| s.target.expected.as_deref() == Some(network_id))
    }

    /// Queues `message` if there is room now.
    ///
    /// # Errors
    ///
    /// As [`Bridge::send`], with a full lane reported at once.
    pub fn try_send(&self, message: RemoteMessage) -> Result<(), SendError> {
        self.send(message, Duration::ZERO)
    }

    /// Whether a session with `network_id` is up.
    pub fn is_connected_to(&self, network_id: &str) -> bool {
        self.hub.sessions.contains(network_id)
    }

    /// Live sessions, dialed and accepted.
    pub fn connection_count(&self) -> usize {
        self.hub.sessions.len()
    }

    /// Connected network ids, sorted.
    pub fn connected_networks(&self) -> Vec<String> {
        self.hub.sessions.networks()
    }

    /// Messages that were queued for `network_id` and lost with a session
    /// that ended before writing them.
    pub fn lost_messages(&self, network_id: &str) -> u64 {
        self.hub.lost_to(network_id)
    }

    /// A bounded stream of lifecycle events; a subscriber that falls behind
    /// loses events (the bridge never waits for it).
    pub fn subscribe(&self) -> Receiver<BridgeEvent> {
        self.hub.events.subscribe()
    }

    /// The bridge's counters since it started.
    pub fn stats(&self) -> BridgeStats {
        self.hub.stats.snapshot()
    }

    /// Traffic per network since the bridge started (every network a
    /// session was ever made with, and those connected now), sorted by
    /// network id.
    pub fn link_stats(&self) -> Vec<LinkStats> {
        let mut links = self.hub.stats.links();
        for link in &mut links {
            if let Some(session) = self.hub.sessions.get(&link.network_id) {
                link.connected = true;
                link.queued = session.queued();
            }
            link.unacknowledged = self.unacknowledged(&link.network_id);
        }
        links
    }

    /// The links this bridge holds (redials while down), sorted by endpoint:
    /// `[[connect]]`-style targets and discovery-listed networks.
    pub fn held_links(&self) -> Vec<HeldLink> {
        let supervisors = lock(&self.supervisors);
        let mut held: Vec<HeldLink> = supervisors
            .values()
            .map(|s| {
                let network_id = lock(&s.learned).clone();
                let up = network_id
                    .as_deref()
                    .is_some_and(|n| self.hub.sessions.contains(n));
                HeldLink {
                    endpoint: s.target.endpoint.clone(),
                    network_id,
                    discovered: s.target.discovered,
                    up,
                }
            })
            .collect();
        held.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        held
    }

    /// Sends a Close frame to every peer, stops every thread and joins them.
    /// Dials in flight are interrupted; sessions get `close_timeout` to
    /// finish their close; a reader inside a blocking delivery is waited
    /// for. Calling it again does nothing.
    pub fn shutdown(&self) {
        let owned = std::mem::take(&mut *lock(&self.owned));
        let Some(listener) = owned.listener else {
            return;
        };
        let hub = &self.hub;
        hub.begin_stopping();
        hub.abort_pending();
        wake_listener(self.local_addr, hub.config.connect_timeout);
        join_quietly(listener);
        drop(owned.heartbeat_stop);
        owned.heartbeat.into_iter().for_each(join_quietly);
        let supervisors: Vec<Supervisor> = lock(&self.supervisors).drain().map(|(_, s)| s).collect();
        hub.abort_pending();
        supervisors.into_iter().for_each(Supervisor::stop);
        let retired = std::mem::take(&mut *lock(&self.retired));
        retired.into_iter().for_each(join_quietly);

        for outbox in hub.outboxes() {
            outbox.wake_all();
        }
        let sessions = hub.sessions.close();
        for session in &sessions {
            session.close(CloseReason::Shutdown);
        }
        hub.abort_pending();
        if !hub.threads.wait_all(Instant::now() + hub.config.close_timeout) {
            let running = hub.threads.running();
            log::debug!("Peers did not finish closing within close_timeout; cutting {running:?}");
            sessions.iter().for_each(|s| s.abort(CloseReason::Shutdown));
            hub.abort_pending();
        }
        hub.threads.join_all();
        log::info!("Bridge of network {} shut down", hub.identity.network_id);
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Puts what the durable outbox held back into the outboxes, so the first
/// session to each network replays it.
fn restore_outboxes(hub: &Hub, reopened: delivery::Reopened) {
    for (network, next_seq) in &reopened.next_seq {
        hub.outbox_from(network, *next_seq);
    }
    let count = reopened.entries.len();
    let mut networks = std::collections::BTreeSet::new();
    for entry in reopened.entries {
        hub.outbox(&entry.network)
            .restore(entry.seq, &entry.target_actor, entry.bytes);
        networks.insert(entry.network);
    }
    if count > 0 {
        log::info!(
            "Durable outbox: {count} unacknowledged message(s) for {} to replay ({})",
            networks.into_iter().collect::<Vec<_>>().join(", "),
            hub.config
                .delivery
                .outbox_dir
                .as_deref()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        );
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
