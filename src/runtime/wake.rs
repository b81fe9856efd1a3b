//! Who waits for whom: the backpressure bookkeeping of the scheduler.
//!
//! # The rules
//!
//! A node on the pool never blocks its worker. When one of its outputs meets a
//! full inbox, the output and everything after it stay in the node's outbox,
//! the node is marked `blocked`, and it is added to the full node's `waiters`.
//! A blocked node is not scheduled, so it takes no more input: its own inbox
//! fills and holds back its upstream in turn. When the full node takes input
//! and a port goes from full to having room, it wakes its waiters, which flush
//! their outboxes first and only then run new ticks.
//!
//! # No lost wake-up
//!
//! The sender marks itself blocked *before* it re-checks the target under the
//! target's lock and, still under that lock, registers as a waiter. Taking
//! input also happens under the target's lock. So either the re-check sees the
//! room (the sender delivers and unmarks itself), or the registration happens
//! first and the consumer's later pop finds the waiter. The wake clears
//! `blocked` under the sender's lock; if the sender is still finishing its turn
//! it sees `blocked == false` with a non-empty outbox and queues itself again.
//!
//! # No deadlock in cycles
//!
//! Each blocked node waits on exactly one node, so the waits form chains. Before
//! a node blocks on a target, it follows the target's chain (under the
//! `WaitFor` lock, so chains do not change meanwhile); if the chain leads back
//! to the node itself, waiting would close a cycle in which nobody can move, so
//! the message is delivered over the target's capacity instead. A cycle can thus
//! exceed its capacities only by what circulates inside it; a pipeline never does.
//!
//! Lock order: `WaitFor` before any node lock, and never two node locks at once.
//!
//! # Where the rules are kept
//!
//! The state this argument is about, each node's [`Waits`] and the
//! [`WaitFor`] graph, has private fields: only [`offer`] and
//! [`wake_waiters`] below change them, so the code that must follow the
//! rules is the code next to them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::node::{Node, Pending, lock};
use super::scheduler::{Shared, accept_locked, schedule_locked};

/// A node's part in the waits, kept in its `NodeInner` (so under the node's
/// lock) and changed only by this module, whose functions follow the rules
/// above: [`offer`] blocks a sender and registers it, [`wake_waiters`]
/// unblocks it.
#[derive(Default)]
pub(crate) struct Waits {
    /// Waiting for room in another node's inbox (that node holds it in its `waiters`).
    blocked: bool,
    /// Nodes held back by this node's full inbox, woken when it takes input.
    waiters: Vec<Arc<Node>>,
}

impl Waits {
    /// Whether the node waits for room downstream (and so must not be scheduled).
    pub(crate) fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// The nodes to wake, once the node took input that gave a full port room
    /// (`NodeInner::take_inputs`); the caller wakes them with [`wake_waiters`]
    /// after releasing the node's lock (never two node locks at once).
    pub(crate) fn take_waiters(&mut self) -> Vec<Arc<Node>> {
        std::mem::take(&mut self.waiters)
    }
}

/// Puts a message in the target's inbox if there is room, else blocks the
/// sender on the target (or, to break a cycle of waits, overfills the target).
pub(crate) fn offer(shared: &Shared, from: &Arc<Node>, pending: Pending) -> Result<(), Pending> {
    let target = &pending.target;
    {
        let mut inner = lock(&target.inner);
        if inner.has_room(pending.port) {
            let ready = accept_locked(shared, target, &mut inner, pending.port, pending.envelope);
            drop(inner);
            ready.run(shared);
            return Ok(());
        }
    }
    let mut waits = shared.wait_for.lock();
    if waits.leads_to(target.id(), from.id()) {
        let mut inner = lock(&target.inner);
        let ready = accept_locked(shared, target, &mut inner, pending.port, pending.envelope);
        drop(inner);
        drop(waits);
        ready.run(shared);
        return Ok(());
    }
    lock(&from.inner).waits.blocked = true;
    let mut inner = lock(&target.inner);
    if inner.has_room(pending.port) {
        let ready = accept_locked(shared, target, &mut inner, pending.port, pending.envelope);
        drop(inner);
        lock(&from.inner).waits.blocked = false;
        drop(waits);
        ready.run(shared);
        return Ok(());
    }
    inner.waits.waiters.push(from.clone());
    drop(inner);
    waits.set(from.id(), target.id());
    Err(pending)
}

/// Unblocks nodes that waited for room and queues them to flush their outboxes.
pub(crate) fn wake_waiters(shared: &Shared, waiters: Vec<Arc<Node>>) {
    if waiters.is_empty() {
        return;
    }
    let mut ready = Vec::with_capacity(waiters.len());
    {
        let mut waits = shared.wait_for.lock();
        for waiter in waiters {
            waits.clear(waiter.id());
            let mut inner = lock(&waiter.inner);
            inner.waits.blocked = false;
            ready.push(schedule_locked(shared, &waiter, &mut inner));
        }
    }
    for node in ready {
        node.run(shared);
    }
}

/// The wait-for graph: which blocked node waits on which.
#[derive(Default)]
pub(crate) struct WaitFor {
    blocked_on: Mutex<HashMap<usize, usize>>,
}

struct WaitForGuard<'a> {
    blocked_on: MutexGuard<'a, HashMap<usize, usize>>,
}

impl WaitFor {
    fn lock(&self) -> WaitForGuard<'_> {
        WaitForGuard {
            blocked_on: lock(&self.blocked_on),
        }
    }
}

impl WaitForGuard<'_> {
    /// Whether following the waits from `start` reaches `goal` (or `start == goal`).
    fn leads_to(&self, start: usize, goal: usize) -> bool {
        let mut current = start;
        // A chain is at most as long as the number of waiting nodes.
        for _ in 0..=self.blocked_on.len() {
            if current == goal {
                return true;
            }
            match self.blocked_on.get(&current) {
                Some(&next) => current = next,
                None => return false,
            }
        }
        false
    }

    fn set(&mut self, waiter: usize, target: usize) {
        self.blocked_on.insert(waiter, target);
    }

    fn clear(&mut self, waiter: usize) {
        self.blocked_on.remove(&waiter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_are_followed_to_their_end() {
        let table = WaitFor::default();
        let mut waits = table.lock();
        waits.set(1, 2);
        waits.set(2, 3);
        assert!(waits.leads_to(1, 3));
        assert!(!waits.leads_to(3, 1));
        assert!(waits.leads_to(4, 4), "a node waiting on itself is a cycle");
        waits.clear(2);
        assert!(!waits.leads_to(1, 3));
    }
}
