//! The session object: what one connection's owner and its two halves
//! share. Its lifecycle (start, teardown) is in `mod.rs`.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use tungstenite::error::Error as WsError;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Bytes, Message as WsMessage, WebSocket};

use super::doorbell::Doorbell;
use super::targets::{Settle, Targets};
use crate::bridge::batch::{self, Gathering};
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
enum Through<'a> {
    /// Written, or buffered for the writer to flush (the message is on its way).
    Written,
    /// Not written: the session was not idle. The caller queues it.
    Refused(Encoded<'a>),
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
/// few microseconds; a queued message counts as unwritten until the
/// writer's write ends, which is stamped, and a send that waited for room
/// is stamped at its end) or by the writer's batches.
const WRITE_THROUGH_GAP: Duration = Duration::from_micros(10);

/// The longest `BridgeConfig::write_linger` taken as it is.
pub(crate) const MAX_WRITE_LINGER: Duration = Duration::from_millis(1);

/// The writer lingers after a write only while fewer messages than this
/// are queued: a larger backlog is written at once.
pub(super) const LINGER_BELOW: usize = 256;

/// The writer lingers only after a write of fewer bytes than this, and a
/// frame of this size or more ends a linger: a large message gains nothing
/// from waiting for company.
pub(super) const LINGER_BYTES: usize = 16 * 1024;

/// One encoded frame on the data lane.
pub(crate) enum Outgoing {
    Text(String),
    /// A complete 1.1 DATA frame; the writer splits it into fragments.
    Binary(Vec<u8>),
    /// A BATCH frame of `count` messages, gathered by senders
    /// ([`Gathering`]) within the peer's limits; never fragmented.
    Batch {
        frame: Bytes,
        count: usize,
    },
}

impl Outgoing {
    /// The frame's length in bytes.
    pub(super) fn len(&self) -> usize {
        match self {
            Outgoing::Text(text) => text.len(),
            Outgoing::Binary(frame) => frame.len(),
            Outgoing::Batch { frame, .. } => frame.len(),
        }
    }

    /// How many messages the frame carries.
    pub(super) fn messages(&self) -> usize {
        match self {
            Outgoing::Batch { count, .. } => *count,
            Outgoing::Text(_) | Outgoing::Binary(_) => 1,
        }
    }
}

/// One message, encoded, on its way from a send to the wire.
enum Encoded<'a> {
    /// A whole frame: 1.0 text or a 1.1 DATA frame.
    Frame(Outgoing),
    /// A one-entry BATCH frame (`batch::encode_into`) in the sender's
    /// buffer: its entry joins the session's [`Gathering`], and it is
    /// copied only when it is written through.
    Entry(&'a [u8]),
}

impl Encoded<'_> {
    /// The encoded frame's length in bytes.
    fn len(&self) -> usize {
        match self {
            Encoded::Frame(frame) => frame.len(),
            Encoded::Entry(frame) => frame.len(),
        }
    }

    /// What its credits cost: a DATA frame's length, or a BATCH entry's.
    fn credit_len(&self) -> usize {
        match self {
            Encoded::Entry(frame) => batch::entry_len(frame),
            other => other.len(),
        }
    }

    /// The frame as the writer writes it.
    fn into_outgoing(self) -> Outgoing {
        match self {
            Encoded::Frame(frame) => frame,
            Encoded::Entry(frame) => Outgoing::Batch {
                frame: Bytes::copy_from_slice(frame),
                count: 1,
            },
        }
    }
}

