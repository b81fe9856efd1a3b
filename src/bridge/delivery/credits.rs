//! The sender's credits on one session: how many more credits each target
//! actor of the peer will take. The receiver grants `target_window` per
//! target at the start of a session and gives back each message's cost when
//! it is consumed, so a slow actor holds back only the senders to it.
//!
//! A message costs one credit, or, when both sides announced `credit_bytes`
//! in the handshake, one more per whole `credit_bytes` of its DATA frame or
//! BATCH entry ([`cost`]): the window then bounds the bytes in flight to a target as well
//! as the messages.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::bridge::events::lock;

/// Why no credit was taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoCredit {
    /// The target's window was still used up at the deadline.
    Full,
    /// The session ended while waiting.
    Closed,
}

/// The credits a message whose DATA frame is `len` bytes costs: 1 + `len` /
/// `unit` when costs in bytes were agreed (`unit` is the receiver's
/// `credit_bytes`), else 1. Both sides compute it from the same length, so
/// what the sender spends is exactly what the receiver grants back.
pub(crate) fn cost(len: usize, unit: Option<u32>) -> u32 {
    match unit {
        Some(unit) if unit > 0 => {
            let extra = len / unit as usize;
            u32::try_from(extra).unwrap_or(u32::MAX - 1).saturating_add(1)
        }
        _ => 1,
    }
}

/// Credits the receiver grants back in one CREDIT frame, at most, before
/// its writer is woken for them: an eighth of the `window`, at least 1.
/// Small enough that a sender streaming to one actor never runs dry while a
/// batch is on its way.
pub(crate) fn credit_batch(window: u32) -> u32 {
    (window / 8).max(1)
}

/// Whether a message costing `cost` may go to a target with `used` credits
/// outstanding in a window of `window`: when it fits the window, or when
/// less than a [`credit_batch`] is outstanding. The second rule lets a
/// message that costs more than the rest of the window (or than the whole
/// window) go rather than wait for ever, and means a sender held back always
/// has at least a batch outstanding, whose grant is sent at once. So the
/// credits outstanding stay under `window`, or under a batch plus one
/// message. The receiver applies the same rule to what arrives.
pub(crate) fn fits(used: u64, cost: u32, window: u32) -> bool {
    used + u64::from(cost) <= u64::from(window) || used < u64::from(credit_batch(window))
}

struct State {
    /// Credits spent on each target and not yet granted back; a target at
    /// zero has no entry, so the map holds only targets with traffic in
    /// flight. Looked up by every send; its keys are the targets this side
    /// sends to, so a fast hasher (Cargo.toml, foldhash).
    used: HashMap<Arc<str>, u32, foldhash::fast::RandomState>,
    closed: bool,
    /// Senders waiting for a grant: a grant with none wakes nobody (a
    /// notify costs a system call even then).
    waiting: usize,
}

pub(crate) struct Credits {
    window: u32,
    unit: Option<u32>,
    state: Mutex<State>,
    granted: Condvar,
}

impl Credits {
    /// Credits of a session whose peer grants `window` per target, with
    /// `used` already spent (messages of the outbox about to be replayed);
    /// `unit` is the peer's `credit_bytes` when costs in bytes were agreed.
    pub(crate) fn new(window: u32, unit: Option<u32>, used: HashMap<Arc<str>, u32>) -> Credits {
        Credits {
            window: window.max(1),
            unit,
            state: Mutex::new(State {
                used: used.into_iter().collect(),
                closed: false,
                waiting: 0,
            }),
            granted: Condvar::new(),
        }
    }

    /// What a message whose DATA frame is `len` bytes costs on this session.
    pub(crate) fn cost_of(&self, len: usize) -> u32 {
        cost(len, self.unit)
    }

    /// Takes `cost` credits for `target`, waiting until `deadline` (`None`:
    /// not at all) for them to fit the window ([`fits`]).
    pub(crate) fn take(&self, target: &str, cost: u32, deadline: Option<Instant>) -> Result<(), NoCredit> {
        let mut state = lock(&self.state);
        loop {
            if state.closed {
                return Err(NoCredit::Closed);
            }
            match state.used.get_mut(target) {
                Some(used) if fits(u64::from(*used), cost, self.window) => {
                    *used = used.saturating_add(cost);
                    return Ok(());
                }
                None if fits(0, cost, self.window) => {
                    state.used.insert(Arc::from(target), cost);
                    return Ok(());
                }
                _ => {}
            }
            let left = deadline.map_or(std::time::Duration::ZERO, |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return Err(NoCredit::Full);
            }
            state.waiting += 1;
            state = self
                .granted
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            state.waiting -= 1;
        }
    }

    /// Adds credits already spent (the outbox's replay) to the counts.
    pub(crate) fn preload(&self, used: HashMap<Arc<str>, u32>) {
        let mut state = lock(&self.state);
        for (target, n) in used {
            let spent = state.used.entry(target).or_default();
            *spent = spent.saturating_add(n);
        }
    }

    /// The receiver granted `grant` more credits for `target` (or credits
    /// taken were not used).
    pub(crate) fn grant(&self, target: &str, grant: u64) {
        let mut state = lock(&self.state);
        if let Some(used) = state.used.get_mut(target) {
            *used = used.saturating_sub(u32::try_from(grant).unwrap_or(u32::MAX));
            if *used == 0 {
                state.used.remove(target);
            }
            if state.waiting > 0 {
                self.granted.notify_all();
            }
        }
    }

