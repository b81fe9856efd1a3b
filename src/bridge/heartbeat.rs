//! The `bridge-heartbeat` thread: sends a heartbeat on every connection each
//! interval, evicts connections that stayed silent too long (see
//! `liveness.rs`), and joins bridge threads that have finished.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::connection::{CloseReason, Outgoing};
use super::core::Shared;
use super::events::BridgeEvent;
use super::liveness::SILENT_INTERVALS;
use super::protocol::heartbeat_text;
use super::stats::bump;

/// Runs until `stop` is closed.
pub(crate) fn run(shared: &Arc<Shared>, stop: &Receiver<()>) {
    let interval = shared.config.heartbeat_interval.max(Duration::from_millis(1));
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
            send_heartbeats(shared);
            next_beat = (next_beat + interval).max(now);
        }
        evict_silent(shared);
        shared.threads.reap();
    }
}

fn send_heartbeats(shared: &Shared) {
    let text = heartbeat_text(&shared.identity.network_id);
    for connection in shared.registry.all() {
        // A full queue already carries frames the peer will hear from.
        let _ = connection.try_enqueue(Outgoing {
            text: text.clone(),
            is_message: false,
        });
    }
}

fn evict_silent(shared: &Shared) {
    let now = shared.now();
    for connection in shared.registry.all() {
        if !connection.liveness().is_dead(now) || !shared.registry.remove_if_same(&connection) {
            continue;
        }
        bump(&shared.stats.evictions, 1);
        log::info!(
            "Evicted connection to network: {} (silent for {SILENT_INTERVALS} heartbeat intervals)",
            connection.network_id
        );
        shared.events.emit(BridgeEvent::Evicted {
            network_id: connection.network_id.clone(),
        });
        connection.abort(CloseReason::Evicted);
    }
}
