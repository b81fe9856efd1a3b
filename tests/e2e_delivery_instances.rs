//! Acknowledged delivery to a network whose receiving process is replaced
//! by a new instance (another `instance_id`): what beta accepted while the
//! old one was down goes to the new one, exactly once and in order.
//!
//! Alpha is a real `reflow-peer` process (its recorder logs each message);
//! beta is a peer in this process, so the test knows exactly which sends
//! were accepted while alpha was down. Two ways down: killed (SIGKILL) and
//! restarted on the same endpoint, and frozen (SIGSTOP) while a new
//! instance starts on another endpoint that beta is then given.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::harness::{self, Proc, TempDir, free_port, wait_until};
use reflow_distributed::DistributedConfig;
use reflow_distributed::bridge::{DeliveryMode, HoldOptions, SendOptions};
use reflow_distributed::distributed_network::DistributedNetwork;

const WAIT: Duration = Duration::from_secs(30);
/// Sent and acknowledged by the first instance.
const BEFORE: i64 = 100;
/// Sent while it is down.
const WHILE_DOWN: i64 = 200;

fn peer_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_reflow-peer"))
}

fn alpha(dir: &TempDir, instance: &str, port: u16) -> (Proc, String) {
    let toml = format!(
        "network_id = \"alpha\"\ninstance_id = \"{instance}\"\nbind_address = \"127.0.0.1\"\n\
         bind_port = {port}\nheartbeat_interval_ms = 200\nauto_connect = false\n"
    );
    let peer = harness::start_peer(peer_bin(), dir, instance, &toml, &[]);
    let endpoint = harness::bridge_address(&peer, WAIT);
    peer.wait_for(&format!("instance_id={instance},"), WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    (peer, endpoint)
}

fn beta() -> DistributedNetwork {
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Off)
        .env()
        .init();
    let mut config = DistributedConfig::new("beta");
    config.bridge.bind_address = "127.0.0.1".into();
    config.bridge.heartbeat_interval = Duration::from_millis(100);
    config.bridge.handshake_timeout = Duration::from_secs(2);
    config.bridge.reconnect.initial_delay = Duration::from_millis(20);
    config.bridge.reconnect.max_delay = Duration::from_millis(200);
    config.bridge.delivery.mode = DeliveryMode::Acknowledged;
    config.network.workers = 2;
    let beta = DistributedNetwork::new(config).expect("valid config");
    beta.start().expect("beta starts");
    beta
}

fn send(beta: &DistributedNetwork, numbers: std::ops::RangeInclusive<i64>, timeout: Duration) {
    let options = SendOptions::new(DeliveryMode::Acknowledged, timeout);
    for n in numbers {
        beta.send_to_remote_actor_with("alpha", "recorder", "in", n, options)
            .unwrap_or_else(|e| panic!("message {n} not accepted: {e}"));
    }
}

/// The integers `peer`'s recorder logged, in order.
fn recorded(peer: &Proc) -> Vec<i64> {
    let needle = "recorder.in: Integer(";
    peer.lines_after(0, needle)
        .iter()
        .filter_map(|l| {
            l[l.find(needle)? + needle.len()..]
                .split(')')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Waits until `peer` has logged as many numbers as `expected` (its log
/// lines reach this test through a pipe, which may lag behind an
/// acknowledgement), then checks they are `expected`, once each, in order.
fn recorded_exactly(peer: &Proc, expected: &[i64]) {
    until("every number logged", || recorded(peer).len() >= expected.len());
    assert_eq!(recorded(peer), expected, "exactly once, in order");
}

fn until(what: &str, mut check: impl FnMut() -> bool) {
    wait_until(WAIT, Duration::from_millis(10), || {
        check().then_some(()).ok_or_else(|| what.to_string())
    })
    .unwrap_or_else(|e| panic!("timed out: {e}"));
}

/// The first instance takes BEFORE messages and acknowledges them all.
fn first_instance(dir: &TempDir, port: u16) -> (Proc, DistributedNetwork) {
    let (alpha1, endpoint) = alpha(dir, "alpha-1", port);
    let beta = beta();
    beta.hold_connection(&endpoint, HoldOptions::expecting("alpha"))
        .unwrap();
    until("beta to reach alpha-1", || beta.is_connected_to("alpha"));
    send(&beta, 1..=BEFORE, WAIT);
    assert_eq!(beta.wait_acknowledged("alpha", WAIT), 0);
    recorded_exactly(&alpha1, &(1..=BEFORE).collect::<Vec<_>>());
    (alpha1, beta)
}

#[test]
fn messages_accepted_while_the_receiver_is_dead_go_to_its_restarted_instance_once() {
    let dir = TempDir::new("instances-restart");
    let port = free_port();
    let (mut alpha1, beta) = first_instance(&dir, port);
    alpha1.kill();
    until("beta to see alpha-1 gone", || !beta.is_connected_to("alpha"));
    // The link is held: the sends wait in the outbox, none needs to wait.
    send(&beta, BEFORE + 1..=BEFORE + WHILE_DOWN, Duration::ZERO);
    assert_eq!(beta.unacknowledged("alpha"), WHILE_DOWN as usize);

    let started = Instant::now();
    let (alpha2, _) = alpha(&dir, "alpha-2", port);
    assert_eq!(beta.wait_acknowledged("alpha", WAIT), 0);
    let replayed = started.elapsed();
    let expected: Vec<i64> = (BEFORE + 1..=BEFORE + WHILE_DOWN).collect();
    recorded_exactly(&alpha2, &expected);
    assert_eq!(recorded(&alpha1), (1..=BEFORE).collect::<Vec<_>>());
    println!(
        "alpha-1 killed, alpha-2 on the same port: {WHILE_DOWN} accepted while down, all acknowledged {} ms after alpha-2 started, once each, in order",
        replayed.as_millis()
    );
    beta.shutdown();
}

/// The state letter of process `pid` (`T`: stopped).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(") ").next()?.chars().next()
}

#[test]
fn messages_accepted_while_the_receiver_is_frozen_go_to_a_new_instance_elsewhere_once() {
    let dir = TempDir::new("instances-frozen");
    let (alpha1, beta) = first_instance(&dir, 0);
    // Frozen: its session stays up at beta, whatever is written to it waits
    // in its socket unread.
    alpha1.signal("STOP");
    until("alpha-1 to be stopped", || {
        process_state(alpha1.pid()) == Some('T')
    });
    send(&beta, BEFORE + 1..=BEFORE + WHILE_DOWN, WAIT);
    assert_eq!(beta.unacknowledged("alpha"), WHILE_DOWN as usize);

    let started = Instant::now();
    let (alpha2, endpoint2) = alpha(&dir, "alpha-2", 0);
    beta.hold_connection(&endpoint2, HoldOptions::expecting("alpha"))
        .unwrap();
    assert_eq!(beta.wait_acknowledged("alpha", WAIT), 0);
    let replayed = started.elapsed();
    let expected: Vec<i64> = (BEFORE + 1..=BEFORE + WHILE_DOWN).collect();
    recorded_exactly(&alpha2, &expected);
    assert_eq!(
        recorded(&alpha1),
        (1..=BEFORE).collect::<Vec<_>>(),
        "the frozen instance consumed nothing more"
    );
    println!(
        "alpha-1 frozen, alpha-2 on another port: {WHILE_DOWN} accepted while frozen, all acknowledged by alpha-2 {} ms after it started, once each, in order",
        replayed.as_millis()
    );
    beta.shutdown();
}
