//! `DistributedNetwork` end to end inside one process: two (or three) peers,
//! each with its own local network and bridge, over real loopback sockets
//! (port 0, 100 ms heartbeats). Every wait has a deadline.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use reflow_distributed::DistributedConfig;
use reflow_distributed::Message;
use reflow_distributed::bridge::{BridgeError, BridgeEvent};
use reflow_distributed::distributed_network::{DistributedError, DistributedNetwork};
use reflow_distributed::runtime::{FnActor, NetworkEvent, Recorder, RecorderLog, Threading};
use serde_json::json;

/// Generous bound for what should happen quickly, even on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(10);
const BEAT: Duration = Duration::from_millis(100);

fn init_logging() {
    // Silent unless RUST_LOG is set (e.g. RUST_LOG=debug).
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Off)
        .env()
        .with_module_level("tungstenite", log::LevelFilter::Info)
        .init();
}

fn config(network: &str, token: Option<&str>) -> DistributedConfig {
    let mut config = DistributedConfig::new(network);
    config.auth_token = token.map(reflow_distributed::Secret::from);
    config.bridge.bind_address = "127.0.0.1".into();
    config.bridge.bind_port = 0;
    config.bridge.heartbeat_interval = BEAT;
    config.bridge.connect_timeout = Duration::from_secs(3);
    config.bridge.handshake_timeout = Duration::from_secs(3);
    config.network.workers = 2;
    config
}

/// A peer that hosts a `recorder` node, not started yet.
struct Peer {
    net: DistributedNetwork,
    recorder: Arc<RecorderLog>,
}

impl Peer {
    fn new(config: DistributedConfig) -> Peer {
        init_logging();
        let net = DistributedNetwork::new(config).expect("valid config");
        let recorder = Recorder::new(Recorder::DEFAULT_HISTORY);
        let log = recorder.log();
        net.register_local_actor("recorder", Box::new(recorder), json!({}))
            .unwrap();
        Peer { net, recorder: log }
    }

    fn started(config: DistributedConfig) -> Peer {
        let peer = Peer::new(config);
        peer.net.start().expect("peer starts");
        peer
    }

    fn endpoint(&self) -> String {
        self.net.local_addr().expect("started").to_string()
    }

    /// Waits until the recorder holds `text` on `port`.
    fn expect(&self, port: &str, text: &str) {
        let found = self.recorder.wait_until(PATIENCE, |records| {
            records
                .iter()
                .any(|r| r.port == port && r.message == Message::string(text))
        });
        assert!(
            found,
            "{}: no {text:?} on recorder.{port}; got {:?}",
            self.net.network_id(),
            self.recorder.records()
        );
    }
}

/// Polls `condition` until it holds or PATIENCE passes.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `dialer` dials `acceptor`; returns once both sides list the connection.
fn link(dialer: &Peer, acceptor: &Peer) {
    let network = dialer.net.connect_to_network(&acceptor.endpoint()).unwrap();
    assert_eq!(network, acceptor.net.network_id());
    let dialer_id = dialer.net.network_id().to_string();
    wait_until(&format!("{network} to list {dialer_id}"), || {
        acceptor.net.is_connected_to(&dialer_id)
    });
}