thread_local! {
    /// The buffer a thread encodes its BATCH entries in, reused from one
    /// message to the next.
    static ENTRY: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A buffer grown past this by a large entry is not kept for the next.
const ENTRY_BUFFER_KEPT: usize = 8 * 1024;

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
    /// `BridgeConfig::write_linger`, at most [`MAX_WRITE_LINGER`].
    pub(crate) write_linger: Duration,
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
    /// The data lane: frames in the order they were sent. Unbounded as a
    /// channel, bounded by `unwritten`: every frame on it holds at least
    /// one message counted there.
    pub(super) data: Sender<Outgoing>,
    /// A second receiving end of the data lane, for counting what is lost.
    pub(super) data_rx: Receiver<Outgoing>,
    /// The BATCH frame senders are gathering, younger than every frame on
    /// the data lane: it is sealed onto the lane, under its lock, before a
    /// frame that follows it, and when it is full.
    gathering: Mutex<Gathering>,
    /// Most bytes of a gathered BATCH frame: the smaller of
    /// `batch::MAX_BYTES` and the peer's largest message.
    batch_limit: usize,
    /// Most messages on the data lane and in the gathering together.
    lane_capacity: usize,
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
    /// Messages on the data lane or gathered, not yet written (reserved
    /// before the push, up to `lane_capacity`; given back once written): a
    /// send writes through only at zero, so it never overtakes a message
    /// of the same thread still queued.
    pub(super) unwritten: AtomicUsize,
    /// Messages the writer took from the lane (or the gathering) in a frame
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
    /// began, one that waited for room in the lane ended, or the writer
    /// finished a write; in
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
    /// Wakes the writer when a control frame or a frame on the lane is
    /// queued, a gathering starts, or the session is cut.
    pub(super) doorbell: Doorbell,
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
        let (data, data_rx) = unbounded();
        let batch_limit = match peer.wire {
            Wire::V11 { peer_max_message, .. } => peer_max_message.min(batch::MAX_BYTES),
            Wire::V10 => 0,
        };
        let session = Session {
            id,
            peer,
            context,
            data,
            data_rx: data_rx.clone(),
            gathering: Mutex::new(Gathering::default()),
            batch_limit,
            lane_capacity: data_capacity.max(1),
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
            doorbell: Doorbell::default(),
            tcp,
            last_byte,
            closing: Mutex::new(None),
            aborted: AtomicBool::new(false),
            writer: Mutex::new(None),
            delivery,
        };
        let lanes = Lanes { data: data_rx };
        (Arc::new(session), lanes)
    }

    pub(crate) fn network_id(&self) -> &str {
        &self.peer.network_id
    }

    /// Messages waiting for the writer (the data lane and the gathering).
    pub(crate) fn queued(&self) -> usize {
        self.unwritten.load(Ordering::Relaxed)
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
            .and_then(|item| self.send_encoded(Encoded::Frame(item), &message.target_actor, timeout));
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
        if let Wire::V11 {
            batch: true,
            peer_max_message,
            ..
        } = self.peer.wire
            && batch::may_fit(parts, &payload, peer_max_message)
        {
            let mut entry = ENTRY.take();
            let encoded = batch::encode_into(&mut entry, parts, &payload).is_ok()
                && batch::fits(&entry, peer_max_message);
            let sent =
                encoded.then(|| self.send_encoded(Encoded::Entry(&entry), parts.target_actor, timeout));
            if entry.capacity() <= ENTRY_BUFFER_KEPT {
                ENTRY.set(entry);
            }
            if let Some(sent) = sent {
                return sent.map_err(|error| (error, payload));
            }
        }
        let message = parts.to_remote(&self.context.local_network, payload);
        self.send(message, timeout).map_err(|err| {
            let (error, message) = err.into_parts();
            (error, message.payload)
        })
    }

    /// Takes `target`'s credits for `item`, then writes it through or queues it.
    /// The clock is read only when the session may be idle, or the send waits.
    fn send_encoded(&self, item: Encoded<'_>, target: &str, timeout: Duration) -> Result<(), BridgeError> {
        let len = item.credit_len();
        let cost = match self.take_credit(target, len, None) {
            Err(BridgeError::WindowFull { .. }) if !timeout.is_zero() => {
                self.take_credit(target, len, Some(Instant::now() + timeout))?
            }
            taken => taken?,
        };
        let result = match self.write_through(item) {
            Through::Written => Ok(()),
            Through::Refused(item) => self.enqueue(item, target, timeout),
            Through::Failed(error) => Err(error),
        };
        if result.is_err()
            && let Some(delivery) = &self.delivery
        {
            delivery.credits.grant(target, u64::from(cost));
        }
        result
    }

    /// Writes `item` from the caller's thread when the session is idle;
    /// hands it back otherwise. A send written through stamps `last_data`
    /// with its start.
    fn write_through<'a>(&self, item: Encoded<'a>) -> Through<'a> {
        // The cheap signs of a busy session first: a stream finds a
        // message unwritten and reads no clock.
        let idle = item.len() <= frame::FRAGMENT_BYTES
            && self.unwritten.load(Ordering::SeqCst) == 0
            && !self.control_urgent.load(Ordering::SeqCst)
            && !self.needs_flush.load(Ordering::SeqCst);
        if !idle {
            return Through::Refused(item);
        }
        let now = nanos(self.now());
        if now.saturating_sub(self.last_data.load(Ordering::Relaxed)) < nanos(WRITE_THROUGH_GAP) {
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
        let written = self.write_frame_through(ws, item.into_outgoing());
        drop(socket);
        self.last_data.store(now, Ordering::Relaxed);
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
            Outgoing::Binary(bytes) => WsMessage::binary(bytes),
            Outgoing::Batch { frame, .. } => WsMessage::binary(frame),
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

    /// Queues `item` on the data lane, or its entry in the gathering,
    /// once it has room, waiting up to `timeout` (zero: not at all).
    fn enqueue(&self, item: Encoded<'_>, target: &str, timeout: Duration) -> Result<(), BridgeError> {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        if self.lane_closed.load(Ordering::SeqCst) {
            self.inflight.fetch_sub(1, Ordering::SeqCst);
            return Err(self.closed_error());
        }
        let reserved = if self.reserve() {
            Ok(())
        } else if timeout.is_zero() {
            Err(self.full_error())
        } else {
            self.wait_for_room(timeout)
        };
        if reserved.is_ok() {
            self.push(item);
        }
        self.inflight.fetch_sub(1, Ordering::SeqCst);
        if reserved.is_ok() {
            log::debug!("Queued a message for {target}@{}", self.peer.network_id);
        }
        reserved
    }

    /// Counts one more unwritten message if the lane has room for it.
    fn reserve(&self) -> bool {
        self.unwritten
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.lane_capacity).then_some(n + 1)
            })
            .is_ok()
    }

    /// Puts a message whose room is reserved on its way to the writer: an
    /// entry into the gathering (sealing it onto the lane first when the
    /// entry does not fit), a frame onto the lane behind the gathering.
    fn push(&self, item: Encoded<'_>) {
        let mut gathering = lock(&self.gathering);
        match item {
            Encoded::Entry(one) => {
                if !gathering.has_room(one, self.batch_limit) {
                    self.seal(&mut gathering);
                }
                let first = gathering.count() == 0;
                gathering.push(one);
                drop(gathering);
                // A writer lingering for more of a stream takes it at the
                // end of its wait: no wake-up.
                if first {
                    self.doorbell.ring_for_stream();
                }
            }
            Encoded::Frame(frame) => {
                let large = frame.len() >= LINGER_BYTES;
                self.seal(&mut gathering);
                // The session holds a receiving end: this cannot fail.
                let _ = self.data.send(frame);
                drop(gathering);
                if large {
                    self.wake();
                } else {
                    self.doorbell.ring_for_stream();
                }
            }
        }
    }

    /// Moves what the gathering holds onto the lane, as one BATCH frame.
    fn seal(&self, gathering: &mut Gathering) {
        if let Some((frame, count)) = gathering.take() {
            let _ = self.data.send(Outgoing::Batch { frame, count });
        }
    }

    /// The next frame for the writer, or for the teardown's count, from
    /// `lane` (a receiving end of the data lane): the lane first, then the
    /// gathering, whose messages are younger than every frame on the lane.
    pub(super) fn next_data(&self, lane: &Receiver<Outgoing>) -> Option<Outgoing> {
        if let Ok(item) = lane.try_recv() {
            return Some(item);
        }
        let mut gathering = lock(&self.gathering);
        // Sealed under this lock: a frame that reached the lane meanwhile is older.
        if let Ok(item) = lane.try_recv() {
            return Some(item);
        }
        gathering
            .take()
            .map(|(frame, count)| Outgoing::Batch { frame, count })
    }

    /// Whether nothing is left on the lane or in the gathering.
    pub(super) fn lane_empty(&self) -> bool {
        self.data_rx.is_empty() && lock(&self.gathering).count() == 0
    }

    /// Reserves room for one message once the lane has it, waiting up to
    /// `timeout`. The count of waiters goes up before each try, under
    /// `room_lock`, so the writer (which looks at the count after every
    /// frame it writes) cannot miss a sender that found the lane full. A
    /// send that waited stamps `last_data` with its end: the next of its
    /// stream queues too.
    fn wait_for_room(&self, timeout: Duration) -> Result<(), BridgeError> {
        let deadline = Instant::now() + timeout;
        let mut guard = lock(&self.room_lock);
        self.room_waiters.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            if self.lane_closed.load(Ordering::SeqCst) {
                break Err(self.closed_error());
            }
            if self.reserve() {
                break Ok(());
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
        self.last_data.store(nanos(self.now()), Ordering::Relaxed);
        result
    }

    /// Messages were written: wakes the senders waiting for room once the
    /// lane is half empty, or at once when `always` (the teardown's drain).
    pub(super) fn room_made(&self, always: bool) {
        if self.room_waiters.load(Ordering::SeqCst) == 0 {
            return;
        }
        if always || self.unwritten.load(Ordering::SeqCst) <= self.lane_capacity / 2 {
            let _held = lock(&self.room_lock);
            self.room.notify_all();
        }
    }

    /// Wakes the writer (new outbox frames, or room in the window).
    pub(crate) fn wake(&self) {
        self.doorbell.ring();
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
            capacity: self.lane_capacity,
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
            self.doorbell.ring();
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
        self.doorbell.ring();
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
