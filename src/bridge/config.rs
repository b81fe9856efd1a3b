//! Settings of the bridge. Every bound in the bridge is one of these fields.

use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;

/// Who this side of a bridge connection is, as told in the handshake.
#[derive(Clone, Debug)]
pub struct BridgeIdentity {
    /// This side's network, an id (`names::check_id`).
    pub network_id: String,
    /// This process's instance, an id.
    pub instance_id: String,
    /// Shared secret. `None` on an acceptor accepts anyone; on a dialer it is sent as `null`.
    pub auth_token: Option<Secret>,
    /// Listed in the handshake; `["actor_messaging"]` by default.
    pub capabilities: Vec<String>,
}

impl BridgeIdentity {
    /// An identity without a token, listing `["actor_messaging"]`.
    pub fn new(network_id: impl Into<String>, instance_id: impl Into<String>) -> Self {
        BridgeIdentity {
            network_id: network_id.into(),
            instance_id: instance_id.into(),
            auth_token: None,
            capabilities: vec!["actor_messaging".to_string()],
        }
    }
}

/// How held links are redialed: a capped exponential ceiling with full
/// jitter (each delay drawn from zero to its ceiling, so a fleet does not
/// redial in lockstep). A held link is redialed for as long as it is held.
#[derive(Clone, Debug, PartialEq)]
pub struct ReconnectPolicy {
    /// Delay before the first attempt. Default 200 ms.
    pub initial_delay: Duration,
    /// Each delay is the previous one times this. Default 2.
    pub multiplier: u32,
    /// No delay is longer than this (the cap). Default 3.2 s.
    pub max_delay: Duration,
    /// Attempts logged one by one as `Reconnect attempt N/max_attempts`;
    /// after them redialing goes on at the cap and is reported at most every
    /// 30 s. Default 5 (ceilings 200 ms, 400 ms, 800 ms, 1.6 s, 3.2 s).
    pub max_attempts: u32,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(200),
            multiplier: 2,
            max_delay: Duration::from_millis(3200),
            max_attempts: 5,
        }
    }
}

/// Bounds and intervals of the bridge.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BridgeConfig {
    /// Address the listener binds, e.g. `127.0.0.1` or `0.0.0.0`. Default `127.0.0.1`.
    pub bind_address: String,
    /// Port the listener binds; 0 picks a free one. Default 0.
    pub bind_port: u16,
    /// Live connections at most (dialed and accepted together); a peer past it is
    /// refused with `max_connections reached`. Default 64.
    pub max_connections: usize,
    /// Heartbeat period; a connection silent for 3 periods is evicted. Default 1 s.
    pub heartbeat_interval: Duration,
    /// Time allowed for TCP connect when dialing. Default 5 s.
    pub connect_timeout: Duration,
    /// Time allowed for the WebSocket upgrade plus the JSON handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Largest frame (and message) accepted; a larger one closes that connection.
    /// Default 1 MiB: fits 64 KiB payloads many times over while bounding what one
    /// peer can make us buffer.
    pub max_frame_bytes: usize,
    /// Frames queued for one connection's writer. A full queue makes senders wait
    /// (up to their timeout) instead of growing memory. Default 1024.
    pub outbound_queue_capacity: usize,
    /// Offer protocol 1.1's BATCH frames in the handshake: toward a peer
    /// that offers them too, at-most-once messages go without a message id
    /// or timestamp, several to a frame (docs/protocol.md, section 3).
    /// Default true; false sends every message as a DATA frame (a receiver
    /// then sees each message's `message_id`, for tracing).
    pub batch_frames: bool,
    /// tungstenite's read buffer per socket. Default 16 KiB (tungstenite's own
    /// default of 128 KiB would dominate per-connection memory).
    pub read_buffer_bytes: usize,
    /// Bytes the writer gathers before writing to the socket. Default 16 KiB.
    pub write_buffer_bytes: usize,
    /// How long a connection's writer waits, after a write of less than
    /// 16 KiB that left fewer than 256 messages queued, for more of a
    /// stream to gather before its next write; at most 1 ms (longer is
    /// taken as 1 ms), zero: not at all. A control frame, a frame of 16 KiB
    /// or more or the end of the connection cuts the wait short; a message
    /// sent to an idle connection does not wait (it is written from the
    /// sender's thread).
    /// Default 50 µs: a stream of small messages then goes in writes of
    /// a few hundred messages, not tens, each write costing both sides a
    /// system call and a wake-up (docs/benchmarks.md, "Gathered batches").
    pub write_linger: Duration,
    /// How long a reader waits for the local network to accept an inbound message
    /// before dropping it with a warning (the connection is not evicted meanwhile).
    /// Default 5 s.
    pub delivery_timeout: Duration,
    /// How long a closing connection waits for the peer to finish the close
    /// (and `shutdown` waits for connections) before the socket is cut.
    /// Default 1 s.
    pub close_timeout: Duration,
    /// Events queued per subscriber; a subscriber that falls further behind
    /// loses events. Default 256.
    pub event_queue_capacity: usize,
    /// Redial schedule of held links.
    pub reconnect: ReconnectPolicy,
    /// Accept a protocol 1.0 handshake that carries the token in clear (from
    /// a dialer that does not offer 1.1, such as async Reflow). Default true:
    /// 1.0 peers stay first-class. Only matters when this side has a token.
    pub accept_legacy_auth: bool,
    /// A held link down longer than this is reported once at warn. Default 30 s.
    pub link_down_warning: Duration,
    /// Acknowledged delivery and per-target credits (docs/delivery.md).
    pub delivery: DeliveryConfig,
}

