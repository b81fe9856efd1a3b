//! Network events and their fan-out to subscribers.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use super::node::lock;

/// What happened in a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkEvent {
    /// `start()` finished: workers run and initial packets are queued.
    Started,
    /// A node's actor is ready to receive (at start, or when added later).
    ActorStarted {
        /// The node.
        node: String,
    },
    /// A tick returned an error or panicked; the node keeps serving.
    ActorFailed {
        /// The node.
        node: String,
        /// The error's text, or the panic's message.
        error: String,
    },
    /// No node is queued or running.
    Idle,
    /// `shutdown()` began.
    ShuttingDown,
    /// `shutdown()` joined every thread.
    Shutdown,
}

/// Delivers events to every subscriber without ever blocking the publisher: a
/// subscriber whose buffer is full misses the event (counted in `dropped`).
pub(crate) struct EventBus {
    subscribers: Mutex<Vec<Sender<NetworkEvent>>>,
    count: AtomicUsize,
    capacity: usize,
    dropped: AtomicUsize,
}

impl EventBus {
    pub(crate) fn new(capacity: usize) -> Self {
        EventBus {
            subscribers: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            capacity: capacity.max(1),
            dropped: AtomicUsize::new(0),
        }
    }

    pub(crate) fn subscribe(&self) -> Receiver<NetworkEvent> {
        let (tx, rx) = bounded(self.capacity);
        let mut subscribers = lock(&self.subscribers);
        subscribers.push(tx);
        self.count.store(subscribers.len(), Ordering::Release);
        rx
    }

    pub(crate) fn publish(&self, event: NetworkEvent) {
        // Most networks have no subscriber: skip the lock then.
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut subscribers = lock(&self.subscribers);
        subscribers.retain(|tx| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
        self.count.store(subscribers.len(), Ordering::Release);
    }

    /// Drops every subscriber's sender, so their receivers see the end.
    pub(crate) fn close(&self) {
        lock(&self.subscribers).clear();
        self.count.store(0, Ordering::Release);
    }
}
