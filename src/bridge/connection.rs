//! One live connection: the handle the rest of the bridge holds, and the start
//! of its two threads. The reader (`reader.rs`) owns the writer thread and
//! joins it; only the writer (`writer.rs`) ever writes to the socket.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use tungstenite::protocol::Role;
use tungstenite::{Bytes, WebSocket};

use super::core::Shared;
use super::error::BridgeError;
use super::events::lock;
use super::liveness::Liveness;
use super::stream::WsStream;
use super::{reader, writer};

/// Close reason sent to (and recognised from) a peer when one of two
/// connections between the same pair of networks is dropped.
pub(crate) const DUPLICATE_CLOSE: &str = "duplicate connection";

/// Frames queued for the writer. `is_message` separates remote messages
/// (counted in the stats) from heartbeats.
pub(crate) struct Outgoing {
    pub(crate) text: String,
    pub(crate) is_message: bool,
}

/// Requests to the writer that are not data.
pub(crate) enum Control {
    /// Answer a Ping the reader saw.
    Pong(Bytes),
    /// Write what is queued, then a Close frame with this reason, then stop.
    Close(String),
    /// The socket is gone: stop at once (without waiting for the next tick).
    Abort,
}

/// Why a connection ended. The first reason recorded wins.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CloseReason {
    PeerClosed(String),
    Failed(String),
    Oversized(String),
    Evicted,
    Duplicate,
    Shutdown,
}

impl CloseReason {
    /// Dialed connections that end for these reasons are redialed.
    pub(crate) fn redial(&self) -> bool {
        matches!(
            self,
            CloseReason::PeerClosed(_)
                | CloseReason::Failed(_)
                | CloseReason::Oversized(_)
                | CloseReason::Evicted
        )
    }

    pub(crate) fn text(&self) -> String {
        match self {
            CloseReason::PeerClosed(why) | CloseReason::Failed(why) | CloseReason::Oversized(why) => {
                why.clone()
            }
            CloseReason::Evicted => "evicted for silence".into(),
            CloseReason::Duplicate => DUPLICATE_CLOSE.into(),
            CloseReason::Shutdown => "shutdown".into(),
        }
    }
}

pub(crate) struct Connection {
    pub(crate) id: u64,
    pub(crate) network_id: String,
    pub(crate) endpoint: String,
    pub(crate) dialed: bool,
    outbound: Sender<Outgoing>,
    control: Sender<Control>,
    tcp: TcpStream,
    liveness: Mutex<Liveness>,
    closing: Mutex<Option<(CloseReason, Instant)>>,
    aborted: AtomicBool,
}

/// The receiving ends a new connection's threads take over.
pub(crate) struct Queues {
    pub(crate) outbound: Receiver<Outgoing>,
    pub(crate) control: Receiver<Control>,
}

impl Connection {
    pub(crate) fn new(
        shared: &Shared,
        network_id: String,
        endpoint: String,
        dialed: bool,
        tcp: TcpStream,
    ) -> (Arc<Connection>, Queues) {
        let (outbound, outbound_rx) = bounded(shared.config.outbound_queue_capacity.max(1));
        let (control, control_rx) = bounded(8);
        let liveness = Liveness::new(shared.config.heartbeat_interval, shared.now());
        let connection = Connection {
            id: shared.next_connection_id(),
            network_id,
            endpoint,
            dialed,
            outbound,
            control,
            tcp,
            liveness: Mutex::new(liveness),
            closing: Mutex::new(None),
            aborted: AtomicBool::new(false),
        };
        (
            Arc::new(connection),
            Queues {
                outbound: outbound_rx,
                control: control_rx,
            },
        )
    }

    /// Queues a frame, waiting up to `timeout` for room.
    pub(crate) fn enqueue(&self, item: Outgoing, timeout: Duration) -> Result<(), BridgeError> {
        match self.outbound.send_timeout(item, timeout) {
            Ok(()) => Ok(()),
            Err(err) if err.is_timeout() => Err(self.full_error()),
            Err(_) => Err(BridgeError::ConnectionClosed(self.network_id.clone())),
        }
    }

