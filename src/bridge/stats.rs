//! Counters of the bridge, read through [`BridgeStats`].

use std::sync::atomic::{AtomicU64, Ordering};

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
}

/// Adds `n` to a counter.
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
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
        }
    }
}
