//! State shared by every bridge thread, and the steps common to dialed and
//! accepted connections once their handshake succeeded.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use tungstenite::error::Error as WsError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message as WsMessage, WebSocket};

use super::config::{BridgeConfig, BridgeIdentity};
use super::connection::{self, CloseReason, Connection, Queues};
use super::error::{BridgeError, HandshakeError};
use super::events::{BridgeEvent, EventBus, lock};
use super::reconnect::ReconnectRequest;
use super::registry::Registry;
use super::sink::InboundSink;
use super::stats::Counters;
use super::stream::{WsStream, ws_config};
use super::threads::ThreadSet;

/// Floor of the concurrent-handshake bound, so a small `max_connections`
/// still lets a refusal be answered while another handshake finishes.
const MIN_HANDSHAKES: usize = 16;

pub(crate) struct Shared {
    pub(crate) identity: BridgeIdentity,
    pub(crate) config: BridgeConfig,
    pub(crate) sink: Arc<dyn InboundSink>,
    pub(crate) ws_config: WebSocketConfig,
    pub(crate) registry: Registry,
    pub(crate) events: EventBus,
    pub(crate) stats: Counters,
    /// Handshake threads and connection readers.
    pub(crate) threads: ThreadSet,
    /// Endpoints this side dialed, with the network found there.
    pub(crate) dialed_endpoints: Mutex<HashMap<String, String>>,
    epoch: Instant,
    stopping: AtomicBool,
    next_id: AtomicU64,
    reconnect: Mutex<Option<Sender<ReconnectRequest>>>,
    /// Sockets whose handshake is in progress (and whether they were
    /// accepted), so shutdown can wake them.
    pending: Mutex<HashMap<u64, (TcpStream, bool)>>,
}

/// Removes a socket from the pending handshakes when the handshake ends.
pub(crate) struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.shared.pending).remove(&self.id);
    }
}

impl Shared {
    pub(crate) fn new(
        identity: BridgeIdentity,
        config: BridgeConfig,
        sink: Arc<dyn InboundSink>,
        reconnect: Sender<ReconnectRequest>,
    ) -> Self {
        Shared {
            ws_config: ws_config(&config),
            registry: Registry::new(identity.network_id.clone(), config.max_connections),
            events: EventBus::new(config.event_queue_capacity),
            stats: Counters::default(),
            threads: ThreadSet::new(),
            dialed_endpoints: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            stopping: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            reconnect: Mutex::new(Some(reconnect)),
            pending: Mutex::new(HashMap::new()),
            identity,
            config,
            sink,
        }
    }

    /// Time since the bridge started: the clock of the liveness detectors.
    pub(crate) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub(crate) fn begin_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        lock(&self.reconnect).take();
    }

    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn close_grace(&self) -> Duration {
        self.config.close_timeout
    }

    pub(crate) fn request_reconnect(&self, network_id: &str, endpoint: &str) {
        if let Some(tx) = lock(&self.reconnect).as_ref() {
            let request = ReconnectRequest {
                network_id: network_id.into(),
                endpoint: endpoint.into(),
            };
            let _ = tx.send(request);
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
        let id = self.next_connection_id();
        pending.insert(id, (clone, accepted));
        Some(PendingGuard { shared: self, id })
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
}

/// Starts a connection that won its place in the map, closes the one it
/// replaced, and reports it.
pub(crate) fn activate(
    shared: &Arc<Shared>,
    connection: &Arc<Connection>,
    ws: WebSocket<WsStream>,
    queues: Queues,
    role: Role,
    replaced: Option<Arc<Connection>>,
) -> Result<(), BridgeError> {
    if let Err(err) = connection::start(shared, connection, ws, queues, role) {
        shared.registry.remove_if_same(connection);
        return Err(BridgeError::Spawn(err));
    }
    if let Some(old) = replaced {
        log::debug!("Replacing duplicate connection to network: {}", old.network_id);
        old.close_gracefully(CloseReason::Duplicate);
    }
    log::info!("Established connection with network: {}", connection.network_id);
    shared.events.emit(BridgeEvent::Connected {
        network_id: connection.network_id.clone(),
        endpoint: connection.endpoint.clone(),
        dialed: connection.dialed,
    });
    Ok(())
}

/// Sends a Close frame with `reason` on a connection that never got threads,
/// then waits (up to the close timeout) for the peer to finish the close.
pub(crate) fn close_unstarted(shared: &Shared, ws: &mut WebSocket<WsStream>, reason: &str) {
    ws.get_mut().set_deadline(Instant::now() + shared.close_grace());
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: reason.to_string().into(),
    };
    if ws.close(Some(frame)).is_err() {
        return;
    }
    while ws.read().is_ok() {}
}

/// Reads frames until a text frame arrives (the handshake frames).
pub(crate) fn read_text(ws: &mut WebSocket<WsStream>, limit: Duration) -> Result<String, HandshakeError> {
    loop {
        match ws.read() {
            Ok(WsMessage::Text(text)) => return Ok(text.as_str().to_string()),
            Ok(WsMessage::Ping(_) | WsMessage::Pong(_)) => {}
            Ok(WsMessage::Close(_)) => return Err(HandshakeError::Closed),
            Ok(_) => return Err(HandshakeError::Malformed("expected a text frame".into())),
            Err(err) => return Err(handshake_error(err, limit)),
        }
    }
}

/// Maps a WebSocket error during the handshake to a `HandshakeError`.
pub(crate) fn handshake_error(err: WsError, limit: Duration) -> HandshakeError {
    match err {
        WsError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => HandshakeError::TimedOut(limit),
        WsError::Io(io) => HandshakeError::Io(io),
        WsError::ConnectionClosed | WsError::AlreadyClosed => HandshakeError::Closed,
        WsError::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            HandshakeError::Closed
        }
        WsError::Http(response) => HandshakeError::Upgrade(format!("HTTP status {}", response.status())),
        other => HandshakeError::Upgrade(other.to_string()),
    }
}

/// Maps the failure of tungstenite's upgrade (client or server side).
pub(crate) fn upgrade_error<R: tungstenite::handshake::HandshakeRole>(
    err: tungstenite::HandshakeError<R>,
    limit: Duration,
) -> HandshakeError {
    match err {
        tungstenite::HandshakeError::Failure(err) => handshake_error(err, limit),
        tungstenite::HandshakeError::Interrupted(_) => HandshakeError::TimedOut(limit),
    }
}
