//! The sender's credits on one session: how many more messages each target
//! actor of the peer will take. The receiver grants `target_window` per
//! target at the start of a session and one more for each message consumed,
//! so a slow actor holds back only the senders to it.

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

struct State {
    /// Messages sent to each target and not yet granted back; a target at
    /// zero has no entry, so the map holds only targets with traffic in flight.
    used: HashMap<Arc<str>, u32>,
    closed: bool,
}

pub(crate) struct Credits {
    window: u32,
    state: Mutex<State>,
    granted: Condvar,
}

impl Credits {
    /// Credits of a session whose peer grants `window` per target, with
    /// `used` already spent (messages of the outbox about to be replayed).
    pub(crate) fn new(window: u32, used: HashMap<Arc<str>, u32>) -> Credits {
        Credits {
            window: window.max(1),
            state: Mutex::new(State { used, closed: false }),
            granted: Condvar::new(),
        }
    }

    /// Takes one credit for `target`, waiting until `deadline` (`None`: not
    /// at all).
    pub(crate) fn take(&self, target: &str, deadline: Option<Instant>) -> Result<(), NoCredit> {
        let mut state = lock(&self.state);
        loop {
            if state.closed {
                return Err(NoCredit::Closed);
            }
            let used = state.used.get(target).copied().unwrap_or(0);
            if used < self.window {
                match state.used.get_mut(target) {
                    Some(used) => *used += 1,
                    None => {
                        state.used.insert(Arc::from(target), 1);
                    }
                }
                return Ok(());
            }
            let left = deadline.map_or(std::time::Duration::ZERO, |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return Err(NoCredit::Full);
            }
            state = self
                .granted
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Adds messages already spent (the outbox's replay) to the counts.
    pub(crate) fn preload(&self, used: HashMap<Arc<str>, u32>) {
        let mut state = lock(&self.state);
        for (target, n) in used {
            *state.used.entry(target).or_default() += n;
        }
    }

    /// The receiver granted `grant` more for `target` (or a taken credit was
    /// not used).
    pub(crate) fn grant(&self, target: &str, grant: u64) {
        let mut state = lock(&self.state);
        if let Some(used) = state.used.get_mut(target) {
            *used = used.saturating_sub(u32::try_from(grant).unwrap_or(u32::MAX));
            if *used == 0 {
                state.used.remove(target);
            }
            self.granted.notify_all();
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
        let credits = Credits::new(2, HashMap::new());
        assert_eq!(credits.take("slow", None), Ok(()));
        assert_eq!(credits.take("slow", None), Ok(()));
        assert_eq!(credits.take("slow", None), Err(NoCredit::Full));
        assert_eq!(credits.take("fast", None), Ok(()));
        credits.grant("slow", 1);
        assert_eq!(credits.take("slow", None), Ok(()));
    }

    #[test]
    fn a_waiting_sender_wakes_on_a_grant_or_on_close() {
        let credits = Arc::new(Credits::new(1, HashMap::from([(Arc::from("t"), 1)])));
        let granter = {
            let credits = Arc::clone(&credits);
            std::thread::spawn(move || credits.grant("t", 1))
        };
        let deadline = Some(Instant::now() + Duration::from_secs(10));
        assert_eq!(credits.take("t", deadline), Ok(()));
        granter.join().unwrap();
        let closer = {
            let credits = Arc::clone(&credits);
            std::thread::spawn(move || credits.close())
        };
        assert_eq!(credits.take("t", deadline), Err(NoCredit::Closed));
        closer.join().unwrap();
    }

    #[test]
    fn grants_for_unknown_targets_and_oversized_grants_change_nothing_else() {
        let credits = Credits::new(1, HashMap::new());
        credits.grant("nobody", u64::MAX);
        assert_eq!(credits.take("t", None), Ok(()));
        credits.grant("t", u64::MAX);
        assert_eq!(credits.take("t", None), Ok(()));
        assert_eq!(credits.take("t", None), Err(NoCredit::Full));
    }
}
