//! The session object: what one connection's owner and its two halves
//! share. Its lifecycle (start, teardown) is in `mod.rs`.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use tungstenite::error::Error as WsError;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Bytes, Message as WsMessage, WebSocket};

use super::targets::{Settle, Targets};
use crate::bridge::batch;
use crate::bridge::delivery::{Credits, DeliveryOffer, InboundLog, NoCredit, Outbox, credit_batch};
use crate::bridge::error::{BridgeError, SendError};
use crate::bridge::events::lock;
use crate::bridge::frame;
use crate::bridge::liveness;
use crate::bridge::protocol::{Outbound, RemoteMessage};
use crate::bridge::sink::InboundSink;
use crate::bridge::stats::{Counters, LinkCounters, bump};
use crate::bridge::stream::{LastByte, is_timeout};
use crate::message::Message;

/// Close reason sent to (and recognised from) a peer when one of two
/// connections between the same pair of networks is dropped.
pub(crate) const DUPLICATE_CLOSE: &str = "duplicate connection";

/// Which wire a session speaks, fixed by its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// Protocol 1.0: JSON text frames, payloads in the forms Reflow 1.0 reads.
    V10,
    /// Protocol 1.1: typed binary frames; `peer_max_message` is the largest
    /// message (in encoded bytes) the peer said it accepts; `delivery` is the
    /// peer's delivery offer when both sides made one; `batch`: both sides
    /// read BATCH frames (`batch::CAPABILITY`).
    V11 {
        peer_max_message: usize,
        delivery: Option<DeliveryOffer>,
        batch: bool,
    },
}

/// Who is on the other end, fixed by the handshake.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) network_id: String,
    pub(crate) instance_id: String,
    /// The dialed `host:port`, or the accepted socket's remote address.
    pub(crate) endpoint: String,
    /// True when this side dialed.
    pub(crate) dialed: bool,
    pub(crate) wire: Wire,
}

/// How long a sender writing through waits for room in the socket's send
/// buffer before it leaves the rest of its frame to the writer.
const WRITE_THROUGH_WAIT: Duration = Duration::from_millis(1);

/// What became of a frame offered to `Session::write_through`.
enum Through {
    /// Written, or buffered for the writer to flush (the message is on its way).
    Written,
    /// Not written: the session was not idle. The caller queues it.
    Refused(Outgoing),
    /// The socket failed; the message did not go.
    Failed(BridgeError),
}

/// The writing end of a session's socket. The writer thread holds it while it
/// writes; a sender that finds the session idle may hold it to write its own
/// frame (see [`Session::send`]).
pub(crate) type WriteSocket = WebSocket<TcpStream>;

/// A send writes its frame itself, rather than waking the writer thread,
/// only when no data went out on the session for at least this long:
/// messages closer together are a stream, left to the writer, which gathers
/// them into one write and one flush (a write per message would cost the
/// receiver a wake-up per message). Request and reply traffic is spaced by
/// a round trip (20 µs and more on loopback, counted from the start of the
/// send written through), a stream by the sender's own cost per message (a
/// few microseconds, counted from the end of the send queued, which may
/// have waited for room) or by the writer's batches.
const WRITE_THROUGH_GAP: Duration = Duration::from_micros(10);

/// One encoded frame on the data lane.
pub(crate) enum Outgoing {
    Text(String),
    /// A complete 1.1 DATA frame; the writer splits it into fragments.
    Binary(Vec<u8>),
    /// A one-message BATCH frame (`batch::encode`), within the peer's
    /// limits; the writer joins those it finds queued together.
    Entry(Vec<u8>),
}

impl Outgoing {
    /// The encoded frame's length in bytes.
    fn len(&self) -> usize {
        match self {
            Outgoing::Text(text) => text.len(),
            Outgoing::Binary(frame) | Outgoing::Entry(frame) => frame.len(),
        }
    }

    /// What its credits cost: a DATA frame's length, or a BATCH entry's.
    fn credit_len(&self) -> usize {
        match self {
            Outgoing::Entry(frame) => batch::entry_len(frame),
            other => other.len(),
        }
    }
}

/// Why a session ended. The first reason recorded wins.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CloseReason {
    PeerClosed(String),
    Failed(String),
    Oversized(String),
    Evicted,
    Duplicate,
    /// A newer instance of the same network took this session's place.
    Replaced(String),
    Shutdown,
}

