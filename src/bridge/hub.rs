//! What every part of a bridge shares: who we are, the settings, the map of
//! sessions, the counters and events, the threads it owns, the sockets still
//! in handshake, and the one admission step that turns a finished handshake
//! into a running session (for dialed and accepted sockets alike).

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message as WsMessage, WebSocket};

use super::batch;
use super::config::{BridgeConfig, BridgeIdentity};
use super::delivery::{Credits, DeliveryOffer, InboundLog, Limits, Outbox, Store};
use super::events::{BridgeEvent, EventBus, lock};
use super::frame::{self, Frame};
use super::protocol::{Inbound, parse_frame};
use super::registry::{Insert, Registry};
use super::session::{
    self, CloseReason, DUPLICATE_CLOSE, Ended, Lanes, MAX_WRITE_LINGER, Peer, Session, SessionContext,
    SessionDelivery, Targets, Wire,
};
use super::sink::{Arrival, InboundSink};
use super::stats::{Counters, bump};
use super::stream::{WsStream, ws_config};
use super::threads::ThreadSet;
use crate::names::escaped;

/// Floor of the concurrent-handshake bound, so a small `max_connections`
/// still lets a refusal be answered while another handshake finishes.
const MIN_HANDSHAKES: usize = 16;

pub(crate) struct Hub {
    pub(crate) identity: BridgeIdentity,
    pub(crate) config: BridgeConfig,
    pub(crate) sink: Arc<dyn InboundSink>,
    pub(crate) ws_config: WebSocketConfig,
    pub(crate) sessions: Registry,
    pub(crate) events: EventBus,
    pub(crate) stats: Arc<Counters>,
    /// Handshake threads and session readers.
    pub(crate) threads: ThreadSet,
    /// Messages lost with their connection, per network.
    lost: Mutex<HashMap<String, u64>>,
    epoch: Instant,
    stopping: AtomicBool,
    next_id: AtomicU64,
    /// Sockets whose handshake is in progress (and whether they were
    /// accepted), so shutdown can wake them.
    pending: Mutex<HashMap<u64, (TcpStream, bool)>>,
    /// Supervisors wait on these; any session's end or start kicks them all.
    watchers: Mutex<Vec<Sender<()>>>,
    /// Dropped when the bridge stops: every `stopped()` receiver wakes.
    stop_tx: Mutex<Option<Sender<()>>>,
    stop_rx: Receiver<()>,
    /// This side's sequence space for acknowledged delivery: random per
    /// start, or the durable outbox's own.
    incarnation: u64,
    /// Unacknowledged messages per remote network (outlive sessions).
    outboxes: Mutex<HashMap<String, Arc<Outbox>>>,
    /// What arrived under acknowledged delivery, per sending network.
    inbound_logs: Mutex<HashMap<String, Arc<InboundLog>>>,
    /// The durable outbox, when `outbox_dir` is set.
    store: Option<Arc<dyn Store>>,
}

/// Removes a socket from the pending handshakes when the handshake ends.
pub(crate) struct PendingGuard<'a> {
    hub: &'a Hub,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.hub.pending).remove(&self.id);
    }
}

/// An admitted session, its lanes (for the writer) and the session it
/// replaced, if any (to be closed once the new one runs).
pub(crate) struct Admitted {
    pub(crate) session: Arc<Session>,
    pub(crate) lanes: Lanes,
    pub(crate) replaced: Option<Arc<Session>>,
}

/// Why a finished handshake did not become a session.
#[derive(Debug)]
pub(crate) enum NotAdmitted {
    /// A session of the same instance wins (simultaneous dial).
    Duplicate,
    /// Another instance of the network is connected and proved it is alive.
    LiveInstance(String),
    Full,
    Closed,
}