/// The first `ActorFailed` event within PATIENCE.
fn next_failure(events: &Receiver<NetworkEvent>) -> Option<(String, String)> {
    let deadline = Instant::now() + PATIENCE;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(NetworkEvent::ActorFailed { node, error }) => return Some((node, error)),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

fn evicted(events: &Receiver<BridgeEvent>) -> bool {
    events
        .try_iter()
        .any(|e| matches!(e, BridgeEvent::Evicted { .. }))
}

// ---------------------------------------------------------------- delivery

#[test]
fn send_to_actor_through_proxies_delivers_both_ways() {
    let alpha = Peer::new(config("alpha", None));
    let beta = Peer::new(config("beta", None));
    // beta's proxy exists before start, alpha's only after.
    let to_alpha = beta.net.register_remote_actor("recorder", "alpha").unwrap();
    assert_eq!(to_alpha, "recorder@alpha");
    alpha.net.start().unwrap();
    beta.net.start().unwrap();
    let to_beta = alpha.net.register_remote_actor("recorder", "beta").unwrap();
    assert_eq!(to_beta, "recorder@beta");
    // Registering the same proxy again returns the existing node.
    assert_eq!(
        alpha.net.register_remote_actor("recorder", "beta").unwrap(),
        "recorder@beta"
    );
    link(&beta, &alpha);

    beta.net
        .send_to_actor("recorder@alpha", "in", "from-beta")
        .unwrap();
    alpha
        .net
        .send_to_actor("recorder@beta", "in", "from-alpha")
        .unwrap();
    alpha.expect("in", "from-beta");
    beta.expect("in", "from-alpha");

    // A proxy forwards on whatever port it is sent to.
    beta.net
        .send_to_actor("recorder@alpha", "audit", "on-another-port")
        .unwrap();
    alpha.expect("audit", "on-another-port");
}

#[test]
fn proxies_are_targets_of_graph_connections() {
    let alpha = Peer::new(config("alpha", None));
    let beta = Peer::new(config("beta", None));

    // beta, before start: shout.out -> recorder@alpha.in
    let shout = FnActor::new(&["in"], &["out"], |ctx| {
        let text = ctx.input("in").and_then(|m| m.as_str()).ok_or("a String")?;
        let loud = text.to_uppercase();
        ctx.emit("out", loud)
    });
    beta.net
        .register_local_actor("shout", Box::new(shout), json!({}))
        .unwrap();
    let proxy = beta.net.register_remote_actor("recorder", "alpha").unwrap();
    beta.net
        .get_local_network()
        .connect("shout", "out", &proxy, "in")
        .unwrap();
    alpha.net.start().unwrap();
    beta.net.start().unwrap();

    // alpha, after start: relay.out -> recorder@beta.in
    let proxy = alpha.net.register_remote_actor("recorder", "beta").unwrap();
    let local = alpha.net.get_local_network();
    local.add_node("relay", "passthrough", json!({})).unwrap();
    local.connect("relay", "out", &proxy, "in").unwrap();

    link(&beta, &alpha);
    for i in 0..20 {
        beta.net
            .send_to_actor("shout", "in", format!("hello {i}"))
            .unwrap();
        alpha
            .net
            .send_to_actor("relay", "in", format!("back {i}"))
            .unwrap();
    }
    let texts = |log: &RecorderLog| -> Vec<String> {
        log.records()
            .iter()
            .filter_map(|r| r.message.as_str().map(str::to_string))
            .collect()
    };
    assert!(alpha.recorder.wait_until(PATIENCE, |r| r.len() == 20));
    assert!(beta.recorder.wait_until(PATIENCE, |r| r.len() == 20));
    // One path each way, one connection: order is kept.
    let expected: Vec<String> = (0..20).map(|i| format!("HELLO {i}")).collect();
    assert_eq!(texts(&alpha.recorder), expected);
    let expected: Vec<String> = (0..20).map(|i| format!("back {i}")).collect();
    assert_eq!(texts(&beta.recorder), expected);
}

#[test]
fn send_to_remote_actor_delivers_both_ways() {
    let alpha = Peer::started(config("alpha", None));
    let beta = Peer::started(config("beta", None));
    link(&beta, &alpha);

    beta.net
        .send_to_remote_actor("alpha", "recorder", "in", "direct-from-beta")
        .unwrap();
    alpha
        .net
        .send_to_remote_actor("beta", "recorder", "in", 42i64)
        .unwrap();
    alpha.expect("in", "direct-from-beta");
    let got = beta
        .recorder
        .wait_until(PATIENCE, |r| r.iter().any(|r| r.message == Message::from(42i64)));
    assert!(got, "beta got {:?}", beta.recorder.records());
    // Both sides wrote one message and read one.
    let (a, b) = (
        alpha.net.bridge_stats().unwrap(),
        beta.net.bridge_stats().unwrap(),
    );
    assert_eq!((a.messages_sent, a.messages_received), (1, 1));
    assert_eq!((b.messages_sent, b.messages_received), (1, 1));
}

// ---------------------------------------------------------------- failures

#[test]
fn sending_to_a_network_without_a_connection_fails_with_its_name() {
    let beta = Peer::new(config("beta", None));
    // Before start there is no bridge at all.
    let err = beta
        .net
        .send_to_remote_actor("alpha", "recorder", "in", "too-early")
        .unwrap_err();
    assert!(matches!(err, DistributedError::NotStarted), "{err}");

    beta.net.start().unwrap();
    let err = beta
        .net
        .send_to_remote_actor("alpha", "recorder", "in", "nobody-there")
        .unwrap_err();
    assert_eq!(err.to_string(), "No connection to network: alpha");
    assert!(matches!(
        err,
        DistributedError::NotSent(ref e) if matches!(e.error(), BridgeError::NoConnection(n) if n == "alpha")
    ));

    // `send_to_actor` on a proxy sends from the calling thread, so the caller
    // gets the same error.
    let proxy = beta.net.register_remote_actor("recorder", "alpha").unwrap();
    let err = beta.net.send_to_actor(&proxy, "in", "via-proxy").unwrap_err();
    assert_eq!(err.to_string(), "No connection to network: alpha");

    // Fed through a graph connection, the proxy node fails to forward and
    // reports it as an actor failure naming the network. The message is dropped.
    let events = beta.net.get_local_network().events();
    let feeder = FnActor::new(&["in"], &["out"], |ctx| {
        let message = ctx.take_input("in").ok_or("no input")?;
        ctx.emit("out", message)
    });
    let local = beta.net.get_local_network();
    local.add_actor("feeder", Box::new(feeder), json!({})).unwrap();
    local.connect("feeder", "out", &proxy, "in").unwrap();
    local.send_to_actor("feeder", "in", "via-graph").unwrap();
    let (node, error) = next_failure(&events).expect("the proxy reports the failure");
    assert_eq!(node, "recorder@alpha");
    assert!(
        error.contains("No connection to network: alpha"),
        "unexpected error: {error}"
    );
}

#[test]
fn inbound_messages_for_unknown_actors_or_ports_are_dropped_and_the_link_stays() {
    let alpha = Peer::new(config("alpha", None));
    // `strict` has one inport, `in`; the recorder accepts any port name.
    let strict = FnActor::new(&["in"], &[], |_| Ok(()));
    alpha
        .net
        .register_local_actor("strict", Box::new(strict), json!({}))
        .unwrap();
    alpha.net.start().unwrap();
    let beta = Peer::started(config("beta", None));
    link(&beta, &alpha);
    let alpha_events = alpha.net.bridge_events().unwrap();
    let beta_events = beta.net.bridge_events().unwrap();

    // Queued fine on beta's side: beta cannot know what alpha hosts.
    beta.net
        .send_to_remote_actor("alpha", "ghost", "in", "to-nobody")
        .unwrap();
    beta.net
        .send_to_remote_actor("alpha", "strict", "nope", "to-no-port")
        .unwrap();
    beta.net
        .send_to_remote_actor("alpha", "recorder", "in", "still-here")
        .unwrap();

    alpha.expect("in", "still-here");
    let stats = alpha.net.bridge_stats().unwrap();
    assert_eq!(stats.dropped_unknown_target, 2, "{stats:?}");
    assert_eq!(stats.messages_received, 3, "{stats:?}");
    assert_eq!(stats.malformed_frames, 0, "{stats:?}");
    assert_eq!(alpha.recorder.len(), 1);
    assert!(alpha.net.is_connected_to("beta") && beta.net.is_connected_to("alpha"));
    for events in [&alpha_events, &beta_events] {
        assert!(
            events
                .try_iter()
                .all(|e| !matches!(e, BridgeEvent::Disconnected { .. } | BridgeEvent::Evicted { .. })),
            "the connection was not dropped"
        );
    }
    // And the same connection keeps working in the other direction.
    alpha
        .net
        .send_to_remote_actor("beta", "recorder", "in", "reply")
        .unwrap();
    beta.expect("in", "reply");
}

// ---------------------------------------------------------------- auth

#[test]
fn matching_tokens_connect() {
    let alpha = Peer::started(config("alpha", Some("shared-secret")));
    let beta = Peer::started(config("beta", Some("shared-secret")));
    link(&beta, &alpha);
    beta.net
        .send_to_remote_actor("alpha", "recorder", "in", "authorised")
        .unwrap();
    alpha.expect("in", "authorised");
    assert_eq!(alpha.net.bridge_stats().unwrap().refused_handshakes, 0);
}

#[test]
fn a_different_token_is_refused() {
    let alpha = Peer::started(config("alpha", Some("shared-secret")));
    let mallory = Peer::started(config("mallory", Some("wrong-secret")));
    let err = mallory.net.connect_to_network(&alpha.endpoint()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("handshake refused: auth_token mismatch"),
        "{err}"
    );
    wait_until("alpha to count the refusal", || {
        alpha.net.bridge_stats().unwrap().refused_handshakes == 1
    });
    assert_eq!(alpha.net.connection_count(), 0);
    assert!(!mallory.net.is_connected_to("alpha"));
    let err = mallory
        .net
        .send_to_remote_actor("alpha", "recorder", "in", "let-me-in")
        .unwrap_err();
    assert_eq!(err.to_string(), "No connection to network: alpha");
    assert!(alpha.recorder.is_empty());
}

#[test]
fn a_missing_token_is_refused_by_a_peer_that_has_one() {
    let alpha = Peer::started(config("alpha", Some("shared-secret")));
    let beta = Peer::started(config("beta", None));
    let err = beta.net.connect_to_network(&alpha.endpoint()).unwrap_err();
    assert_eq!(err.to_string(), "handshake refused: auth_token mismatch");
    assert_eq!(alpha.net.connection_count(), 0);
}

#[test]
fn a_peer_without_a_token_accepts_a_dialer_without_one() {
    let open = Peer::started(config("open", None));
    let without = Peer::started(config("gamma", None));
    link(&without, &open);
    without
        .net
        .send_to_remote_actor("open", "recorder", "in", "from-gamma")
        .unwrap();
    open.expect("in", "from-gamma");
}

#[test]
fn a_dialer_with_a_token_refuses_a_peer_that_cannot_prove_it() {
    // A stranger that took alpha's place (no token) learns nothing and gets nothing.
    let stranger = Peer::started(config("open", None));
    let with_token = Peer::started(config("beta", Some("anything")));
    let err = with_token
        .net
        .connect_to_network(&stranger.endpoint())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("did not prove it knows this peer's auth_token"),
        "{err}"
    );
    assert!(!with_token.net.is_connected_to("open"));
    let err = with_token
        .net
        .send_to_remote_actor("open", "recorder", "in", "secret-payload")
        .unwrap_err();
    assert_eq!(err.into_message(), Some(Message::string("secret-payload")));
}