    /// Queues a frame if there is room now.
    pub(crate) fn try_enqueue(&self, item: Outgoing) -> Result<(), BridgeError> {
        match self.outbound.try_send(item) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(self.full_error()),
            Err(TrySendError::Disconnected(_)) => Err(BridgeError::ConnectionClosed(self.network_id.clone())),
        }
    }

    fn full_error(&self) -> BridgeError {
        let capacity = self.outbound.capacity().unwrap_or(0);
        BridgeError::QueueFull {
            network_id: self.network_id.clone(),
            capacity,
        }
    }

    pub(crate) fn send_pong(&self, data: Bytes) {
        let _ = self.control.try_send(Control::Pong(data));
    }

    pub(crate) fn liveness(&self) -> std::sync::MutexGuard<'_, Liveness> {
        lock(&self.liveness)
    }

    /// Records `reason` unless one is already recorded; true if it was recorded.
    pub(crate) fn set_reason(&self, reason: CloseReason) -> bool {
        let mut closing = lock(&self.closing);
        if closing.is_some() {
            return false;
        }
        *closing = Some((reason, Instant::now()));
        true
    }

    pub(crate) fn reason(&self) -> Option<CloseReason> {
        lock(&self.closing).as_ref().map(|(reason, _)| reason.clone())
    }

    /// True once a close was asked for more than `grace` ago.
    pub(crate) fn close_overdue(&self, grace: Duration) -> bool {
        lock(&self.closing)
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() >= grace)
    }

    /// Asks the writer to send what is queued and a Close frame. Falls back to
    /// an abort if the writer cannot take the request.
    pub(crate) fn close_gracefully(&self, reason: CloseReason) {
        self.set_reason(reason);
        let text = self.reason().map(|r| r.text()).unwrap_or_default();
        if self.control.try_send(Control::Close(text)).is_err() {
            self.abort(CloseReason::Shutdown);
        }
    }

    /// Shuts the socket down at once: the reader and writer wake with errors.
    pub(crate) fn abort(&self, reason: CloseReason) {
        self.set_reason(reason);
        self.aborted.store(true, Ordering::SeqCst);
        let _ = self.tcp.shutdown(Shutdown::Both);
        // If the channel is full the writer still notices at its next tick.
        let _ = self.control.try_send(Control::Abort);
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    pub(crate) fn shutdown_write(&self) {
        let _ = self.tcp.shutdown(Shutdown::Write);
    }
}

/// How often a blocked reader or writer looks at its stop conditions.
pub(crate) fn tick(shared: &Shared) -> Duration {
    shared
        .config
        .heartbeat_interval
        .clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Starts the writer and the reader of a registered connection. `ws` is the
/// WebSocket the handshake ran on; it becomes the reader's.
pub(crate) fn start(
    shared: &Arc<Shared>,
    connection: &Arc<Connection>,
    mut ws: WebSocket<WsStream>,
    queues: Queues,
    role: Role,
) -> std::io::Result<()> {
    let tick = tick(shared);
    ws.get_mut().make_read_only(tick)?;
    let write_tcp = ws.get_ref().tcp().try_clone()?;
    write_tcp.set_write_timeout(Some(tick))?;
    let write_ws = WebSocket::from_raw_socket(write_tcp, role, Some(shared.ws_config));

    let name = &connection.network_id;
    let writer = {
        let (shared, connection) = (Arc::clone(shared), Arc::clone(connection));
        thread::Builder::new()
            .name(format!("bridge-writer-{name}"))
            .spawn(move || writer::run(&shared, &connection, write_ws, queues))?
    };
    let (reader_shared, reader_connection) = (Arc::clone(shared), Arc::clone(connection));
    let started = shared.threads.spawn(format!("bridge-reader-{name}"), move || {
        reader::run(&reader_shared, &reader_connection, ws, writer)
    });
    if started.is_err() {
        // The writer wakes on the aborted socket; nobody will join it, so it is detached.
        connection.abort(CloseReason::Failed("cannot start reader thread".into()));
    }
    started
}