impl Hub {
    /// `incarnation` and `store` come from the durable outbox when there
    /// is one (with its recovered messages put back by the caller).
    pub(crate) fn new(
        identity: BridgeIdentity,
        config: BridgeConfig,
        sink: Arc<dyn InboundSink>,
        incarnation: u64,
        store: Option<Arc<dyn Store>>,
    ) -> Self {
        let (stop_tx, stop_rx) = bounded(0);
        Hub {
            incarnation,
            outboxes: Mutex::new(HashMap::new()),
            inbound_logs: Mutex::new(HashMap::new()),
            store,
            stop_tx: Mutex::new(Some(stop_tx)),
            stop_rx,
            ws_config: ws_config(&config),
            sessions: Registry::new(identity.network_id.clone(), config.max_connections),
            events: EventBus::new(config.event_queue_capacity),
            stats: Arc::new(Counters::default()),
            threads: ThreadSet::new(),
            lost: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            stopping: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            watchers: Mutex::new(Vec::new()),
            identity,
            config,
            sink,
        }
    }

    /// Time since the bridge started: the clock of liveness.
    pub(crate) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub(crate) fn begin_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        lock(&self.stop_tx).take();
        lock(&self.watchers).clear();
    }

    /// A receiver that never yields a value and disconnects when the bridge
    /// stops: select on it to wait for anything *or* shutdown.
    pub(crate) fn stopped(&self) -> Receiver<()> {
        self.stop_rx.clone()
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A channel that is kicked whenever a session starts or ends.
    pub(crate) fn watch(&self) -> Receiver<()> {
        let (tx, rx) = bounded(1);
        if !self.is_stopping() {
            lock(&self.watchers).push(tx);
        }
        rx
    }

    fn kick_watchers(&self) {
        lock(&self.watchers).retain(|tx| {
            !matches!(
                tx.try_send(()),
                Err(crossbeam_channel::TrySendError::Disconnected(_))
            )
        });
    }

    /// What this side offers in its handshakes (nothing when `offer` is off).
    pub(crate) fn delivery_offer(&self) -> Option<DeliveryOffer> {
        self.config.delivery.offer.then(|| DeliveryOffer {
            incarnation: self.incarnation,
            target_window: self.config.delivery.target_window.max(1),
            credit_bytes: (self.config.delivery.credit_bytes > 0)
                .then_some(self.config.delivery.credit_bytes),
        })
    }

    /// The outbox of `network_id`, made empty on first use.
    pub(crate) fn outbox(&self, network_id: &str) -> Arc<Outbox> {
        self.outbox_from(network_id, 1)
    }

    /// The outbox of `network_id`, made on first use with `next_seq`.
    pub(crate) fn outbox_from(&self, network_id: &str, next_seq: u64) -> Arc<Outbox> {
        let delivery = &self.config.delivery;
        let limits = Limits {
            messages: delivery.outbox_messages.max(1),
            bytes: delivery.outbox_bytes.max(1),
            ack_window: delivery.ack_window.max(1),
        };
        lock(&self.outboxes)
            .entry(network_id.to_string())
            .or_insert_with(|| Arc::new(Outbox::new(network_id, limits, next_seq, self.store.clone())))
            .clone()
    }

    /// The outbox of `network_id` if it has one.
    pub(crate) fn existing_outbox(&self, network_id: &str) -> Option<Arc<Outbox>> {
        lock(&self.outboxes).get(network_id).cloned()
    }

    /// Every outbox (shutdown wakes their waiters).
    pub(crate) fn outboxes(&self) -> Vec<Arc<Outbox>> {
        lock(&self.outboxes).values().cloned().collect()
    }

    fn inbound_log(&self, network_id: &str) -> Arc<InboundLog> {
        lock(&self.inbound_logs)
            .entry(network_id.to_string())
            .or_default()
            .clone()
    }

    /// The delivery share of a new session with `peer`, when both offered it.
    fn session_delivery(&self, peer: &Peer) -> Option<SessionDelivery> {
        let Wire::V11 {
            delivery: Some(offer),
            ..
        } = peer.wire
        else {
            return None;
        };
        let log = self.inbound_log(&peer.network_id);
        // Costs in bytes only when both sides count them; each side's
        // receiver charges in its own unit, which the sender learned.
        let ours = self.config.delivery.credit_bytes;
        let both = ours > 0 && offer.credit_bytes.is_some_and(|theirs| theirs > 0);
        Some(SessionDelivery {
            credits: Credits::new(
                offer.target_window,
                offer.credit_bytes.filter(|_| both),
                HashMap::new(),
            ),
            outbox: self.outbox(&peer.network_id),
            targets: Targets::new(log.clone(), offer.incarnation),
            log,
            peer_incarnation: offer.incarnation,
            window: self.config.delivery.target_window.max(1),
            unit: both.then_some(ours),
        })
    }

    /// Messages lost with their connection to `network_id` so far.
    pub(crate) fn lost_to(&self, network_id: &str) -> u64 {
        lock(&self.lost).get(network_id).copied().unwrap_or(0)
    }

    fn session_context(&self, network: &str) -> SessionContext {
        SessionContext {
            local_network: self.identity.network_id.clone(),
            sink: Arc::clone(&self.sink),
            stats: Arc::clone(&self.stats),
            link: self.stats.link(network),
            ws_config: self.ws_config,
            heartbeat_interval: self.config.heartbeat_interval,
            close_grace: self.config.close_timeout,
            write_linger: self.config.write_linger.min(MAX_WRITE_LINGER),
            delivery_timeout: self.config.delivery_timeout,
            max_message_bytes: self.config.max_frame_bytes,
            epoch: self.epoch,
        }
    }

    /// Tracks a socket in handshake; `None` if `limit` handshakes of the same
    /// kind (accepted or dialed) are running.
    pub(crate) fn track_pending(
        &self,
        tcp: &TcpStream,
        accepted: bool,
        limit: usize,
    ) -> Option<PendingGuard<'_>> {
        let clone = tcp.try_clone().ok()?;
        let mut pending = lock(&self.pending);
        if pending.values().filter(|(_, a)| *a == accepted).count() >= limit {
            return None;
        }
        let id = self.next_id();
        pending.insert(id, (clone, accepted));
        // A shutdown that began before the socket was tracked must still wake it.
        if self.is_stopping() {
            let _ = tcp.shutdown(Shutdown::Both);
        }
        Some(PendingGuard { hub: self, id })
    }

    /// Accepted sockets whose handshake is in progress.
    pub(crate) fn accepted_pending(&self) -> usize {
        lock(&self.pending)
            .values()
            .filter(|(_, accepted)| *accepted)
            .count()
    }

    /// At most this many accepted handshakes run at once.
    pub(crate) fn handshake_limit(&self) -> usize {
        self.config.max_connections.max(MIN_HANDSHAKES)
    }

    /// Wakes every handshake in progress (shutdown).
    pub(crate) fn abort_pending(&self) {
        for (tcp, _) in lock(&self.pending).values() {
            let _ = tcp.shutdown(Shutdown::Both);
        }
    }

    /// Makes a session for a finished handshake and gives it its place in
    /// the map. Another live instance is asked for a sign of life first, so
    /// this may wait up to one heartbeat interval.
    pub(crate) fn admit(&self, peer: Peer, tcp: TcpStream) -> Result<Admitted, NotAdmitted> {
        let capacity = self.config.outbound_queue_capacity;
        let delivery = self.session_delivery(&peer);
        let context = self.session_context(&peer.network_id);
        let (session, lanes) = Session::new(self.next_id(), peer, context, tcp, capacity, delivery);
        loop {
            match self.sessions.insert(&session) {
                Insert::Added { replaced } => {
                    return Ok(Admitted {
                        session,
                        lanes,
                        replaced,
                    });
                }
                Insert::Duplicate(old) => {
                    // The rule keeps the old one unless it is half-open: its
                    // peer restarted with the same instance id and dialed
                    // again. Then the new one wins.
                    if !old.is_half_open(self.now()) {
                        return Err(NotAdmitted::Duplicate);
                    }
                    if self.sessions.replace(&old, &session) {
                        return Ok(Admitted {
                            session,
                            lanes,
                            replaced: Some(old),
                        });
                    }
                }
                Insert::Full => return Err(NotAdmitted::Full),
                Insert::Closed => return Err(NotAdmitted::Closed),
                Insert::OtherInstance(old) => {
                    let alive =
                        !old.is_silent(self.now()) && old.proves_liveness(self.config.heartbeat_interval);
                    if alive {
                        return Err(NotAdmitted::LiveInstance(old.peer.instance_id.clone()));
                    }
                    if self.sessions.replace(&old, &session) {
                        return Ok(Admitted {
                            session,
                            lanes,
                            replaced: Some(old),
                        });
                    }
                    // The old session ended meanwhile: offer the new one again.
                }
            }
        }
    }

    /// Starts an admitted session's threads and reports it. `ws` is the
    /// WebSocket its handshake ran on.
    pub(crate) fn start_session(
        self: &Arc<Self>,
        session: &Arc<Session>,
        ws: WebSocket<WsStream>,
        lanes: Lanes,
        role: Role,
        replaced: Option<Arc<Session>>,
    ) -> std::io::Result<()> {
        let hub = Arc::clone(self);
        let on_end: session::OnEnd = Box::new(move |session, ended| hub.session_ended(session, ended));
        let reader = match session::start(session, ws, lanes, role, on_end) {
            Ok(reader) => reader,
            Err(err) => {
                self.sessions.remove_if_same(session);
                session.abort(CloseReason::Failed("cannot start its threads".into()));
                return Err(err);
            }
        };
        let network = &session.peer.network_id;
        if let Err(err) = self.threads.spawn(format!("bridge-reader-{network}"), reader) {
            // The writer wakes on the cut socket and ends; the reader never ran.
            self.sessions.remove_if_same(session);
            session.abort(CloseReason::Failed("cannot start its reader".into()));
            return Err(err);
        }
        if let Some(delivery) = &session.delivery {
            // From here the outbox replays to this session; its credits
            // start with the replayed messages spent.
            let used = delivery
                .outbox
                .attach(session.id, |len| delivery.credits.cost_of(len));
            delivery.credits.preload(used);
            session.wake();
        }
        if let Some(old) = replaced {
            if old.peer.instance_id != session.peer.instance_id {
                log::info!(
                    "Instance {} of network {network} replaces instance {} (silent for a heartbeat interval)",
                    session.peer.instance_id,
                    old.peer.instance_id
                );
                old.close(CloseReason::Replaced(session.peer.instance_id.clone()));
            } else {
                log::debug!("Replacing duplicate connection to network: {network}");
                old.close(CloseReason::Duplicate);
            }
        }
        let version = match session.peer.wire {
            session::Wire::V10 => "1.0",
            session::Wire::V11 { .. } => "1.1",
        };
        log::info!("Established connection with network: {network} (protocol {version})");
        self.events.emit(BridgeEvent::Connected {
            network_id: network.clone(),
            endpoint: session.peer.endpoint.clone(),
            dialed: session.peer.dialed,
        });
        self.kick_watchers();
        Ok(())
    }

    /// The session's owner hears of its end: leaves the map, counts and
    /// reports what was lost, tells subscribers and supervisors.
    fn session_ended(&self, session: &Arc<Session>, ended: Ended) {
        let was_current = self.sessions.remove_if_same(session);
        let network_id = &session.peer.network_id;
        let Ended { reason, lost } = ended;
        if lost > 0 {
            bump(&self.stats.lost_with_connection, lost);
            *lock(&self.lost).entry(network_id.clone()).or_default() += lost;
            log::warn!(
                "{lost} message(s) queued for network {network_id} were lost with its connection ({})",
                reason.text()
            );
        }
        match &reason {
            CloseReason::Duplicate => log::debug!("Closed duplicate connection to network: {network_id}"),
            CloseReason::Replaced(instance) => log::info!(
                "Connection to network {network_id} (instance {}) closed: replaced by instance {}",
                session.peer.instance_id,
                escaped(instance)
            ),
            CloseReason::Shutdown | CloseReason::Evicted => {}
            other if was_current => {
                log::info!("Lost connection to network: {network_id} ({})", other.text());
                self.events.emit(BridgeEvent::Disconnected {
                    network_id: network_id.clone(),
                    reason: other.text(),
                });
            }
            _ => {}
        }
        self.kick_watchers();
    }
}