// ---------------------------------------------------------------- connections

#[test]
fn connection_queries_follow_connections() {
    let alpha = Peer::new(config("alpha", None));
    // Before start: nothing, and no panic.
    assert_eq!(alpha.net.connection_count(), 0);
    assert!(alpha.net.connected_networks().is_empty());
    assert!(!alpha.net.is_connected_to("beta"));
    assert!(alpha.net.local_addr().is_none());
    assert!(alpha.net.bridge_stats().is_none());

    alpha.net.start().unwrap();
    let beta = Peer::started(config("beta", None));
    let gamma = Peer::started(config("gamma", None));
    assert_eq!(alpha.net.connection_count(), 0);
    link(&beta, &alpha);
    link(&gamma, &alpha);

    assert_eq!(alpha.net.connection_count(), 2);
    let mut networks = alpha.net.connected_networks();
    networks.sort();
    assert_eq!(networks, ["beta", "gamma"]);
    assert!(alpha.net.is_connected_to("beta") && alpha.net.is_connected_to("gamma"));
    assert!(!alpha.net.is_connected_to("delta"));
    assert_eq!(beta.net.connected_networks(), ["alpha"]);
    assert_eq!(beta.net.connection_count(), 1);
    assert!(!beta.net.is_connected_to("gamma"));

    // Dialing a connected network again returns at once with the same link.
    assert_eq!(beta.net.connect_to_network(&alpha.endpoint()).unwrap(), "alpha");
    assert_eq!(beta.net.connection_count(), 1);

    // gamma leaves: alpha drops it, keeps beta.
    gamma.net.shutdown();
    wait_until("alpha to drop gamma", || !alpha.net.is_connected_to("gamma"));
    assert_eq!(alpha.net.connection_count(), 1);
    assert_eq!(alpha.net.connected_networks(), ["beta"]);
    assert_eq!(gamma.net.connection_count(), 0);
    assert!(!gamma.net.is_connected_to("alpha"));
}