impl CloseReason {
    /// The text sent in the Close frame and logged.
    pub(crate) fn text(&self) -> String {
        match self {
            CloseReason::PeerClosed(why) | CloseReason::Failed(why) | CloseReason::Oversized(why) => {
                why.clone()
            }
            CloseReason::Evicted => "evicted for silence".into(),
            CloseReason::Duplicate => DUPLICATE_CLOSE.into(),
            CloseReason::Replaced(instance) => format!("replaced by instance {instance}"),
            CloseReason::Shutdown => "shutdown".into(),
        }
    }
}

/// Control frames waiting for the writer. Bounded by construction: one
/// heartbeat, the latest Pong, one acknowledgement (built when written, so
/// always the latest), one credit count per target actor with messages
/// consumed, and one Close at most; so nothing here is ever dropped for lack
/// of room and nothing a peer sends can make it grow past the actors that
/// exist.
#[derive(Default)]
pub(crate) struct ControlState {
    pub(crate) heartbeat: bool,
    /// Only the latest Ping needs an answer (RFC 6455, 5.5.3).
    pub(crate) pong: Option<Bytes>,
    pub(crate) ping: bool,
    pub(crate) ack: bool,
    pub(crate) credits: HashMap<Arc<str>, u64>,
    pub(crate) close: Option<String>,
}

/// A session's share of the delivery features, when both sides offered
/// them in the handshake.
pub(crate) struct SessionDelivery {
    /// Ours to spend: how many more credits each of the peer's actors grants.
    pub(crate) credits: Credits,
    /// Our unacknowledged messages to the peer's network (outlives sessions).
    pub(crate) outbox: Arc<Outbox>,
    /// What arrived from the peer's network (outlives sessions).
    pub(crate) log: Arc<InboundLog>,
    /// The peer's messages not consumed yet, by target actor.
    pub(crate) targets: Targets,
    pub(crate) peer_incarnation: u64,
    /// What we grant the peer per target actor, in credits.
    pub(crate) window: u32,
    /// Our `credit_bytes` when both sides stated one (a message then costs
    /// 1 + its DATA frame's length / this); `None`: one credit per message.
    pub(crate) unit: Option<u32>,
}

/// What the session's owner learns when it ends.
pub(crate) struct Ended {
    pub(crate) reason: CloseReason,
    /// Messages that were queued and never written: lost with the connection.
    pub(crate) lost: u64,
}

/// Called once, on the session's own thread, after both halves stopped.
pub(crate) type OnEnd = Box<dyn FnOnce(&Arc<Session>, Ended) + Send>;

/// What a session needs from the bridge, fixed when it starts.
#[derive(Clone)]
pub(crate) struct SessionContext {
    pub(crate) local_network: String,
    pub(crate) sink: Arc<dyn InboundSink>,
    pub(crate) stats: Arc<Counters>,
    /// Traffic counters of the remote network (kept across its sessions).
    pub(crate) link: Arc<LinkCounters>,
    pub(crate) ws_config: WebSocketConfig,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) close_grace: Duration,
    /// How long an inbound message waits for room in a full inbox.
    pub(crate) delivery_timeout: Duration,
    /// Our own stated limit: a reassembled 1.1 message larger than this is refused.
    pub(crate) max_message_bytes: usize,
    pub(crate) epoch: Instant,
}

