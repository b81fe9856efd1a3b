//! The `bridge-heartbeat` thread: queues a heartbeat on every session's
//! control lane each interval (never behind data, never dropped), evicts
//! sessions that stayed silent too long (see `liveness.rs`), and joins bridge
//! threads that have finished.

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
    // Silence is checked a few times per interval so an eviction lands soon
    // after 3 intervals, not up to one interval late.
    let check = (interval / 4).clamp(Duration::from_millis(2), Duration::from_millis(250));
    let mut next_beat = Instant::now() + interval;
    loop {
        let wake = (Instant::now() + check).min(next_beat);
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
        evict_silent(hub);
        hub.threads.reap();
    }
}

fn evict_silent(hub: &Hub) {
    let now = hub.now();
    for session in hub.sessions.all() {
        if !session.is_silent(now) || !hub.sessions.remove_if_same(&session) {
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
}