// ---------------------------------------------------------------- slow receivers

/// Holds every message of the slow actor until opened.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    /// Waits until open; false if the network shuts down first.
    fn pass(&self, shutting_down: impl Fn() -> bool) -> bool {
        let mut open = self.open.lock().unwrap();
        while !*open {
            if shutting_down() {
                return false;
            }
            open = self
                .opened
                .wait_timeout(open, Duration::from_millis(20))
                .unwrap()
                .0;
        }
        true
    }
}

/// A dedicated-thread actor that blocks on `gate` for every message, then
/// reports the message's sequence number (the text before `|`).
fn slow_actor(gate: Arc<Gate>, seen: Sender<u64>) -> FnActor {
    FnActor::new(&["in"], &[], move |ctx| {
        if !gate.pass(|| ctx.is_shutting_down()) {
            return Ok(());
        }
        let text = ctx.input("in").and_then(|m| m.as_str()).ok_or("a String")?;
        let seq = text
            .split('|')
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or("a sequence number")?;
        // Still slower than the sender once open.
        std::thread::sleep(Duration::from_millis(1));
        let _ = seen.send(seq);
        Ok(())
    })
    .with_threading(Threading::Dedicated)
}

/// A receiver hosting `slow` (inbox of 2) behind a gate.
fn slow_receiver(delivery_timeout: Duration) -> (Peer, Arc<Gate>, Receiver<u64>) {
    let mut cfg = config("alpha", None);
    cfg.bridge.delivery_timeout = delivery_timeout;
    // These cases are the flow control toward a peer without credits (Reflow
    // 1.0, or a 1.1 peer that does not offer them): a blocked reader and TCP
    // backpressure. Credits have their own suite (tests/delivery.rs).
    cfg.bridge.delivery.offer = false;
    let alpha = Peer::new(cfg);
    let gate = Arc::new(Gate::default());
    let (tx, seen) = unbounded();
    alpha
        .net
        .register_local_actor(
            "slow",
            Box::new(slow_actor(gate.clone(), tx)),
            json!({"inbox_capacity": 2}),
        )
        .unwrap();
    alpha.net.start().unwrap();
    (alpha, gate, seen)
}