/// How a message is delivered to another network (docs/delivery.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Sent once; lost if its connection ends before it is written, and
    /// counted then (`Bridge::lost_messages`). The default, as in Reflow.
    #[default]
    AtMostOnce,
    /// Kept in the network's outbox until the receiver acknowledges that the
    /// target actor consumed it; replayed in order after a reconnect;
    /// duplicates dropped by the receiver. Protocol 1.1 peers of this
    /// project only: toward others a send fails with
    /// `BridgeError::DeliveryUnavailable`.
    Acknowledged,
}

impl DeliveryMode {
    /// `"at-most-once"` or `"acknowledged"`, as written in a config file.
    pub fn name(self) -> &'static str {
        match self {
            DeliveryMode::AtMostOnce => "at-most-once",
            DeliveryMode::Acknowledged => "acknowledged",
        }
    }
}

/// Bounds of acknowledged delivery and credits. Every default is sized for
/// the per-connection memory budget in docs/delivery.md.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DeliveryConfig {
    /// The mode of `Bridge::send` (and so of proxies and `send_to_actor`).
    /// Default at-most-once.
    pub mode: DeliveryMode,
    /// Unacknowledged messages kept per remote network. A send that finds
    /// the outbox full waits up to its timeout, then fails with `QueueFull`
    /// and the message back. Default 4096.
    pub outbox_messages: usize,
    /// Encoded bytes kept per remote network's outbox, likewise. Default 8 MiB.
    pub outbox_bytes: usize,
    /// Messages sent and not yet acknowledged, per remote network: the most
    /// a receiver crash can turn into duplicates. Default 1024.
    pub ack_window: usize,
    /// Credits this side grants per target actor and connection before the
    /// sender must wait: the receiving inbox may hold this many messages
    /// (fewer when large, see `credit_bytes`) past its capacity, so one slow
    /// actor never blocks the connection. Default 4096: with the default
    /// `credit_bytes` that is 2 MiB per actor and connection, and credits go
    /// back every 512 small messages (an eighth), each a CREDIT frame and a
    /// wake-up of both writers and of the sender; a window of 1024 cost a
    /// stream of 64-byte messages about a third of its rate.
    pub target_window: u32,
    /// Bytes per credit this side charges as a receiver, stated in the
    /// handshake: a message costs 1 credit plus 1 per whole `credit_bytes` of
    /// its encoded DATA frame (or BATCH entry), so the window bounds the
    /// bytes a target holds past a full inbox to about `target_window ×
    /// credit_bytes` per connection (2 MiB at the defaults), not
    /// `target_window` messages of any size. Default 512: a message under
    /// 512 bytes costs one credit, which is more than such a message takes
    /// in an inbox, so the 2 MiB bound holds for small messages too. 0: not
    /// stated, one credit per message (as a peer that predates it). Costs
    /// apply only when both sides state it.
    pub credit_bytes: u32,
    /// Keep the outbox in this directory, so that unacknowledged messages
    /// survive a restart of this process. Default none (memory only).
    pub outbox_dir: Option<PathBuf>,
    /// With `outbox_dir`: flush every accepted message to the disk itself
    /// (`fdatasync`), so it survives a power loss too, not only a crash or
    /// `kill -9` of the process. Costs a disk flush per message: measured
    /// 85 to 400 times fewer sends per second (docs/delivery-journal.md).
    /// Default false.
    pub outbox_fsync: bool,
    /// Offer credits and acknowledged delivery in 1.1 handshakes. Off, this
    /// side behaves as a 1.1 peer without them: no credits (a full inbox
    /// blocks the reader, as toward Reflow 1.0) and acknowledged sends fail
    /// with `DeliveryUnavailable`. For comparisons and tests. Default true.
    pub offer: bool,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            mode: DeliveryMode::AtMostOnce,
            outbox_messages: 4096,
            outbox_bytes: 8 << 20,
            ack_window: 1024,
            target_window: 4096,
            credit_bytes: 512,
            outbox_dir: None,
            outbox_fsync: false,
            offer: true,
        }
    }
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            bind_address: "127.0.0.1".to_string(),
            bind_port: 0,
            max_connections: 64,
            heartbeat_interval: Duration::from_millis(1000),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            max_frame_bytes: 1 << 20,
            outbound_queue_capacity: 1024,
            batch_frames: true,
            read_buffer_bytes: 16 * 1024,
            write_buffer_bytes: 16 * 1024,
            write_linger: Duration::from_micros(50),
            delivery_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(1),
            event_queue_capacity: 256,
            reconnect: ReconnectPolicy::default(),
            accept_legacy_auth: true,
            link_down_warning: Duration::from_secs(30),
            delivery: DeliveryConfig::default(),
        }
    }
}

/// How a held link is dialed (a `[[connect]]` entry).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct HoldOptions {
    /// The network expected at the endpoint; an acceptor that answers as
    /// another network is refused. Default: none (learned at the first dial).
    pub network_id: Option<String>,
    /// Send the token in clear to a protocol 1.0 acceptor that cannot do the
    /// 1.1 proof (async Reflow). Default false; a warn line says when it happens.
    pub legacy_auth: bool,
}

impl HoldOptions {
    /// Options that expect `network_id` at the endpoint.
    pub fn expecting(network_id: impl Into<String>) -> Self {
        HoldOptions {
            network_id: Some(network_id.into()),
            legacy_auth: false,
        }
    }

    /// The same options with `legacy_auth` set.
    pub fn with_legacy_auth(mut self, legacy_auth: bool) -> Self {
        self.legacy_auth = legacy_auth;
        self
    }
}
