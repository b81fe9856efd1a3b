//! Heartbeats and eviction: a frozen peer is evicted within 3 heartbeat
//! intervals; a live but idle peer is not; a peer whose local inbox is full
//! (the sink blocks) is not evicted, and the sender's memory stays bounded.

mod bridge_support;

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bridge_support::*;
use crossbeam_channel::unbounded;
use reflow_distributed::Message;
use reflow_distributed::bridge::{
    BridgeConfig, BridgeError, BridgeEvent, DeliveryError, InboundSink, RemoteMessage,
};

const BEAT: Duration = Duration::from_millis(100);

fn beating_config() -> BridgeConfig {
    let mut config = quick_config();
    config.heartbeat_interval = BEAT;
    config
}

#[test]
fn a_frozen_peer_is_evicted_within_three_intervals() {
    let alpha = start_peer("alpha", None, beating_config());
    let (ws, reply) = raw_peer(alpha.bridge.local_addr(), "frozen", None);
    let connected_at = Instant::now();
    assert!(reply.contains(r#""success":true"#), "{reply}");
    assert!(alpha.bridge.is_connected_to("frozen"));

    // The raw peer now neither reads nor writes.
    let evicted = wait_event(&alpha.events, PATIENCE, |e| {
        matches!(e, BridgeEvent::Evicted { .. })
    });
    let elapsed = connected_at.elapsed();
    assert_eq!(
        evicted,
        Some(BridgeEvent::Evicted {
            network_id: "frozen".into()
        })
    );
    assert!(elapsed >= BEAT * 3 - BEAT / 2, "evicted too early: {elapsed:?}");
    assert!(elapsed <= BEAT * 3 + BEAT * 2, "evicted too late: {elapsed:?}");
    assert!(!alpha.bridge.is_connected_to("frozen"));
    assert_eq!(alpha.bridge.stats().evictions, 1);
    drop(ws);
}

#[test]
fn idle_peers_that_beat_are_kept() {
    let alpha = start_peer("alpha", None, beating_config());
    let beta = start_peer("beta", None, beating_config());
    beta.bridge.connect(&alpha.endpoint()).unwrap();
    // Ten intervals of idleness: heartbeats alone keep both sides alive.
    let evicted = wait_event(&alpha.events, BEAT * 10, |e| {
        matches!(e, BridgeEvent::Evicted { .. })
    });
    assert_eq!(evicted, None);
    assert!(alpha.bridge.is_connected_to("beta") && beta.bridge.is_connected_to("alpha"));
    assert_eq!(beta.bridge.stats().evictions, 0);
}

/// A sink whose deliveries wait until the gate opens (a full local inbox).
struct GateSink {
    open: Mutex<bool>,
    opened: Condvar,
    delivered: crossbeam_channel::Sender<RemoteMessage>,
}

impl GateSink {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl InboundSink for GateSink {
    fn deliver(&self, message: RemoteMessage) -> Result<(), DeliveryError> {
        let guard = self.open.lock().unwrap();
        let (_guard, _) = self
            .opened
            .wait_timeout_while(guard, PATIENCE * 3, |open| !*open)
            .unwrap();
        let _ = self.delivered.send(message);
        Ok(())
    }
}

#[test]
fn a_blocked_receiver_is_not_evicted_and_the_sender_queue_stays_bounded() {
    let (tx, inbox) = unbounded();
    let gate = Arc::new(GateSink {
        open: Mutex::new(false),
        opened: Condvar::new(),
        delivered: tx,
    });
    let mut config = beating_config();
    config.delivery_timeout = PATIENCE * 3;
    // A window wider than the queue: this case is about the data lane
    // filling behind a blocked reader (credits are tests/delivery.rs's).
    config.delivery.target_window = 1 << 20;
    let alpha = start_with_sink("alpha", None, config, gate.clone(), inbox);
    let mut sender_config = beating_config();
    sender_config.outbound_queue_capacity = 16;
    let beta = start_peer("beta", None, sender_config);
    beta.bridge.connect(&alpha.endpoint()).unwrap();

    // 64 KiB payloads fill the socket buffers, then beta's bounded queue.
    let payload = "x".repeat(64 * 1024);
    let mut accepted = 0usize;
    let deadline = Instant::now() + PATIENCE;
    let full = loop {
        let message = RemoteMessage::new(
            "beta",
            "unknown",
            "alpha",
            "recorder",
            "in",
            Message::string(payload.as_str()),
        );
        match beta
            .bridge
            .send(message, Duration::from_millis(200))
            .map_err(|e| e.into_parts().0)
        {
            Ok(()) => accepted += 1,
            Err(BridgeError::QueueFull { capacity, .. }) => break capacity,
            Err(other) => panic!("unexpected {other}"),
        }
        assert!(
            Instant::now() < deadline,
            "queue never filled after {accepted} messages"
        );
    };
    assert_eq!(full, 16);

    // Well past 3 intervals with alpha's reader blocked: nobody is evicted.
    let evicted = wait_event(&alpha.events, BEAT * 8, |e| {
        matches!(e, BridgeEvent::Evicted { .. })
    });
    assert_eq!(evicted, None);
    assert!(
        beta.events
            .try_iter()
            .all(|e| !matches!(e, BridgeEvent::Evicted { .. }))
    );
    assert!(alpha.bridge.is_connected_to("beta") && beta.bridge.is_connected_to("alpha"));

    // Room again: everything that was accepted arrives.
    gate.open();
    for _ in 0..accepted {
        let got = alpha
            .inbox
            .recv_timeout(PATIENCE)
            .expect("queued message arrives");
        assert_eq!(got.payload.as_str().map(str::len), Some(payload.len()));
    }
    assert_eq!(alpha.bridge.stats().dropped_delivery_timeout, 0);
    assert_eq!(alpha.bridge.stats().evictions + beta.bridge.stats().evictions, 0);
}

/// Refuses messages for `slow` after a delivery timeout, accepts the rest.
struct SlowActorSink {
    timeout: Duration,
    delivered: crossbeam_channel::Sender<RemoteMessage>,
}

impl InboundSink for SlowActorSink {
    fn deliver(&self, message: RemoteMessage) -> Result<(), DeliveryError> {
        match message.target_actor.as_str() {
            "slow" => {
                std::thread::sleep(self.timeout);
                Err(DeliveryError::Full)
            }
            "ghost" => Err(DeliveryError::UnknownActor("ghost".into())),
            _ => {
                let _ = self.delivered.send(message);
                Ok(())
            }
        }
    }
}

#[test]
fn a_delivery_that_times_out_drops_one_message_and_keeps_the_connection() {
    let (tx, inbox) = unbounded();
    let mut config = beating_config();
    config.delivery_timeout = BEAT * 6;
    let sink = Arc::new(SlowActorSink {
        timeout: config.delivery_timeout,
        delivered: tx,
    });
    let alpha = start_with_sink("alpha", None, config, sink, inbox);
    let beta = start_peer("beta", None, beating_config());
    beta.bridge.connect(&alpha.endpoint()).unwrap();

    let to = |actor: &str, text: &str| {
        RemoteMessage::new("beta", "unknown", "alpha", actor, "in", Message::string(text))
    };
    beta.bridge.send(to("slow", "dropped"), PATIENCE).unwrap();
    beta.bridge.send(to("ghost", "dropped"), PATIENCE).unwrap();
    beta.bridge.send(to("recorder", "kept"), PATIENCE).unwrap();

    let got = alpha.inbox.recv_timeout(PATIENCE).expect("later message arrives");
    assert_eq!(got.payload, Message::string("kept"));
    let stats = alpha.bridge.stats();
    assert_eq!(
        (stats.dropped_delivery_timeout, stats.dropped_unknown_target),
        (1, 1)
    );
    assert_eq!(stats.evictions, 0);
    assert!(alpha.bridge.is_connected_to("beta"));
}
