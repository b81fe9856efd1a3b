//! The `bridge-heartbeat` thread: queues a heartbeat on every session's
//! control lane each interval (never behind data, never dropped), evicts
//! sessions the moment their silence reaches the limit (see `liveness.rs`),
//! and joins bridge threads that have finished.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::events::BridgeEvent;
use super::hub::Hub;
use super::liveness::SILENT_INTERVALS;
use super::session::CloseReason;
use super::stats::bump;

/// Runs until `stop` is closed.
pub(crate) fn run(hub: &Arc<Hub>, stop: &Receiver<()>) {
    let interval = hub.config.heartbeat_interval.max(Duration::from_millis(1));
    let mut next_beat = Instant::now() + interval;
    loop {
        // Wake for the next heartbeat, or sooner when a session falls
        // silent for good before it: an eviction lands when the silence
        // reaches 3 intervals, not at the next round of checks. A session
        // that starts meanwhile has 3 intervals ahead of it, so the next
        // heartbeat is early enough to find its deadline.
        let wake = match evict_silent(hub) {
            Some(left) => (Instant::now() + left.max(Duration::from_millis(1))).min(next_beat),
            None => next_beat,
        };
        match stop.recv_deadline(wake) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        if now >= next_beat {
            for session in hub.sessions.all() {
                session.control(|c| c.heartbeat = true);
            }
            next_beat = (next_beat + interval).max(now);
        }
        hub.threads.reap();
    }
}

/// Evicts every session silent for [`SILENT_INTERVALS`]; returns how long
/// until the next of the others would be.
fn evict_silent(hub: &Hub) -> Option<Duration> {
    let now = hub.now();
    let mut soonest: Option<Duration> = None;
    for session in hub.sessions.all() {
        if !session.is_silent(now) {
            if let Some(left) = session.silent_in(now) {
                soonest = Some(soonest.map_or(left, |s| s.min(left)));
            }
            continue;
        }
        if !hub.sessions.remove_if_same(&session) {
            continue;
        }
        bump(&hub.stats.evictions, 1);
        log::info!(
            "Evicted connection to network: {} (no byte for {SILENT_INTERVALS} heartbeat intervals)",
            session.network_id()
        );
        hub.events.emit(BridgeEvent::Evicted {
            network_id: session.network_id().to_string(),
        });
        session.abort(CloseReason::Evicted);
    }
    soonest
}
