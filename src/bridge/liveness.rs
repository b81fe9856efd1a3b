//! Liveness of one connection, without a clock of its own: every call is
//! handed `now` (time since any fixed epoch), so tests drive it with a fake one.
//!
//! A connection is dead when nothing has arrived for `SILENT_INTERVALS`
//! heartbeat intervals. While the reader is inside a local delivery (the
//! local inbox is full and the reader waits for room), the connection counts
//! as alive: the peer is not silent, we are simply not reading. That wait is
//! what gives the sender TCP backpressure instead of an eviction.

use std::time::Duration;

/// Heartbeat intervals of silence after which a connection is dead.
pub(crate) const SILENT_INTERVALS: u32 = 3;

#[derive(Debug, Clone)]
pub(crate) struct Liveness {
    interval: Duration,
    last_heard: Duration,
    delivering: bool,
}

impl Liveness {
    /// A connection that was last heard from at `now` (its handshake).
    pub(crate) fn new(interval: Duration, now: Duration) -> Self {
        Liveness {
            interval,
            last_heard: now,
            delivering: false,
        }
    }

    /// A frame (of any kind) arrived.
    pub(crate) fn heard(&mut self, now: Duration) {
        self.last_heard = self.last_heard.max(now);
    }

    /// The reader hands a message to the local network and may block.
    pub(crate) fn delivery_started(&mut self, now: Duration) {
        self.heard(now);
        self.delivering = true;
    }

    /// The local network took (or refused) the message; silence counts again from now.
    pub(crate) fn delivery_finished(&mut self, now: Duration) {
        self.heard(now);
        self.delivering = false;
    }

    /// How long the peer may stay silent.
    pub(crate) fn limit(&self) -> Duration {
        self.interval * SILENT_INTERVALS
    }

    /// True when the connection should be evicted.
    pub(crate) fn is_dead(&self, now: Duration) -> bool {
        !self.delivering && now.saturating_sub(self.last_heard) >= self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(100);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn silent_for_three_intervals_is_dead() {
        let live = Liveness::new(INTERVAL, ms(1000));
        assert!(!live.is_dead(ms(1299)));
        assert!(live.is_dead(ms(1300)));
    }

    #[test]
    fn any_frame_resets_the_count() {
        let mut live = Liveness::new(INTERVAL, ms(0));
        live.heard(ms(250));
        assert!(!live.is_dead(ms(500)));
        assert!(live.is_dead(ms(550)));
    }

    #[test]
    fn a_blocked_delivery_keeps_the_connection_alive() {
        let mut live = Liveness::new(INTERVAL, ms(0));
        live.delivery_started(ms(10));
        assert!(!live.is_dead(ms(10_000)));
        live.delivery_finished(ms(10_000));
        assert!(!live.is_dead(ms(10_299)));
        assert!(live.is_dead(ms(10_300)));
    }

    #[test]
    fn a_late_report_never_moves_time_backwards() {
        let mut live = Liveness::new(INTERVAL, ms(500));
        live.heard(ms(100));
        assert!(!live.is_dead(ms(799)));
    }
}