pub(crate) struct Session {
    pub(crate) id: u64,
    pub(crate) peer: Peer,
    pub(crate) context: SessionContext,
    pub(super) data: Sender<Outgoing>,
    /// A second receiving end of the data lane, for counting what is lost.
    pub(super) data_rx: Receiver<Outgoing>,
    /// Senders between their check of `lane_closed` and the end of their
    /// enqueue; the teardown drains until none is left, so every message is
    /// either counted as lost or handed back, never both, never neither.
    pub(super) inflight: AtomicUsize,
    /// Senders waiting for room in the full data lane. They wait on `room`,
    /// and the writer wakes them once the lane is half empty: a sender
    /// blocked inside the channel would be woken at every frame the writer
    /// takes, a system call per message on the writer's side.
    room_waiters: AtomicUsize,
    room: Condvar,
    room_lock: Mutex<()>,
    pub(super) lane_closed: AtomicBool,
    /// The socket's writing end: the writer's, lent to a sender that writes
    /// through; `None` once the writer has stopped (nothing may be written
    /// after its Close).
    pub(super) socket: Mutex<Option<WriteSocket>>,
    /// Messages on the data lane not yet written (taken before the push,
    /// given back once written): a send writes through only at zero, so it
    /// never overtakes a message of the same thread still queued.
    pub(super) unwritten: AtomicUsize,
    /// Messages the writer took from the lane to join into a BATCH frame
    /// whose write then failed: lost with the connection, counted with
    /// what is still queued at the teardown.
    pub(super) lost_by_writer: AtomicU64,
    /// A write-through left bytes in the socket's buffer for the writer.
    pub(super) needs_flush: AtomicBool,
    /// The socket's write timeout is [`WRITE_THROUGH_WAIT`], set by a
    /// write-through and left so for the next one; the writer sets its own
    /// tick back before it writes. Changed only under `socket`'s lock: two
    /// system calls per message saved on a link that only writes through.
    short_timeout: AtomicBool,
    /// When data last went out on this session: a send written through
    /// began, a queued one ended, or the writer finished a batch; in
    /// nanoseconds since the bridge's epoch ([`WRITE_THROUGH_GAP`]).
    last_data: AtomicU64,
    control: Mutex<ControlState>,
    /// Set with every control change, so the writer checks the lane between
    /// data frames without taking a lock.
    control_pending: AtomicBool,
    /// A control frame that woke the writer is queued (not a lazy credit
    /// grant): sends leave the socket to the writer until it is written.
    control_urgent: AtomicBool,
    /// The reader is handing a message to the local network (may block).
    delivering: AtomicBool,
    /// Wakes the writer when a control frame is queued (one token at most).
    control_wake: Sender<()>,
    tcp: TcpStream,
    pub(super) last_byte: Arc<LastByte>,
    closing: Mutex<Option<(CloseReason, Instant)>>,
    aborted: AtomicBool,
    pub(super) writer: Mutex<Option<JoinHandle<()>>>,
    pub(crate) delivery: Option<SessionDelivery>,
}

/// The receiving ends the writer takes over.
pub(crate) struct Lanes {
    pub(crate) data: Receiver<Outgoing>,
    pub(crate) control_wake: Receiver<()>,
}

impl Session {
    /// A session for a socket whose handshake succeeded; not started yet.
    pub(crate) fn new(
        id: u64,
        peer: Peer,
        context: SessionContext,
        tcp: TcpStream,
        data_capacity: usize,
        delivery: Option<SessionDelivery>,
    ) -> (Arc<Session>, Lanes) {
        let last_byte = LastByte::new(context.epoch);
        let (data, data_rx) = bounded(data_capacity.max(1));
        let (control_wake, wake_rx) = bounded(1);
        let session = Session {
            id,
            peer,
            context,
            data,
            data_rx: data_rx.clone(),
            inflight: AtomicUsize::new(0),
            room_waiters: AtomicUsize::new(0),
            room: Condvar::new(),
            room_lock: Mutex::new(()),
            lane_closed: AtomicBool::new(false),
            socket: Mutex::new(None),
            unwritten: AtomicUsize::new(0),
            lost_by_writer: AtomicU64::new(0),
            needs_flush: AtomicBool::new(false),
            short_timeout: AtomicBool::new(false),
            last_data: AtomicU64::new(0),
            control: Mutex::new(ControlState::default()),
            control_pending: AtomicBool::new(false),
            control_urgent: AtomicBool::new(false),
            delivering: AtomicBool::new(false),
            control_wake,
            tcp,
            last_byte,
            closing: Mutex::new(None),
            aborted: AtomicBool::new(false),
            writer: Mutex::new(None),
            delivery,
        };
        let lanes = Lanes {
            data: data_rx,
            control_wake: wake_rx,
        };
        (Arc::new(session), lanes)
    }

    pub(crate) fn network_id(&self) -> &str {
        &self.peer.network_id
    }

    /// Messages waiting for the writer (the data lane).
    pub(crate) fn queued(&self) -> usize {
        self.data.len()
    }

    /// Time since the bridge started: the clock of liveness.
    pub(crate) fn now(&self) -> Duration {
        self.context.epoch.elapsed()
    }

