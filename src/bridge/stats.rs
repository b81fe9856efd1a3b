//! Counters of the bridge, read through [`BridgeStats`] (the whole bridge)
//! and [`LinkStats`] (per network).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Networks whose traffic counters are kept at most; past it, counters of
/// networks without a session are forgotten (and start again from zero).
const MAX_TRACKED_NETWORKS: usize = 1024;

/// Why handshakes were refused, as counted: a fixed set, so the counters
/// stay few whatever dialers send.
pub const REFUSAL_REASONS: [&str; 6] = [
    "auth",
    "max_connections",
    "live_instance",
    "bad_handshake",
    "legacy_auth",
    "other",
];

/// A snapshot of the bridge's counters since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BridgeStats {
    /// Remote messages handed to a connection's WebSocket writer. Most reach
    /// the socket at once; those still in its write buffer (`write_buffer_bytes`)
    /// when the connection fails are lost without being counted in
    /// `lost_with_connection`.
    pub messages_sent: u64,
    /// Remote messages read from a socket and handed to the sink.
    pub messages_received: u64,
    /// Inbound messages dropped because the target actor or port is unknown.
    pub dropped_unknown_target: u64,
    /// Inbound messages dropped because the local inbox stayed full
    /// (delivery_timeout) or the local network was shutting down.
    pub dropped_delivery_timeout: u64,
    /// Frames that were not valid 1.0 frames (bad JSON, unknown shape, bad
    /// payload, binary); the connection was kept.
    pub malformed_frames: u64,
    /// Handshakes this side refused (token, capacity, bad first frame).
    pub refused_handshakes: u64,
    /// Connections closed because a frame exceeded max_frame_bytes.
    pub oversized_frames: u64,
    /// Connections evicted for silence.
    pub evictions: u64,
    /// Messages accepted by a send and lost with their connection before
    /// they were written (also counted per network: `Bridge::lost_messages`).
    pub lost_with_connection: u64,
    /// Sequenced messages that arrived again (replays after a reconnect)
    /// and were settled without a second delivery.
    pub duplicates_dropped: u64,
    /// Messages under acknowledged delivery that their receivers
    /// acknowledged as consumed.
    pub messages_acknowledged: u64,
    /// Held links linked again after a drop or failed dials (each
    /// `BridgeEvent::Reconnected`).
    pub reconnects: u64,
    /// `refused_handshakes` by reason, in the order of [`REFUSAL_REASONS`].
    pub refused_by_reason: [u64; REFUSAL_REASONS.len()],
}

/// Traffic with one network since the bridge started, across its sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkStats {
    /// The remote network.
    pub network_id: String,
    /// A session with it is up.
    pub connected: bool,
    /// Remote messages read from it and handed to the local network.
    pub messages_in: u64,
    /// Remote messages written to it.
    pub messages_out: u64,
    /// Bytes of WebSocket text and binary frames read from it (messages,
    /// fragments, heartbeats and 1.1 control frames; framing not counted).
    pub bytes_in: u64,
    /// Bytes of WebSocket text and binary frames written to it, likewise.
    pub bytes_out: u64,
    /// Messages queued for its writer now (0 when not connected).
    pub queued: usize,
    /// Messages accepted under acknowledged delivery and not acknowledged
    /// yet: the network's outbox (kept while the link is down too).
    pub unacknowledged: usize,
}

/// The counters of one network, shared by its sessions.
#[derive(Default, Debug)]
pub(crate) struct LinkCounters {
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) messages_sent: AtomicU64,
    pub(crate) messages_received: AtomicU64,
    pub(crate) dropped_unknown_target: AtomicU64,
    pub(crate) dropped_delivery_timeout: AtomicU64,
    pub(crate) malformed_frames: AtomicU64,
    pub(crate) refused_handshakes: AtomicU64,
    pub(crate) oversized_frames: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) lost_with_connection: AtomicU64,
    pub(crate) duplicates_dropped: AtomicU64,
    pub(crate) messages_acknowledged: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    refused_by_reason: [AtomicU64; REFUSAL_REASONS.len()],
    links: Mutex<HashMap<String, Arc<LinkCounters>>>,
}

/// Adds `n` to a counter.
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// Counts one refused handshake under `reason` (one of [`REFUSAL_REASONS`]).
    pub(crate) fn refused(&self, reason: &str) {
        bump(&self.refused_handshakes, 1);
        let at = REFUSAL_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(REFUSAL_REASONS.len() - 1);
        bump(&self.refused_by_reason[at], 1);
    }

    /// The counters of `network`, made on first use. Sessions keep the
    /// `Arc`, so the hot path never looks the map up.
    pub(crate) fn link(&self, network: &str) -> Arc<LinkCounters> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(link) = links.get(network) {
            return Arc::clone(link);
        }
        if links.len() >= MAX_TRACKED_NETWORKS {
            // Only the map holds counters of networks without a session.
            links.retain(|_, link| Arc::strong_count(link) > 1);
        }
        let link = Arc::new(LinkCounters::default());
        links.insert(network.to_string(), Arc::clone(&link));
        link
    }

    /// Traffic counters of every network seen, sorted by network id
    /// (`connected` and `queued` left for the caller to fill in).
    pub(crate) fn links(&self) -> Vec<LinkStats> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<LinkStats> = links
            .iter()
            .map(|(network, c)| LinkStats {
                network_id: network.clone(),
                messages_in: get(&c.messages_in),
                messages_out: get(&c.messages_out),
                bytes_in: get(&c.bytes_in),
                bytes_out: get(&c.bytes_out),
                ..LinkStats::default()
            })
            .collect();
        out.sort_by(|a, b| a.network_id.cmp(&b.network_id));
        out
    }

    pub(crate) fn snapshot(&self) -> BridgeStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BridgeStats {
            messages_sent: get(&self.messages_sent),
            messages_received: get(&self.messages_received),
            dropped_unknown_target: get(&self.dropped_unknown_target),
            dropped_delivery_timeout: get(&self.dropped_delivery_timeout),
            malformed_frames: get(&self.malformed_frames),
            refused_handshakes: get(&self.refused_handshakes),
            oversized_frames: get(&self.oversized_frames),
            evictions: get(&self.evictions),
            lost_with_connection: get(&self.lost_with_connection),
            duplicates_dropped: get(&self.duplicates_dropped),
            messages_acknowledged: get(&self.messages_acknowledged),
            reconnects: get(&self.reconnects),
            refused_by_reason: std::array::from_fn(|i| get(&self.refused_by_reason[i])),
        }
    }
}
