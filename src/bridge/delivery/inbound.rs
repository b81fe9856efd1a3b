//! The receiver's record of one sending network under acknowledged
//! delivery: which sequence numbers of its incarnation arrived (to drop
//! duplicates) and which of those are still waiting in an inbox (to
//! acknowledge only what was consumed). It outlives sessions, so a replay
//! after a link cut is recognised; it does not outlive the process, so after
//! a restart a replayed message whose acknowledgement the crash cut off is
//! delivered again (at most `ack_window` of them: docs/delivery.md).

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use crate::bridge::events::lock;
use crate::bridge::frame::MAX_ACK_EXCEPTIONS;

/// What to do with an arriving sequenced message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    New,
    /// Arrived before (a replay): settle it without delivering.
    Duplicate,
}

#[derive(Default)]
struct State {
    incarnation: u64,
    /// Every seq up to this arrived (the sender sends in order and replays
    /// only what is unacknowledged, so arrivals never skip one).
    received_through: u64,
    /// Arrived and not consumed yet.
    waiting: BTreeSet<u64>,
    /// Something was consumed since the last acknowledgement was built.
    unsaid: bool,
}

#[derive(Default)]
pub(crate) struct InboundLog {
    state: Mutex<State>,
    /// Held by the reader handing a sequenced message of this network over,
    /// from admitting it until it is in the inbox. A session that replaces
    /// one whose reader still waits for room waits its turn, so a later
    /// message never overtakes an admitted one.
    handover: Mutex<()>,
}

impl InboundLog {
    /// The turn to admit and hand over one sequenced message.
    pub(crate) fn handover(&self) -> MutexGuard<'_, ()> {
        lock(&self.handover)
    }

    pub(crate) fn admit(&self, network: &str, incarnation: u64, seq: u64) -> Admit {
        let mut state = lock(&self.state);
        if state.incarnation != incarnation {
            if state.incarnation != 0 {
                log::info!("Network {network} has a new sender incarnation: its sequence starts afresh");
            }
            *state = State {
                incarnation,
                ..State::default()
            };
        }
        if seq <= state.received_through {
            return Admit::Duplicate;
        }
        if state.received_through != 0 && seq != state.received_through + 1 {
            log::warn!(
                "Network {network} skipped sequence numbers {}..{} (messages the sender no longer holds)",
                state.received_through + 1,
                seq
            );
        }
        state.received_through = seq;
        state.waiting.insert(seq);
        Admit::New
    }

    /// The message `seq` of `incarnation` was consumed (or settled).
    pub(crate) fn consumed(&self, incarnation: u64, seq: u64) {
        let mut state = lock(&self.state);
        if state.incarnation == incarnation {
            state.waiting.remove(&seq);
            state.unsaid = true;
        }
    }

    /// Whether something was consumed that no acknowledgement has said yet
    /// (a message consumed after its session ended: the current session's
    /// next heartbeat says it).
    pub(crate) fn unsaid(&self) -> bool {
        lock(&self.state).unsaid
    }

    /// The acknowledgement to send now: `(through, except)`.
    pub(crate) fn ack(&self) -> (u64, Vec<u64>) {
        let mut state = lock(&self.state);
        state.unsaid = false;
        if state.waiting.len() <= MAX_ACK_EXCEPTIONS {
            return (state.received_through, state.waiting.iter().copied().collect());
        }
        // More waiting than one frame may list: acknowledge the unbroken prefix.
        let first = state.waiting.first().copied().unwrap_or(1);
        (first - 1, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_recognised_and_only_consumed_messages_are_acknowledged() {
        let log = InboundLog::default();
        assert_eq!(log.admit("beta", 9, 1), Admit::New);
        assert_eq!(log.admit("beta", 9, 2), Admit::New);
        assert_eq!(log.admit("beta", 9, 3), Admit::New);
        log.consumed(9, 1);
        log.consumed(9, 3);
        assert_eq!(log.ack(), (3, vec![2]));
        // A replay after a link cut: 2 and 3 again, then 4.
        assert_eq!(log.admit("beta", 9, 2), Admit::Duplicate);
        assert_eq!(log.admit("beta", 9, 3), Admit::Duplicate);
        assert_eq!(log.admit("beta", 9, 4), Admit::New);
        log.consumed(9, 2);
        assert_eq!(log.ack(), (4, vec![4]));
    }

    #[test]
    fn a_consumption_no_acknowledgement_has_said_is_remembered() {
        let log = InboundLog::default();
        assert_eq!(log.admit("beta", 9, 1), Admit::New);
        assert!(!log.unsaid());
        log.consumed(9, 1);
        assert!(log.unsaid());
        assert_eq!(log.ack(), (1, vec![]));
        assert!(!log.unsaid());
    }

    #[test]
    fn a_new_incarnation_starts_afresh_and_old_receipts_are_ignored() {
        let log = InboundLog::default();
        assert_eq!(log.admit("beta", 1, 5), Admit::New);
        assert_eq!(log.admit("beta", 2, 1), Admit::New);
        log.consumed(1, 5);
        assert_eq!(log.ack(), (1, vec![1]));
        log.consumed(2, 1);
        assert_eq!(log.ack(), (1, vec![]));
    }
}