/// Sends a Close frame with `reason` on a socket that never got a session,
/// then waits (up to the close timeout) for the peer to finish the close.
pub(crate) fn close_unstarted(hub: &Hub, ws: &mut WebSocket<WsStream>, reason: &str) {
    close_draining(hub, ws, reason, None);
}

/// Closes a duplicate that the peer already took for a live session (it got
/// a success reply) and may have sent messages on: what arrives before the
/// peer's Close is delivered, not dropped. The session that won carries
/// everything after.
pub(crate) fn close_duplicate(hub: &Hub, ws: &mut WebSocket<WsStream>, wire: Wire, network_id: &str) {
    close_draining(hub, ws, DUPLICATE_CLOSE, Some((wire, network_id)));
}

/// `peer`: the wire and network of a peer whose messages are delivered.
fn close_draining(hub: &Hub, ws: &mut WebSocket<WsStream>, reason: &str, peer: Option<(Wire, &str)>) {
    ws.get_mut()
        .set_deadline(Instant::now() + hub.config.close_timeout);
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: reason.to_string().into(),
    };
    if ws.close(Some(frame)).is_err() {
        return;
    }
    while let Ok(frame) = ws.read() {
        let message = match (peer.map(|(wire, _)| wire), frame) {
            (Some(Wire::V10), WsMessage::Text(text)) => match parse_frame(text.as_str()) {
                Ok(Inbound::Message(message)) => Some(*message),
                _ => None,
            },
            (Some(Wire::V11 { .. }), WsMessage::Binary(bytes)) if bytes.first() == Some(&batch::TAG) => {
                let network_id = peer.map_or("", |(_, network_id)| network_id);
                deliver_batch_drained(hub, &bytes, network_id);
                None
            }
            (Some(Wire::V11 { .. }), WsMessage::Binary(bytes)) => match frame::decode(&bytes) {
                Ok(Frame::Data(message)) => Some(*message),
                _ => None,
            },
            _ => None,
        };
        if let Some(message) = message {
            bump(&hub.stats.messages_received, 1);
            if let Err(err) = hub.sink.deliver(message) {
                log::warn!("Dropped a message that arrived on a duplicate connection: {err}");
            }
        }
    }
}

/// The messages of a BATCH frame that arrived on a duplicate connection
/// from `network_id`, delivered as `close_draining` delivers a DATA frame's.
fn deliver_batch_drained(hub: &Hub, bytes: &[u8], network_id: &str) {
    let Ok(entries) = batch::entries(bytes) else {
        bump(&hub.stats.malformed_frames, 1);
        return;
    };
    for entry in entries {
        let Ok(batch::Entry {
            target_actor,
            target_port,
            source_actor,
            payload: Ok(payload),
            ..
        }) = entry
        else {
            bump(&hub.stats.malformed_frames, 1);
            continue;
        };
        bump(&hub.stats.messages_received, 1);
        let arrival = Arrival {
            source_network: network_id,
            source_actor,
            target_network: &hub.identity.network_id,
            target_actor,
            target_port,
            payload,
        };
        if let Err(err) = hub.sink.deliver_arrival(arrival, None) {
            log::warn!("Dropped a message that arrived on a duplicate connection: {err}");
        }
    }
}