    /// The one route from a send API to this session's wire: checks the
    /// peer's limits, encodes for the session's wire, and queues, waiting up
    /// to `timeout` (zero: not at all). Every failure hands the message back.
    ///
    /// When the session is idle (nothing queued, the writer not writing, no
    /// urgent control frame, no send in the last [`WRITE_THROUGH_GAP`]) a
    /// message of at most one fragment is written from the caller's thread
    /// instead: one thread hand-off less on its way, which is most of a
    /// message's latency on an idle link. Such a write never waits more than
    /// a millisecond for room in the socket; what does not fit is left to the
    /// writer.
    pub(crate) fn send(&self, message: RemoteMessage, timeout: Duration) -> Result<(), SendError> {
        let sent = self
            .encode(&message)
            .and_then(|item| self.send_encoded(item, &message.target_actor, timeout));
        sent.map_err(|error| SendError::new(error, message))
    }

    /// As [`Session::send`], for a message given by its parts: toward a
    /// peer that reads BATCH frames it is encoded as one entry, without the
    /// envelope a [`RemoteMessage`] carries. Toward another peer, or when
    /// the entry would not fit a batch, it becomes a whole message from
    /// this network and goes as [`Session::send`] sends it. The payload
    /// comes back on failure.
    pub(crate) fn send_parts(
        &self,
        parts: &Outbound<'_>,
        payload: Message,
        timeout: Duration,
    ) -> Result<(), (BridgeError, Message)> {
        let entry = match self.peer.wire {
            Wire::V11 {
                batch: true,
                peer_max_message,
                ..
            } if batch::may_fit(parts, &payload, peer_max_message) => batch::encode(parts, &payload)
                .ok()
                .filter(|frame| batch::fits(frame, peer_max_message)),
            _ => None,
        };
        match entry {
            Some(frame) => self
                .send_encoded(Outgoing::Entry(frame), parts.target_actor, timeout)
                .map_err(|error| (error, payload)),
            None => {
                let message = parts.to_remote(&self.context.local_network, payload);
                self.send(message, timeout).map_err(|err| {
                    let (error, message) = err.into_parts();
                    (error, message.payload)
                })
            }
        }
    }

    /// Takes `target`'s credits for `item`, then writes it through or queues it.
    /// The clock is read once for a send written through, twice for one
    /// queued (its end is the stamp: see `last_data`), more if it waits.
    fn send_encoded(&self, item: Outgoing, target: &str, timeout: Duration) -> Result<(), BridgeError> {
        let len = item.credit_len();
        let cost = match self.take_credit(target, len, None) {
            Err(BridgeError::WindowFull { .. }) if !timeout.is_zero() => {
                self.take_credit(target, len, Some(Instant::now() + timeout))?
            }
            taken => taken?,
        };
        let began = nanos(self.now());
        let (result, ended) = match self.write_through(item, began) {
            Through::Written => (Ok(()), began),
            // Stamped at its end: a send that waited for room in the lane
            // is followed by the next of its stream, which must queue too.
            Through::Refused(item) => (self.enqueue(item, target, timeout), nanos(self.now())),
            Through::Failed(error) => (Err(error), began),
        };
        self.last_data.store(ended, Ordering::Relaxed);
        if result.is_err()
            && let Some(delivery) = &self.delivery
        {
            delivery.credits.grant(target, u64::from(cost));
        }
        result
    }

    /// Writes `item` from the caller's thread when the session is idle;
    /// hands it back otherwise. `now`: this send's start (`Session::now`, ns).
    fn write_through(&self, item: Outgoing, now: u64) -> Through {
        let small = item.len() <= frame::FRAGMENT_BYTES;
        let quiet_for = now.saturating_sub(self.last_data.load(Ordering::Relaxed));
        let idle = small
            && quiet_for >= nanos(WRITE_THROUGH_GAP)
            && !self.control_urgent.load(Ordering::SeqCst)
            && self.unwritten.load(Ordering::SeqCst) == 0
            && !self.needs_flush.load(Ordering::SeqCst);
        if !idle {
            return Through::Refused(item);
        }
        // A frame taken from the lane counts until it is written, so an
        // empty count under the lock means that nothing this thread queued
        // before is still unwritten: its messages stay in order.
        let Ok(mut socket) = self.socket.try_lock() else {
            return Through::Refused(item);
        };
        let Some(ws) = socket.as_mut() else {
            return Through::Refused(item);
        };
        if self.unwritten.load(Ordering::SeqCst) != 0 {
            return Through::Refused(item);
        }
        let written = self.write_frame_through(ws, item);
        drop(socket);
        match written {
            Ok(()) => {
                if self.needs_flush.load(Ordering::SeqCst) {
                    self.wake();
                }
                Through::Written
            }
            Err(why) => {
                self.abort(CloseReason::Failed(format!("write failed: {why}")));
                Through::Failed(self.closed_error())
            }
        }
    }

