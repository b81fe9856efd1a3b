//! Lifecycle events for subscribers. Each subscriber has a bounded queue; a
//! subscriber that falls behind loses events rather than slowing the bridge.

use std::sync::Mutex;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

/// Something that happened to a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BridgeEvent {
    /// A connection finished its handshake and is in the connection map.
    /// `dialed` is true when this side dialed it; `endpoint` is the dialed
    /// `host:port` or, for an accepted connection, the peer's socket address.
    Connected {
        /// The peer's network.
        network_id: String,
        /// Dialed `host:port`, or the accepted peer's socket address.
        endpoint: String,
        /// True when this side dialed.
        dialed: bool,
    },
    /// A connection closed (peer closed, socket error, bad frame).
    Disconnected {
        /// The peer's network.
        network_id: String,
        /// Why, as logged (the peer's Close reason is escaped).
        reason: String,
    },
    /// A connection was silent for 3 heartbeat intervals and was dropped.
    Evicted {
        /// The peer's network.
        network_id: String,
    },
    /// A held target was linked again after a drop or failed dials.
    Reconnected {
        /// The peer's network.
        network_id: String,
        /// The held target's `host:port`.
        endpoint: String,
        /// The dial that succeeded, counted from 1 after the drop.
        attempt: u32,
    },
    /// One dial of a held target failed; another follows after the backoff
    /// (a held link is never given up). `network_id` is the target's network
    /// when known, else its endpoint; `attempt` counts from 1 after a drop
    /// (0 is the first dial of a target that was never linked).
    ReconnectFailed {
        /// The target's network, or its endpoint when the network is not known.
        network_id: String,
        /// Which dial failed (see above).
        attempt: u32,
        /// The dial's error, as logged.
        reason: String,
    },
}

pub(crate) struct EventBus {
    capacity: usize,
    subscribers: Mutex<Vec<Sender<BridgeEvent>>>,
}

impl EventBus {
    pub(crate) fn new(capacity: usize) -> Self {
        EventBus {
            capacity: capacity.max(1),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn subscribe(&self) -> Receiver<BridgeEvent> {
        let (tx, rx) = bounded(self.capacity);
        lock(&self.subscribers).push(tx);
        rx
    }

    /// Offers the event to every subscriber; full queues drop it, gone
    /// subscribers are forgotten.
    pub(crate) fn emit(&self, event: BridgeEvent) {
        lock(&self.subscribers).retain(|tx| match tx.try_send(event.clone()) {
            Ok(()) | Err(TrySendError::Full(_)) => true,
            Err(TrySendError::Disconnected(_)) => false,
        });
    }
}

/// Locks a mutex, carrying on with the data if a panicking thread poisoned it
/// (every bridge structure stays consistent between statements).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_subscriber_loses_events_without_blocking() {
        let bus = EventBus::new(1);
        let rx = bus.subscribe();
        for _ in 0..3 {
            bus.emit(BridgeEvent::Evicted {
                network_id: "beta".into(),
            });
        }
        assert_eq!(rx.len(), 1);
        drop(rx);
        bus.emit(BridgeEvent::Evicted {
            network_id: "beta".into(),
        });
        assert!(lock(&bus.subscribers).is_empty());
    }
}
