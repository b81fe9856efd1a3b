//! The liveness rule, without a clock of its own: callers hand in `now` and
//! the time the last byte arrived (both as time since one fixed epoch), so
//! tests drive it with a fake clock.
//!
//! A connection is dead when no byte at all has arrived for
//! `SILENT_INTERVALS` heartbeat intervals. Bytes, not frames: a large frame
//! trickling in over a slow link is a sign of life all the way through. While
//! the reader is inside a local delivery (the local inbox is full and the
//! reader waits for room, or it runs an actor's short turn itself) the
//! connection counts as alive: the peer is not silent, we are simply not
//! reading, and that wait is what gives the sender TCP backpressure instead
//! of an eviction or a replacement.

use std::time::Duration;

/// Heartbeat intervals of silence after which a connection is dead.
pub(crate) const SILENT_INTERVALS: u32 = 3;

/// True when a connection last heard from at `last_heard` is dead at `now`.
pub(crate) fn is_dead(last_heard: Duration, now: Duration, interval: Duration, delivering: bool) -> bool {
    !delivering && now.saturating_sub(last_heard) >= interval * SILENT_INTERVALS
}

/// True when a connection last heard from at `last_heard` has missed two
/// heartbeats by `now`, outside a local delivery: a live peer sends one
/// every interval, so such a connection is half-open even before it is
/// dead. A new connection of the same instance may take its place.
pub(crate) fn is_half_open(
    last_heard: Duration,
    now: Duration,
    interval: Duration,
    delivering: bool,
) -> bool {
    !delivering && now.saturating_sub(last_heard) >= interval * 2
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
        assert!(!is_dead(ms(1000), ms(1299), INTERVAL, false));
        assert!(is_dead(ms(1000), ms(1300), INTERVAL, false));
    }

    #[test]
    fn a_byte_mid_frame_resets_the_count() {
        // 100 KB at 20 KB/s: a byte every few ms, never a whole frame for 5 s.
        let mut last = ms(0);
        for t in (0..5000).step_by(50) {
            assert!(!is_dead(last, ms(t), INTERVAL, false), "dead at {t} ms");
            last = ms(t);
        }
    }

    #[test]
    fn a_blocked_delivery_keeps_the_connection_alive() {
        assert!(!is_dead(ms(10), ms(10_000), INTERVAL, true));
        assert!(is_dead(ms(10), ms(10_000), INTERVAL, false));
    }

    #[test]
    fn two_missed_heartbeats_are_half_open() {
        assert!(!is_half_open(ms(1000), ms(1199), INTERVAL, false));
        assert!(is_half_open(ms(1000), ms(1200), INTERVAL, false));
    }

    #[test]
    fn a_blocked_delivery_is_not_half_open() {
        assert!(!is_half_open(ms(10), ms(10_000), INTERVAL, true));
    }

    #[test]
    fn a_last_byte_after_now_is_not_silence() {
        assert!(!is_dead(ms(500), ms(100), INTERVAL, false));
    }
}
