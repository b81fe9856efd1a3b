//! The receiver's side of credits and acknowledgements on one session: a
//! slot per target actor counts the messages handed to it and not yet
//! consumed, and issues the receipts the runtime completes after the tick
//! that consumed each one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::bridge::delivery::{InboundLog, fits};
use crate::bridge::events::lock;
use crate::runtime::{Consumed, Receipt};

/// Where a consumed message's acknowledgement and credit go: the
/// session's control lane (the session implements it, so this file needs
/// nothing of the session but this).
pub(crate) trait Settle: Send + Sync {
    /// Queue a grant of `credits` for `target` and, when `ack`, an
    /// acknowledgement.
    fn settle(&self, target: &Arc<str>, credits: u32, ack: bool);
}

/// One target actor's messages from this session that are not consumed yet,
/// counted in credits (a message's cost).
pub(crate) struct TargetSlot {
    name: Arc<str>,
    outstanding: AtomicU64,
    session: Weak<dyn Settle>,
    log: Arc<InboundLog>,
    incarnation: u64,
}

impl TargetSlot {
    /// A receipt for the next message to this target (`seq` 0: not
    /// sequenced), costing `cost` credits, and whether it is within the
    /// window granted for it (by the sender's rule, `fits`).
    pub(crate) fn receipt(self: &Arc<Self>, seq: u64, cost: u32, window: u32) -> (Receipt, bool) {
        let before = self.outstanding.fetch_add(u64::from(cost), Ordering::SeqCst);
        (Receipt::new(self.clone(), seq, cost), fits(before, cost, window))
    }

    /// Credits held by this target's messages not consumed yet.
    pub(crate) fn outstanding(&self) -> u64 {
        self.outstanding.load(Ordering::SeqCst)
    }
}

impl Consumed for TargetSlot {
    /// Acknowledges `seq` (if sequenced) and grants the message's cost
    /// back, on this session if it still runs (a later session's sender
    /// starts its credits afresh, and a replay re-acknowledges).
    fn consumed(&self, seq: u64, cost: u32) {
        self.outstanding.fetch_sub(u64::from(cost), Ordering::SeqCst);
        if seq != 0 {
            self.log.consumed(self.incarnation, seq);
        }
        if let Some(session) = self.session.upgrade() {
            session.settle(&self.name, cost, seq != 0);
        }
    }
}

/// The slots of one session, by target actor.
pub(crate) struct Targets {
    slots: Mutex<HashMap<String, Arc<TargetSlot>>>,
    log: Arc<InboundLog>,
    incarnation: u64,
}

impl Targets {
    pub(crate) fn new(log: Arc<InboundLog>, incarnation: u64) -> Targets {
        Targets {
            slots: Mutex::new(HashMap::new()),
            log,
            incarnation,
        }
    }

    pub(crate) fn slot<S: Settle + 'static>(&self, session: &Arc<S>, target: &str) -> Arc<TargetSlot> {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(target) {
            return slot.clone();
        }
        let slot = Arc::new(TargetSlot {
            name: Arc::from(target),
            outstanding: AtomicU64::new(0),
            session: Arc::downgrade(session) as Weak<dyn Settle>,
            log: self.log.clone(),
            incarnation: self.incarnation,
        });
        slots.insert(target.to_string(), slot.clone());
        slot
    }

    /// Forgets the slot of a target that turned out not to exist, so a peer
    /// naming many unknown actors cannot grow the map.
    pub(crate) fn forget_if_idle(&self, target: &str) {
        let mut slots = lock(&self.slots);
        if slots.get(target).is_some_and(|s| s.outstanding() == 0) {
            slots.remove(target);
        }
    }
}
