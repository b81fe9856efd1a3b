//! Acknowledged delivery when a replay meets messages that arrived but were
//! not consumed yet: a link cut while an actor is stuck in a tick must not
//! turn its waiting messages into acknowledged ones, nor lose one the
//! receiver was still waiting to hand over. Two peers in one process, the
//! link through a relay that cuts it; every wait has a deadline.

mod relay_support;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reflow_distributed::DistributedConfig;
use reflow_distributed::Message;
use reflow_distributed::bridge::{DeliveryMode, HoldOptions, SendOptions};
use reflow_distributed::distributed_network::DistributedNetwork;
use reflow_distributed::runtime::{FnActor, Recorder, Threading};
use relay_support::Relay;
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(20);

fn config(network: &str) -> DistributedConfig {
    let mut config = DistributedConfig::new(network);
    config.bridge.bind_address = "127.0.0.1".into();
    config.bridge.heartbeat_interval = Duration::from_millis(100);
    config.bridge.reconnect.initial_delay = Duration::from_millis(20);
    config.bridge.reconnect.max_delay = Duration::from_millis(200);
    config.bridge.delivery.mode = DeliveryMode::Acknowledged;
    config.network.workers = 2;
    config
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An actor that holds its first tick until released, on its own thread,
/// and keeps the numbers it consumed.
fn stuck_actor(release: Arc<AtomicBool>, consumed: Arc<Mutex<Vec<i64>>>) -> FnActor {
    FnActor::new(&["in"], &[], move |ctx| {
        while !release.load(Ordering::SeqCst) && !ctx.is_shutting_down() {
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(n) = ctx.input("in").and_then(Message::as_i64) {
            consumed.lock().unwrap().push(n);
        }
        Ok(())
    })
    .with_threading(Threading::Dedicated)
}

struct Pair {
    alpha: DistributedNetwork,
    beta: DistributedNetwork,
    relay: Relay,
    release: Arc<AtomicBool>,
    consumed: Arc<Mutex<Vec<i64>>>,
}

/// alpha hosts `stuck` (inbox of `inbox`) and `recorder`, granting
/// `target_window` per target; beta holds a link to it through a relay.
fn pair(target_window: u32, inbox: usize) -> Pair {
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Off)
        .env()
        .init();
    let release = Arc::new(AtomicBool::new(false));
    let consumed = Arc::new(Mutex::new(Vec::new()));
    let mut alpha_config = config("alpha");
    alpha_config.bridge.delivery.target_window = target_window;
    let alpha = DistributedNetwork::new(alpha_config).unwrap();
    alpha
        .register_local_actor(
            "stuck",
            Box::new(stuck_actor(release.clone(), consumed.clone())),
            json!({ "inbox_capacity": inbox }),
        )
        .unwrap();
    alpha
        .register_local_actor("recorder", Box::new(Recorder::new(100)), json!({}))
        .unwrap();
    alpha.start().unwrap();
    let relay = Relay::start(alpha.local_addr().unwrap(), None);
    let beta = DistributedNetwork::new(config("beta")).unwrap();
    beta.start().unwrap();
    beta.hold_connection(&relay.endpoint(), HoldOptions::expecting("alpha"))
        .unwrap();
    wait_until("beta to reach alpha", || beta.is_connected_to("alpha"));
    Pair {
        alpha,
        beta,
        relay,
        release,
        consumed,
    }
}

fn send(beta: &DistributedNetwork, actor: &str, n: i64) {
    let options = SendOptions::new(DeliveryMode::Acknowledged, PATIENCE);
    beta.send_to_remote_actor_with("alpha", actor, "in", n, options)
        .unwrap_or_else(|e| panic!("message {n} for {actor}: {e}"));
}

/// Cuts the link and waits until beta has redialed through the relay.
fn cut(pair: &Pair) {
    let accepted = pair.relay.accepted();
    assert!(pair.relay.cut() >= 1);
    wait_until("a redial through the relay", || pair.relay.accepted() > accepted);
    wait_until("the link to be back", || pair.beta.is_connected_to("alpha"));
}

#[test]
fn a_replayed_message_still_waiting_in_an_inbox_stays_unacknowledged() {
    let pair = pair(64, 64);
    let beta = &pair.beta;
    for n in 1..=5 {
        send(beta, "stuck", n);
    }
    wait_until("the five at alpha", || {
        pair.alpha.bridge_stats().unwrap().messages_received >= 5
    });
    // The replay after the cut finds all five arrived and none consumed.
    cut(&pair);
    wait_until("the replay to arrive as duplicates", || {
        pair.alpha.bridge_stats().unwrap().duplicates_dropped >= 5
    });
    // A message to another actor is consumed at once; its acknowledgement
    // is written after the duplicates were handled, so it tells their state.
    send(beta, "recorder", 6);
    wait_until("the recorder's message to be acknowledged", || {
        beta.unacknowledged("alpha") <= 5
    });
    assert_eq!(
        beta.unacknowledged("alpha"),
        5,
        "messages waiting in the stuck actor's inbox were acknowledged as consumed"
    );
    pair.release.store(true, Ordering::SeqCst);
    assert_eq!(beta.wait_acknowledged("alpha", PATIENCE), 0);
    assert_eq!(*pair.consumed.lock().unwrap(), [1, 2, 3, 4, 5]);
    beta.shutdown();
    pair.alpha.shutdown();
}

#[test]
fn a_message_waiting_for_room_when_the_link_is_cut_is_not_lost() {
    // A window of 2 and an inbox of 1: the first message sits in the stuck
    // tick, the second is let into the inbox past its capacity (within the
    // window), the third waits for room; that is when the link is cut.
    let pair = pair(2, 1);
    let beta = &pair.beta;
    // Sent while the link is down, so no credit holds them back: the replay
    // sends all five at once.
    let mut relay = pair.relay;
    relay.shutdown();
    wait_until("the link to drop", || !beta.is_connected_to("alpha"));
    for n in 1..=5 {
        send(beta, "stuck", n);
    }
    let relay = Relay::start(pair.alpha.local_addr().unwrap(), None);
    beta.hold_connection(&relay.endpoint(), HoldOptions::expecting("alpha"))
        .unwrap();
    wait_until("three at alpha, the third waiting for room", || {
        pair.alpha.bridge_stats().unwrap().messages_received >= 3
    });
    let accepted = relay.accepted();
    assert!(relay.cut() >= 1);
    wait_until("a redial through the relay", || relay.accepted() > accepted);
    // The new session has taken the replay of the three that arrived: the
    // stuck actor is released only now.
    wait_until("the replay at alpha", || {
        pair.alpha.bridge_stats().unwrap().duplicates_dropped >= 3
    });
    pair.release.store(true, Ordering::SeqCst);
    assert_eq!(beta.wait_acknowledged("alpha", PATIENCE), 0);
    assert_eq!(*pair.consumed.lock().unwrap(), [1, 2, 3, 4, 5]);
    let stats = pair.alpha.bridge_stats().unwrap();
    assert_eq!(stats.dropped_delivery_timeout, 0, "nothing dropped");
    beta.shutdown();
    pair.alpha.shutdown();
}