    /// The session ended: every waiter wakes with `Closed`.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.granted.notify_all();
    }

    /// The window the peer grants per target.
    pub(crate) fn window(&self) -> u32 {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_target_has_its_own_window() {
        let credits = Credits::new(2, None, HashMap::new());
        assert_eq!(credits.take("slow", 1, None), Ok(()));
        assert_eq!(credits.take("slow", 1, None), Ok(()));
        assert_eq!(credits.take("slow", 1, None), Err(NoCredit::Full));
        assert_eq!(credits.take("fast", 1, None), Ok(()));
        credits.grant("slow", 1);
        assert_eq!(credits.take("slow", 1, None), Ok(()));
    }

    #[test]
    fn a_waiting_sender_wakes_on_a_grant_or_on_close() {
        let credits = Arc::new(Credits::new(1, None, HashMap::from([(Arc::from("t"), 1)])));
        let granter = {
            let credits = Arc::clone(&credits);
            std::thread::spawn(move || credits.grant("t", 1))
        };
        let deadline = Some(Instant::now() + Duration::from_secs(10));
        assert_eq!(credits.take("t", 1, deadline), Ok(()));
        granter.join().unwrap();
        let closer = {
            let credits = Arc::clone(&credits);
            std::thread::spawn(move || credits.close())
        };
        assert_eq!(credits.take("t", 1, deadline), Err(NoCredit::Closed));
        closer.join().unwrap();
    }

    #[test]
    fn grants_for_unknown_targets_and_oversized_grants_change_nothing_else() {
        let credits = Credits::new(1, None, HashMap::new());
        credits.grant("nobody", u64::MAX);
        assert_eq!(credits.take("t", 1, None), Ok(()));
        credits.grant("t", u64::MAX);
        assert_eq!(credits.take("t", 1, None), Ok(()));
        assert_eq!(credits.take("t", 1, None), Err(NoCredit::Full));
    }

    #[test]
    fn a_message_costs_one_credit_plus_one_per_whole_unit_of_its_frame() {
        assert_eq!(cost(0, Some(8192)), 1);
        assert_eq!(cost(8191, Some(8192)), 1);
        assert_eq!(cost(8192, Some(8192)), 2);
        assert_eq!(cost(65_600, Some(2048)), 33);
        // Without an agreed unit (an older peer) every message costs one.
        assert_eq!(cost(65_600, None), 1);
        assert_eq!(cost(65_600, Some(0)), 1);
        assert_eq!(cost(usize::MAX, Some(1)), u32::MAX);
    }

    #[test]
    fn costs_bound_the_bytes_outstanding_and_small_messages_get_the_whole_window() {
        const UNIT: u32 = 1024;
        let credits = Credits::new(64, Some(UNIT), HashMap::new());
        let big = credits.cost_of(10_000);
        assert_eq!(big, 10);
        let mut taken = 0;
        while credits.take("big", big, None).is_ok() {
            taken += 1;
        }
        assert_eq!(taken, 6, "six messages of 10,000 bytes fit 64 credits of 1 KiB");
        assert!(taken * 10_000 <= 64 * UNIT as usize);
        let small = credits.cost_of(300);
        assert_eq!(small, 1);
        let mut taken = 0;
        while credits.take("small", small, None).is_ok() {
            taken += 1;
        }
        assert_eq!(taken, 64);
        // Granting a big message's cost back makes room for exactly one more.
        credits.grant("big", u64::from(big));
        assert_eq!(credits.take("big", big, None), Ok(()));
        assert_eq!(credits.take("big", big, None), Err(NoCredit::Full));
    }

    #[test]
    fn a_message_larger_than_the_window_goes_when_little_is_outstanding() {
        let credits = Credits::new(8, Some(1024), HashMap::new());
        let huge = credits.cost_of(100_000);
        assert!(huge > 8);
        assert_eq!(credits.take("t", huge, None), Ok(()));
        assert_eq!(credits.take("t", 1, None), Err(NoCredit::Full));
        credits.grant("t", u64::from(huge));
        assert_eq!(credits.take("t", 1, None), Ok(()));
        assert_eq!(
            credits.take("t", huge, None),
            Err(NoCredit::Full),
            "not past others"
        );
        assert!(fits(0, u32::MAX, 1));
        assert!(!fits(1, 8, 8));
        assert!(fits(1, 7, 8));
        // Under a batch (an eighth) outstanding, a large message still goes.
        assert!(fits(7, 60, 64));
        assert!(!fits(8, 60, 64));
    }

    #[test]
    fn credits_are_batched_by_an_eighth_of_the_window_and_never_by_zero() {
        assert_eq!(credit_batch(0), 1);
        assert_eq!(credit_batch(1), 1);
        assert_eq!(credit_batch(15), 1);
        assert_eq!(credit_batch(16), 2);
        assert_eq!(credit_batch(64), 8);
    }

    #[test]
    fn a_replay_preloads_its_costs() {
        let credits = Credits::new(8, Some(1024), HashMap::from([(Arc::from("t"), 6)]));
        assert_eq!(credits.take("t", 3, None), Err(NoCredit::Full));
        assert_eq!(credits.take("t", 2, None), Ok(()));
        credits.preload(HashMap::from([(Arc::from("u"), 8)]));
        assert_eq!(credits.take("u", 1, None), Err(NoCredit::Full));
    }
}