    /// Takes the credits of a message whose DATA frame is `len` bytes for
    /// `target` when the peer grants credits; returns how many it took (to
    /// grant back if the message does not go).
    pub(crate) fn take_credit(
        &self,
        target: &str,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<u32, BridgeError> {
        let Some(delivery) = &self.delivery else {
            return Ok(0);
        };
        let cost = delivery.credits.cost_of(len);
        delivery
            .credits
            .take(target, cost, deadline)
            .map(|()| cost)
            .map_err(|why| match why {
                NoCredit::Full => BridgeError::WindowFull {
                    network_id: self.peer.network_id.clone(),
                    target: target.to_string(),
                    window: delivery.credits.window(),
                },
                NoCredit::Closed => self.closed_error(),
            })
    }

    /// Writes one frame of at most [`frame::FRAGMENT_BYTES`] from a sender's
    /// thread, on the socket the writer lent. It waits at most
    /// [`WRITE_THROUGH_WAIT`] for room; bytes that did not fit stay in the
    /// WebSocket's buffer and the writer is asked to flush them. An error
    /// is the socket's: the message did not go, the session is done.
    fn write_frame_through(&self, ws: &mut WriteSocket, item: Outgoing) -> Result<(), String> {
        let message = match item {
            Outgoing::Text(text) => WsMessage::text(text),
            Outgoing::Binary(bytes) | Outgoing::Entry(bytes) => WsMessage::binary(bytes),
        };
        let len = message.len() as u64;
        if !self.short_timeout.swap(true, Ordering::Relaxed) {
            ws.get_ref()
                .set_write_timeout(Some(WRITE_THROUGH_WAIT))
                .map_err(|e| e.to_string())?;
        }
        let written = ws.write(message).and_then(|()| ws.flush());
        match written {
            Ok(()) => {}
            Err(WsError::Io(err)) if is_timeout(&err) => self.needs_flush.store(true, Ordering::SeqCst),
            Err(err) => return Err(err.to_string()),
        }
        bump(&self.context.link.bytes_out, len);
        bump(&self.context.stats.messages_sent, 1);
        bump(&self.context.link.messages_out, 1);
        Ok(())
    }

    /// The writer finished a batch: a send that follows within
    /// [`WRITE_THROUGH_GAP`] is part of the stream and queues behind it.
    pub(super) fn data_written(&self) {
        self.last_data.store(nanos(self.now()), Ordering::Relaxed);
    }

    /// Sets the writer's write timeout (its tick) back if a write-through
    /// shortened it. Called by the writer with the socket held, before it writes.
    pub(super) fn writer_timeout(&self, ws: &WriteSocket) -> std::io::Result<()> {
        if self.short_timeout.swap(false, Ordering::Relaxed) {
            ws.get_ref().set_write_timeout(Some(self.tick()))?;
        }
        Ok(())
    }

    fn enqueue(&self, item: Outgoing, target: &str, timeout: Duration) -> Result<(), BridgeError> {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        if self.lane_closed.load(Ordering::SeqCst) {
            self.inflight.fetch_sub(1, Ordering::SeqCst);
            return Err(self.closed_error());
        }
        self.unwritten.fetch_add(1, Ordering::SeqCst);
        let queued = match self.data.try_send(item) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(item)) if !timeout.is_zero() => self.wait_for_room(item, timeout),
            Err(TrySendError::Full(_)) => Err(self.full_error()),
            Err(TrySendError::Disconnected(_)) => Err(self.closed_error()),
        };
        self.inflight.fetch_sub(1, Ordering::SeqCst);
        if queued.is_err() {
            self.unwritten.fetch_sub(1, Ordering::SeqCst);
        }
        if queued.is_ok() {
            log::debug!("Queued a message for {target}@{}", self.peer.network_id);
        }
        queued
    }

    /// Queues `item` once the lane has room, waiting up to `timeout`. The
    /// count of waiters goes up before each try, under `room_lock`, so the
    /// writer (which looks at the count after every frame it takes) cannot
    /// miss a sender that found the lane full.
    fn wait_for_room(&self, mut item: Outgoing, timeout: Duration) -> Result<(), BridgeError> {
        let deadline = Instant::now() + timeout;
        let mut guard = lock(&self.room_lock);
        self.room_waiters.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            match self.data.try_send(item) {
                Ok(()) => break Ok(()),
                Err(TrySendError::Disconnected(_)) => break Err(self.closed_error()),
                Err(TrySendError::Full(back)) => item = back,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(self.full_error());
            }
            // The tick bounds a wait whose wake-up went astray.
            guard = self
                .room
                .wait_timeout(guard, left.min(self.tick()))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        };
        self.room_waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Frames left the data lane: wakes the senders waiting for room once
    /// it is half empty, or at once when `always` (the teardown's drain).
    pub(super) fn room_made(&self, always: bool) {
        if self.room_waiters.load(Ordering::SeqCst) == 0 {
            return;
        }
        let half = self.data.capacity().unwrap_or(0) / 2;
        if always || self.data.len() <= half {
            let _held = lock(&self.room_lock);
            self.room.notify_all();
        }
    }

    /// Wakes the writer (new outbox frames, or room in the window).
    pub(crate) fn wake(&self) {
        let _ = self.control_wake.try_send(());
    }

    pub(crate) fn encode(&self, message: &RemoteMessage) -> Result<Outgoing, BridgeError> {
        match self.peer.wire {
            Wire::V10 => {
                let text = serde_json::to_string(message).map_err(|err| BridgeError::Unrepresentable {
                    network_id: self.peer.network_id.clone(),
                    reason: err.to_string(),
                })?;
                Ok(Outgoing::Text(text))
            }
            Wire::V11 { peer_max_message, .. } => {
                let bytes =
                    frame::encode_data(message).map_err(|err| BridgeError::Encode(err.to_string()))?;
                if bytes.len() > peer_max_message {
                    return Err(BridgeError::TooLarge {
                        network_id: self.peer.network_id.clone(),
                        size: bytes.len(),
                        limit: peer_max_message,
                    });
                }
                Ok(Outgoing::Binary(bytes))
            }
        }
    }

    fn full_error(&self) -> BridgeError {
        BridgeError::QueueFull {
            network_id: self.peer.network_id.clone(),
            capacity: self.data.capacity().unwrap_or(0),
        }
    }

    fn closed_error(&self) -> BridgeError {
        BridgeError::ConnectionClosed(self.peer.network_id.clone())
    }

    /// Queues a control frame; never blocks and never drops one.
    pub(crate) fn control(&self, change: impl FnOnce(&mut ControlState)) {
        self.control_lazily(|c| {
            change(c);
            true
        });
    }

    /// Queues a control frame the writer sends with its next frame, or at
    /// its next tick (at most a second; the heartbeat interval when
    /// shorter); it is woken for it only when `change` returns true.
    pub(crate) fn control_lazily(&self, change: impl FnOnce(&mut ControlState) -> bool) {
        let wake = change(&mut lock(&self.control));
        self.control_pending.store(true, Ordering::SeqCst);
        if wake {
            self.control_urgent.store(true, Ordering::SeqCst);
            let _ = self.control_wake.try_send(());
        }
    }

    /// True when a control frame may be waiting (the writer's quick check).
    pub(crate) fn control_pending(&self) -> bool {
        self.control_pending.load(Ordering::SeqCst)
    }

    /// Takes every queued control frame (the writer's side).
    pub(crate) fn take_control(&self) -> ControlState {
        self.control_pending.store(false, Ordering::SeqCst);
        self.control_urgent.store(false, Ordering::SeqCst);
        std::mem::take(&mut *lock(&self.control))
    }

    /// The reader starts handing a message to the local network, which may
    /// block while an inbox is full; the peer is not silent meanwhile.
    pub(crate) fn delivery_started(&self) {
        self.delivering.store(true, Ordering::SeqCst);
    }

    pub(crate) fn delivery_finished(&self) {
        self.last_byte.touch();
        self.delivering.store(false, Ordering::SeqCst);
    }

    /// A frame was read: counts as a byte heard now.
    pub(crate) fn heard(&self) {
        self.last_byte.touch();
    }

    /// Time of the last byte that arrived on the socket (any frame, or part of one).
    pub(crate) fn last_heard(&self) -> Duration {
        self.last_byte.get()
    }

    /// Whether the connection is half-open (`liveness::is_half_open`): a
    /// restarted peer's old connection, which a new one of the same
    /// instance may replace.
    pub(crate) fn is_half_open(&self, now: Duration) -> bool {
        let delivering = self.delivering.load(Ordering::SeqCst);
        liveness::is_half_open(
            self.last_heard(),
            now,
            self.context.heartbeat_interval,
            delivering,
        )
    }

    /// True when no byte has arrived for `SILENT_INTERVALS` heartbeat intervals.
    pub(crate) fn is_silent(&self, now: Duration) -> bool {
        let delivering = self.delivering.load(Ordering::SeqCst);
        liveness::is_dead(
            self.last_heard(),
            now,
            self.context.heartbeat_interval,
            delivering,
        )
    }

    /// How long from `now` until the connection would be silent for good
    /// if no byte arrived meanwhile; `None` while a local delivery holds the
    /// reader (that counts as alive).
    pub(crate) fn silent_in(&self, now: Duration) -> Option<Duration> {
        if self.delivering.load(Ordering::SeqCst) {
            return None;
        }
        let limit = self.context.heartbeat_interval * liveness::SILENT_INTERVALS;
        Some((self.last_heard() + limit).saturating_sub(now))
    }

    /// Asks the peer for a sign of life and waits up to `wait` for a byte
    /// that arrives after the question. True when one arrived, or while a
    /// local delivery holds the reader (a full inbox, or an actor's turn it
    /// runs): it cannot read the answer then, and that counts as alive, as
    /// for eviction.
    pub(crate) fn proves_liveness(&self, wait: Duration) -> bool {
        let asked = self.now();
        self.control(|c| c.ping = true);
        let deadline = Instant::now() + wait;
        let step = (wait / 20).max(Duration::from_millis(1));
        loop {
            if self.last_heard() > asked || self.delivering.load(Ordering::SeqCst) {
                return true;
            }
            if self.is_aborted() || Instant::now() >= deadline {
                return false;
            }
            thread::sleep(step);
        }
    }

    /// Records `reason` unless one is already recorded (the first one wins).
    pub(crate) fn set_reason(&self, reason: CloseReason) {
        lock(&self.closing).get_or_insert((reason, Instant::now()));
    }

    pub(crate) fn reason(&self) -> Option<CloseReason> {
        lock(&self.closing).as_ref().map(|(reason, _)| reason.clone())
    }

    /// True once a close was asked for more than the close grace ago.
    pub(crate) fn close_overdue(&self) -> bool {
        lock(&self.closing)
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() >= self.context.close_grace)
    }

    /// Ends the session politely: the writer sends what is queued, then a
    /// Close frame with the reason; the socket is cut if the peer does not
    /// finish the close within the grace.
    pub(crate) fn close(&self, reason: CloseReason) {
        self.set_reason(reason);
        let text = self.reason().map(|r| r.text()).unwrap_or_default();
        self.control(|c| c.close = Some(text));
    }

    /// Cuts the socket at once: both halves wake with errors.
    pub(crate) fn abort(&self, reason: CloseReason) {
        self.set_reason(reason);
        self.aborted.store(true, Ordering::SeqCst);
        let _ = self.tcp.shutdown(Shutdown::Both);
        let _ = self.control_wake.try_send(());
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    pub(crate) fn shutdown_write(&self) {
        let _ = self.tcp.shutdown(Shutdown::Write);
    }

    /// How often a blocked reader or writer looks at its stop conditions.
    pub(crate) fn tick(&self) -> Duration {
        self.context
            .heartbeat_interval
            .clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// An acknowledgement wakes the writer at once. Credits are batched: the
/// writer is woken when a target's grant reaches [`credit_batch`] of the
/// window, and otherwise sends the grant with its next frame or at its next
/// tick. A sender held back has at least a batch outstanding (the rule of
/// `fits`), so the grant for it always reaches the batch; a CREDIT frame and a writer wake-up per
/// message cost more CPU than small messages themselves.
impl Settle for Session {
    fn settle(&self, target: &Arc<str>, credits: u32, ack: bool) {
        let batch = self
            .delivery
            .as_ref()
            .map_or(1, |d| u64::from(credit_batch(d.window)));
        self.control_lazily(|c| {
            c.ack |= ack;
            let grant = c.credits.entry(target.clone()).or_default();
            *grant += u64::from(credits);
            ack || *grant >= batch
        });
    }
}

/// `d` in whole nanoseconds, saturating (585 years fit).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