fn numbered(seq: u64, pad: &str) -> String {
    format!("{seq}|{pad}")
}

/// Receives `count` sequence numbers, each within PATIENCE.
fn receive(seen: &Receiver<u64>, count: usize) -> Vec<u64> {
    (0..count)
        .map(|i| {
            seen.recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("message {i} of {count} did not arrive"))
        })
        .collect()
}

#[test]
fn a_slow_receiver_pushes_back_on_the_sender_without_being_evicted() {
    // The receiver waits as long as it takes for room (delivery_timeout well
    // past the test), so nothing may be dropped.
    let (alpha, gate, seen) = slow_receiver(PATIENCE * 3);
    let mut cfg = config("beta", None);
    cfg.bridge.outbound_queue_capacity = 16;
    cfg.network.send_timeout = Duration::from_millis(200);
    let beta = Peer::started(cfg);
    link(&beta, &alpha);
    let alpha_events = alpha.net.bridge_events().unwrap();
    let beta_events = beta.net.bridge_events().unwrap();

    // 64 KiB payloads fill the socket buffers quickly; then beta's queue of 16
    // fills and send_to_remote_actor fails after its send_timeout.
    let pad = "x".repeat(64 * 1024);
    let deadline = Instant::now() + PATIENCE;
    let mut accepted = 0u64;
    let err = loop {
        match beta
            .net
            .send_to_remote_actor("alpha", "slow", "in", numbered(accepted, &pad))
        {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(
            Instant::now() < deadline,
            "no backpressure after {accepted} messages"
        );
    };
    assert!(
        matches!(
            err,
            DistributedError::NotSent(ref e)
                if matches!(e.error(), BridgeError::QueueFull { network_id, capacity: 16 } if network_id == "alpha")
        ),
        "unexpected error: {err}"
    );
    assert!(accepted >= 16, "accepted only {accepted}");

    // Well over 3 heartbeat intervals with alpha's reader blocked in delivery:
    // neither side evicts the other.
    let hold_until = Instant::now() + BEAT * 10;
    while Instant::now() < hold_until {
        assert!(alpha.net.is_connected_to("beta") && beta.net.is_connected_to("alpha"));
        std::thread::sleep(BEAT / 4);
    }
    assert!(!evicted(&alpha_events) && !evicted(&beta_events));

    // Room again: every accepted message arrives, in order, none dropped.
    gate.open();
    let got = receive(&seen, accepted as usize);
    assert_eq!(got, (0..accepted).collect::<Vec<_>>());
    let (a, b) = (
        alpha.net.bridge_stats().unwrap(),
        beta.net.bridge_stats().unwrap(),
    );
    assert_eq!(a.messages_received, accepted);
    assert_eq!(a.dropped_delivery_timeout + a.dropped_unknown_target, 0, "{a:?}");
    assert_eq!(a.evictions + b.evictions, 0);
    assert!(alpha.net.is_connected_to("beta") && beta.net.is_connected_to("alpha"));
}

#[test]
fn a_slow_receiver_holds_back_a_graph_feeding_a_proxy() {
    let (alpha, gate, seen) = slow_receiver(PATIENCE * 3);
    let mut cfg = config("beta", None);
    cfg.bridge.outbound_queue_capacity = 16;
    // The proxy waits this long for room in the bridge queue: longer than the
    // test keeps the gate shut, so it never gives up and drops a message.
    cfg.network.send_timeout = PATIENCE * 3;
    cfg.network.inbox_capacity = 8;
    let beta = Peer::new(cfg);
    let proxy = beta.net.register_remote_actor("slow", "alpha").unwrap();
    beta.net.start().unwrap();
    link(&beta, &alpha);
    let alpha_events = alpha.net.bridge_events().unwrap();
    let beta_events = beta.net.bridge_events().unwrap();
    let failures = beta.net.get_local_network().events();

    // Fill everything between the application and the gate: the proxy's
    // inbox, the bridge queue, the sockets. try_send reports Full at once when
    // the proxy's inbox is full; the proxy itself is blocked in the bridge.
    let pad = "x".repeat(64 * 1024);
    let local = beta.net.get_local_network();
    let deadline = Instant::now() + PATIENCE;
    let mut accepted = 0u64;
    let mut full_since: Option<Instant> = None;
    loop {
        match local.try_send_to_actor(&proxy, "in", numbered(accepted, &pad)) {
            Ok(()) => {
                accepted += 1;
                full_since = None;
            }
            Err(e) if e.is_full() => {
                // Full for a while (several heartbeats): the pipeline is stuck.
                let since = *full_since.get_or_insert_with(Instant::now);
                if since.elapsed() > BEAT * 5 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "no backpressure after {accepted} messages"
        );
    }
    assert!(accepted >= 8 + 16, "accepted only {accepted}");
    assert!(alpha.net.is_connected_to("beta") && beta.net.is_connected_to("alpha"));
    assert!(!evicted(&alpha_events) && !evicted(&beta_events));

    gate.open();
    let got = receive(&seen, accepted as usize);
    assert_eq!(got, (0..accepted).collect::<Vec<_>>());
    assert!(
        failures
            .try_iter()
            .all(|e| !matches!(e, NetworkEvent::ActorFailed { .. })),
        "the proxy dropped a message"
    );
    let a = alpha.net.bridge_stats().unwrap();
    assert_eq!(a.dropped_delivery_timeout, 0, "{a:?}");
    assert_eq!(a.evictions + beta.net.bridge_stats().unwrap().evictions, 0);
}

#[test]
fn a_receiver_past_its_delivery_timeout_drops_messages_but_keeps_order_and_the_link() {
    // Short delivery_timeout: while the gate is shut, each message that finds
    // the slow actor's inbox full is dropped after 300 ms.
    let (alpha, gate, seen) = slow_receiver(Duration::from_millis(300));
    let beta = Peer::started(config("beta", None));
    link(&beta, &alpha);
    let alpha_events = alpha.net.bridge_events().unwrap();

    let sent = 8u64;
    for seq in 0..sent {
        beta.net
            .send_to_remote_actor("alpha", "slow", "in", numbered(seq, "small"))
            .unwrap();
    }
    // One message in the actor, two in its inbox, the rest time out one by one.
    wait_until("a delivery to time out", || {
        alpha.net.bridge_stats().unwrap().dropped_delivery_timeout >= 1
    });
    gate.open();
    wait_until("every message to be delivered or dropped", || {
        let stats = alpha.net.bridge_stats().unwrap();
        stats.messages_received == sent && seen.len() as u64 + stats.dropped_delivery_timeout == sent
    });
    let got: Vec<u64> = seen.try_iter().collect();
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
    // At least what the inbox held when the gate shut is delivered.
    assert!(got.len() >= 2, "{got:?}");

    // The link survived: a later message arrives.
    beta.net
        .send_to_remote_actor("alpha", "slow", "in", numbered(100, "after"))
        .unwrap();
    assert_eq!(seen.recv_timeout(PATIENCE), Ok(100));
    assert!(!evicted(&alpha_events));
    assert!(alpha.net.is_connected_to("beta"));
}

#[test]
fn shutdown_does_not_wait_out_a_delivery_blocked_on_a_full_inbox() {
    // The receiver would wait 30 s for room; shutting it down must not.
    let (alpha, _gate, _seen) = slow_receiver(PATIENCE * 3);
    let beta = Peer::started(config("beta", None));
    link(&beta, &alpha);
    for seq in 0..6 {
        beta.net
            .send_to_remote_actor("alpha", "slow", "in", numbered(seq, "small"))
            .unwrap();
    }
    // Three messages fit (one in the actor, two in its inbox); the fourth
    // blocks alpha's reader inside the delivery.
    wait_until("alpha's reader to block in a delivery", || {
        alpha.net.bridge_stats().unwrap().messages_received >= 4
    });
    let started = Instant::now();
    alpha.net.shutdown();
    let took = started.elapsed();
    assert!(
        took < PATIENCE,
        "shutdown took {took:?}: it waited for the blocked delivery"
    );
}
