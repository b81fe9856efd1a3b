//! Acknowledged delivery, per-target credits and replies, between two peers
//! in one process over real loopback sockets (100 ms heartbeats). Link cuts
//! go through a userspace relay that cuts every relayed socket and keeps
//! listening, so the held link is redialed through it. Every wait has a
//! deadline.

mod relay_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reflow_distributed::DistributedConfig;
use reflow_distributed::Message;
use reflow_distributed::bridge::{BridgeError, DeliveryMode, HoldOptions, SendOptions};
use reflow_distributed::distributed_network::{DistributedError, DistributedNetwork};
use reflow_distributed::runtime::{FnActor, Origin, Recorder, RecorderLog, Threading};
use relay_support::Relay;
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(20);
const BEAT: Duration = Duration::from_millis(100);

fn init_logging() {
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Off)
        .env()
        .with_module_level("tungstenite", log::LevelFilter::Info)
        .init();
}

fn config(network: &str) -> DistributedConfig {
    let mut config = DistributedConfig::new(network);
    config.bridge.bind_address = "127.0.0.1".into();
    config.bridge.bind_port = 0;
    config.bridge.heartbeat_interval = BEAT;
    config.bridge.connect_timeout = Duration::from_secs(3);
    config.bridge.handshake_timeout = Duration::from_secs(3);
    config.bridge.reconnect.initial_delay = Duration::from_millis(20);
    config.bridge.reconnect.max_delay = Duration::from_millis(200);
    config.network.workers = 2;
    config
}

fn started(net: DistributedNetwork) -> DistributedNetwork {
    init_logging();
    net.start().expect("peer starts");
    net
}

/// alpha with a recorder that keeps `history` messages.
fn alpha_with_recorder(history: usize) -> (DistributedNetwork, Arc<RecorderLog>) {
    let alpha = DistributedNetwork::new(config("alpha")).unwrap();
    let recorder = Recorder::new(history);
    let log = recorder.log();
    alpha
        .register_local_actor("recorder", Box::new(recorder), json!({}))
        .unwrap();
    (started(alpha), log)
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn acknowledged(timeout: Duration) -> SendOptions {
    SendOptions::new(DeliveryMode::Acknowledged, timeout)
}

fn numbers(log: &RecorderLog) -> Vec<i64> {
    log.records()
        .iter()
        .map(|r| r.message.as_i64().expect("numbered messages"))
        .collect()
}

#[test]
fn acknowledged_messages_cross_link_cuts_exactly_once_and_in_order() {
    const N: i64 = 3000;
    let (alpha, log) = alpha_with_recorder(N as usize + 100);
    let relay = Relay::start(alpha.local_addr().unwrap(), None);
    let beta = started(DistributedNetwork::new(config("beta")).unwrap());
    beta.hold_connection(&relay.endpoint(), HoldOptions::expecting("alpha"))
        .unwrap();
    wait_until("beta to reach alpha", || beta.is_connected_to("alpha"));

    let mut cuts = 0;
    for n in 1..=N {
        beta.send_to_remote_actor_with("alpha", "recorder", "in", n, acknowledged(PATIENCE))
            .unwrap_or_else(|e| panic!("message {n} not accepted: {e}"));
        if n == N / 3 || n == 2 * N / 3 {
            // Cut mid-stream, then let the supervisor redial through the relay.
            let accepted = relay.accepted();
            cuts += relay.cut();
            wait_until("a redial through the relay", || relay.accepted() > accepted);
        }
    }
    assert!(cuts >= 2, "the relay cut {cuts} connections");
    assert_eq!(
        beta.wait_acknowledged("alpha", PATIENCE),
        0,
        "every message acknowledged"
    );
    wait_until("every number at the recorder", || {
        log.records().len() >= N as usize
    });
    let got = numbers(&log);
    assert_eq!(got, (1..=N).collect::<Vec<_>>(), "exactly once, in order");
    // Counted by the reader just after the outbox let the waiter go.
    wait_until("the acknowledgement count", || {
        beta.bridge_stats().unwrap().messages_acknowledged == N as u64
    });
    assert_eq!(beta.unacknowledged("alpha"), 0);
    beta.shutdown();
    alpha.shutdown();
}

#[test]
fn an_acknowledged_send_waits_in_the_outbox_while_a_held_link_is_down() {
    let (alpha, log) = alpha_with_recorder(100);
    let alpha_addr = alpha.local_addr().unwrap();
    let mut relay = Relay::start(alpha_addr, None);
    let beta = started(DistributedNetwork::new(config("beta")).unwrap());
    beta.hold_connection(&relay.endpoint(), HoldOptions::expecting("alpha"))
        .unwrap();
    wait_until("beta to reach alpha", || beta.is_connected_to("alpha"));
    // The relay stops listening: the held link stays down.
    relay.shutdown();
    wait_until("the link to drop", || !beta.is_connected_to("alpha"));
    for n in 1..=10 {
        beta.send_to_remote_actor_with("alpha", "recorder", "in", n, acknowledged(Duration::ZERO))
            .expect("accepted into the outbox while the link is down");
    }
    assert_eq!(beta.unacknowledged("alpha"), 10);
    // An at-most-once send has no connection to go to.
    let err = beta
        .send_to_remote_actor("alpha", "recorder", "in", 11)
        .unwrap_err();
    assert!(err.to_string().contains("No connection"), "{err}");
    // A link to alpha comes back (a second relay, held too): the outbox replays.
    let relay2 = Relay::start(alpha_addr, None);
    beta.hold_connection(&relay2.endpoint(), HoldOptions::expecting("alpha"))
        .unwrap();
    assert_eq!(beta.wait_acknowledged("alpha", PATIENCE), 0);
    assert_eq!(numbers(&log), (1..=10).collect::<Vec<_>>());
    beta.shutdown();
    alpha.shutdown();
}

#[test]
fn acknowledged_delivery_to_a_network_never_reached_fails_and_hands_the_message_back() {
    let beta = started(DistributedNetwork::new(config("beta")).unwrap());
    let err = beta
        .send_to_remote_actor_with("nowhere", "recorder", "in", 1, acknowledged(Duration::ZERO))
        .unwrap_err();
    assert!(
        matches!(&err, DistributedError::NotSent(e) if matches!(e.error(), BridgeError::NoConnection(_))),
        "{err}"
    );
    assert_eq!(err.into_message(), Some(Message::Integer(1)));
    beta.shutdown();
}

/// A slow actor that holds its tick until released, on a thread of its own.
fn blocked_actor(release: Arc<AtomicBool>, ticks: Arc<AtomicU64>) -> FnActor {
    FnActor::new(&["in"], &[], move |ctx| {
        ticks.fetch_add(1, Ordering::SeqCst);
        while !release.load(Ordering::SeqCst) && !ctx.is_shutting_down() {
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    })
    .with_threading(Threading::Dedicated)
}

#[test]
fn a_stuck_actor_holds_back_only_the_senders_to_it() {
    const FAST: i64 = 2000;
    let release = Arc::new(AtomicBool::new(false));
    let ticks = Arc::new(AtomicU64::new(0));
    let alpha = DistributedNetwork::new(config("alpha")).unwrap();
    let recorder = Recorder::new(FAST as usize + 10);
    let log = recorder.log();
    alpha
        .register_local_actor("recorder", Box::new(recorder), json!({}))
        .unwrap();
    alpha
        .register_local_actor(
            "slow",
            Box::new(blocked_actor(release.clone(), ticks.clone())),
            json!({"inbox_capacity": 2}),
        )
        .unwrap();
    let alpha = started(alpha);
    let beta = started(DistributedNetwork::new(config("beta")).unwrap());
    beta.connect_to_network(&alpha.local_addr().unwrap().to_string())
        .unwrap();

    // Flood the stuck actor until its window is spent: then its sender,
    // and only it, is refused.
    let mut flooded = 0;
    let refusal = loop {
        match beta.send_to_remote_actor("alpha", "slow", "in", flooded) {
            Ok(()) => flooded += 1,
            Err(err) => break err,
        }
        assert!(flooded < 10_000, "the slow actor's sender was never held back");
    };
    assert!(
        refusal.to_string().contains("credit window"),
        "held back by its window: {refusal}"
    );
    // Meanwhile the fast actor's traffic flows on the same connection.
    for n in 0..FAST {
        beta.send_to_remote_actor("alpha", "recorder", "in", n)
            .unwrap_or_else(|e| panic!("fast message {n}: {e}"));
    }
    wait_until("the fast traffic to arrive", || {
        log.records().len() >= FAST as usize
    });
    assert_eq!(numbers(&log), (0..FAST).collect::<Vec<_>>());
    assert_eq!(
        ticks.load(Ordering::SeqCst),
        1,
        "the slow actor is still in its first tick"
    );
    let stats = alpha.bridge_stats().unwrap();
    assert_eq!(stats.dropped_delivery_timeout, 0, "nothing dropped");

    // Released, the slow actor consumes its window and its sender goes on.
    release.store(true, Ordering::SeqCst);
    wait_until("credit for the slow actor again", || {
        beta.send_to_remote_actor("alpha", "slow", "in", -1).is_ok()
    });
    beta.shutdown();
    alpha.shutdown();
}

#[test]
fn an_actor_replies_to_a_remote_sender_without_a_proxy() {
    // alpha: `echo` answers whoever sent to it, on the sender's `reply` port.
    let alpha = DistributedNetwork::new(config("alpha")).unwrap();
    let echo = FnActor::new(&["in"], &[], |ctx| {
        let asked = ctx.input("in").and_then(Message::as_i64).unwrap_or(0);
        ctx.reply("in", "reply", asked * 10)
    });
    alpha
        .register_local_actor("echo", Box::new(echo), json!({}))
        .unwrap();
    let alpha = started(alpha);
    // beta: `client` asks alpha's echo (no proxy registered) and records
    // each answer with its origin.
    let beta = DistributedNetwork::new(config("beta")).unwrap();
    let recorder = Recorder::new(100);
    let answers = recorder.log();
    let client = FnActor::new(&["ask", "reply"], &["answer"], |ctx| {
        if let Some(n) = ctx.take_input("ask") {
            ctx.send_to_remote_actor("alpha", "echo", "in", n)?;
        }
        if let Some(answer) = ctx.take_input("reply") {
            let origin = match ctx.origin("reply") {
                Some(Origin::Remote { network, actor }) => format!("{actor}@{network}"),
                other => format!("{other:?}"),
            };
            ctx.emit("answer", json!({"value": answer.as_i64(), "from": origin}))?;
        }
        Ok(())
    });
    beta.register_local_actor("client", Box::new(client), json!({}))
        .unwrap();
    beta.register_local_actor("answers", Box::new(recorder), json!({}))
        .unwrap();
    beta.get_local_network()
        .connect("client", "answer", "answers", "in")
        .unwrap();
    let beta = started(beta);
    beta.connect_to_network(&alpha.local_addr().unwrap().to_string())
        .unwrap();
    wait_until("alpha to list beta", || alpha.is_connected_to("beta"));
    for n in 1..=3 {
        beta.send_to_actor("client", "ask", n).unwrap();
    }
    wait_until("three answers", || answers.records().len() >= 3);
    let got: Vec<serde_json::Value> = answers.records().iter().map(|r| r.message.to_value()).collect();
    assert_eq!(
        got,
        (1..=3)
            .map(|n| json!({"value": n * 10, "from": "echo@alpha"}))
            .collect::<Vec<_>>()
    );
    beta.shutdown();
    alpha.shutdown();
}

#[test]
fn acknowledged_delivery_toward_a_peer_without_it_fails_clearly_and_at_most_once_still_goes() {
    let mut alpha_config = config("alpha");
    alpha_config.bridge.delivery.offer = false;
    let alpha = DistributedNetwork::new(alpha_config).unwrap();
    let recorder = Recorder::new(10);
    let log = recorder.log();
    alpha
        .register_local_actor("recorder", Box::new(recorder), json!({}))
        .unwrap();
    let alpha = started(alpha);
    let beta = started(DistributedNetwork::new(config("beta")).unwrap());
    beta.connect_to_network(&alpha.local_addr().unwrap().to_string())
        .unwrap();
    let err = beta
        .send_to_remote_actor_with("alpha", "recorder", "in", 1, acknowledged(Duration::ZERO))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("acknowledged delivery to network alpha is unavailable"),
        "{err}"
    );
    assert_eq!(err.into_message(), Some(Message::Integer(1)));
    beta.send_to_remote_actor("alpha", "recorder", "in", 2).unwrap();
    wait_until("the at-most-once message", || !log.records().is_empty());
    assert_eq!(numbers(&log), vec![2]);
    beta.shutdown();
    alpha.shutdown();
}

#[test]
fn a_proxy_waits_out_a_full_window_instead_of_dropping() {
    const COUNT: i64 = 40;
    let release = Arc::new(AtomicBool::new(false));
    let (tx, seen) = crossbeam_channel::unbounded();
    let mut alpha_config = config("alpha");
    alpha_config.bridge.delivery.target_window = 4;
    let alpha = DistributedNetwork::new(alpha_config).unwrap();
    let gate = release.clone();
    let slow = FnActor::new(&["in"], &[], move |ctx| {
        while !gate.load(Ordering::SeqCst) && !ctx.is_shutting_down() {
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = tx.send(ctx.input("in").and_then(Message::as_i64).unwrap_or(-1));
        Ok(())
    })
    .with_threading(Threading::Dedicated);
    alpha
        .register_local_actor("slow", Box::new(slow), json!({"inbox_capacity": 2}))
        .unwrap();
    let alpha = started(alpha);

    let mut beta_config = config("beta");
    beta_config.network.send_timeout = Duration::from_millis(50);
    let beta = DistributedNetwork::new(beta_config).unwrap();
    let feeder = FnActor::new(&["go"], &["out"], |ctx| {
        for n in 0..COUNT {
            ctx.emit("out", n)?;
        }
        Ok(())
    });
    beta.register_local_actor("feeder", Box::new(feeder), json!({}))
        .unwrap();
    let proxy = beta.register_remote_actor("slow", "alpha").unwrap();
    beta.get_local_network()
        .connect("feeder", "out", &proxy, "in")
        .unwrap();
    let failures = beta.get_local_network().events();
    let beta = started(beta);
    beta.connect_to_network(&alpha.local_addr().unwrap().to_string())
        .unwrap();
    beta.send_to_actor("feeder", "go", Message::Flow).unwrap();
    // The window (4) is spent and the proxy's send_timeout (50 ms) passes
    // many times over while the slow actor is stuck.
    std::thread::sleep(Duration::from_millis(300));
    release.store(true, Ordering::SeqCst);
    let got: Vec<i64> = (0..COUNT)
        .map(|i| {
            seen.recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("message {i} missing"))
        })
        .collect();
    assert_eq!(got, (0..COUNT).collect::<Vec<_>>());
    let failed: Vec<_> = failures
        .try_iter()
        .filter(|e| matches!(e, reflow_distributed::runtime::NetworkEvent::ActorFailed { .. }))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    beta.shutdown();
    alpha.shutdown();
}

/// A loopback port nobody listens on (free a moment ago).
fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn is_outbox_full(err: &DistributedError) -> bool {
    matches!(err, DistributedError::NotSent(e) if matches!(e.error(), BridgeError::OutboxFull { .. }))
}

#[test]
fn a_full_outbox_refuses_past_its_byte_bound_hands_the_message_back_and_drops_nothing() {
    // 4 KiB of outbox for messages of about 300 bytes; the message bound
    // (1000) is far away, so the bytes are what refuses.
    const BOUND: usize = 4096;
    let payload = |n: i64| Message::string(format!("{n:05}:{}", "x".repeat(300)));
    let port = unused_port();
    let mut beta_config = config("beta");
    beta_config.bridge.delivery.outbox_bytes = BOUND;
    beta_config.bridge.delivery.outbox_messages = 1000;
    let beta = started(DistributedNetwork::new(beta_config).unwrap());
    // Held, and never linked yet: nothing listens on that port.
    beta.hold_connection(&format!("127.0.0.1:{port}"), HoldOptions::expecting("alpha"))
        .unwrap();

    let mut n = 0;
    let refusal = loop {
        n += 1;
        assert!(n < 1000, "the byte bound never refused");
        match beta.send_to_remote_actor_with(
            "alpha",
            "recorder",
            "in",
            payload(n),
            acknowledged(Duration::ZERO),
        ) {
            Ok(()) => {}
            Err(err) => break err,
        }
    };
    let accepted = (n - 1) as usize;
    assert!(is_outbox_full(&refusal), "{refusal}");
    assert!(
        refusal.to_string().contains("(1000 messages or 4096 bytes)"),
        "{refusal}"
    );
    assert_eq!(refusal.into_message(), Some(payload(n)), "handed back intact");
    assert!(
        accepted >= 1 && accepted * 300 <= BOUND,
        "{accepted} messages of 300+ bytes in a {BOUND}-byte outbox"
    );
    assert_eq!(beta.unacknowledged("alpha"), accepted);

    // With a timeout the send waits for room that long, then fails alike.
    let started_at = Instant::now();
    let waited = beta
        .send_to_remote_actor_with(
            "alpha",
            "recorder",
            "in",
            payload(n),
            acknowledged(Duration::from_millis(300)),
        )
        .unwrap_err();
    let elapsed = started_at.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "gave up after {elapsed:?}");
    assert!(is_outbox_full(&waited), "{waited}");
    assert_eq!(waited.into_message(), Some(payload(n)));
    assert_eq!(
        beta.unacknowledged("alpha"),
        accepted,
        "nothing taken in or dropped"
    );

    // The refused message is sent again with a long timeout while alpha
    // comes up on that port: it waits for room the acknowledgements free.
    let total = (accepted as i64) * 3;
    let log = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            beta.send_to_remote_actor_with("alpha", "recorder", "in", payload(n), acknowledged(PATIENCE))
        });
        let mut alpha_config = config("alpha");
        alpha_config.bridge.bind_port = port;
        let alpha = DistributedNetwork::new(alpha_config).unwrap();
        let recorder = Recorder::new(total as usize + 10);
        let log = recorder.log();
        alpha
            .register_local_actor("recorder", Box::new(recorder), json!({}))
            .unwrap();
        let alpha = started(alpha);
        waiter
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("the waiting send failed: {e}"));
        (alpha, log)
    });
    let (alpha, log) = log;
    for m in n + 1..=total {
        beta.send_to_remote_actor_with("alpha", "recorder", "in", payload(m), acknowledged(PATIENCE))
            .unwrap_or_else(|e| panic!("message {m}: {e}"));
    }
    assert_eq!(beta.wait_acknowledged("alpha", PATIENCE), 0);
    wait_until("every message at the recorder", || {
        log.records().len() >= total as usize
    });
    let got: Vec<Message> = log.records().iter().map(|r| r.message.clone()).collect();
    let expected: Vec<Message> = (1..=total).map(payload).collect();
    assert!(
        got == expected,
        "{} arrived, not 1..={total} once in order",
        got.len()
    );

    // One message larger than the whole bound still goes into an empty outbox.
    let big = Message::string("y".repeat(2 * BOUND));
    beta.send_to_remote_actor_with(
        "alpha",
        "recorder",
        "in",
        big.clone(),
        acknowledged(Duration::ZERO),
    )
    .expect("a large message into an empty outbox");
    assert_eq!(beta.wait_acknowledged("alpha", PATIENCE), 0);
    assert_eq!(log.records().last().map(|r| r.message.clone()), Some(big));
    println!(
        "outbox_bytes {BOUND}: {accepted} messages with 306-byte payloads accepted, the next refused (and after 300 ms \
         waited {} ms); {total} delivered once in order",
        elapsed.as_millis()
    );
    beta.shutdown();
    alpha.shutdown();
}

/// An actor that asks with `ask` on `go` and reports each answer on
/// `answer` as `{"value", "from"}` on `result`.
fn asker() -> FnActor {
    FnActor::new(&["go", "answer"], &["ask", "result"], |ctx| {
        if let Some(n) = ctx.take_input("go") {
            ctx.emit("ask", n)?;
        }
        if let Some(answer) = ctx.take_input("answer") {
            let from = format!("{:?}", ctx.origin("answer"));
            ctx.emit("result", json!({"value": answer.as_i64(), "from": from}))?;
        }
        Ok(())
    })
}

/// An actor that tells `origins` where each message came from and answers
/// it on the sender's `answer` port with `n + add`, unless it came from
/// outside the graph (nobody to answer).
fn answerer(add: i64, origins: crossbeam_channel::Sender<Option<Origin>>) -> FnActor {
    FnActor::new(&["in"], &[], move |ctx| {
        let origin = ctx.origin("in");
        let _ = origins.send(origin.clone());
        let n = ctx.input("in").and_then(Message::as_i64).unwrap_or(0);
        match origin {
            Some(Origin::External) => Ok(()),
            _ => ctx.reply("in", "answer", n + add),
        }
    })
}

fn results(log: &RecorderLog) -> Vec<serde_json::Value> {
    log.records().iter().map(|r| r.message.to_value()).collect()
}

#[test]
fn a_local_sender_is_its_node_and_a_reply_reaches_it() {
    let (origins_tx, origins) = crossbeam_channel::unbounded();
    let beta = DistributedNetwork::new(config("beta")).unwrap();
    let recorder = Recorder::new(100);
    let log = recorder.log();
    beta.register_local_actor("asker", Box::new(asker()), json!({}))
        .unwrap();
    beta.register_local_actor("doubler", Box::new(answerer(1000, origins_tx)), json!({}))
        .unwrap();
    beta.register_local_actor("results", Box::new(recorder), json!({}))
        .unwrap();
    let net = beta.get_local_network();
    net.connect("asker", "ask", "doubler", "in").unwrap();
    net.connect("asker", "result", "results", "in").unwrap();
    let beta = started(beta);
    for n in 1..=3 {
        beta.send_to_actor("asker", "go", n).unwrap();
    }
    // From the application: no node to answer.
    beta.send_to_actor("doubler", "in", 99).unwrap();
    let seen: Vec<Option<Origin>> = (0..4)
        .map(|_| origins.recv_timeout(PATIENCE).expect("an origin"))
        .collect();
    let from_asker = Some(Origin::Node("asker".to_string()));
    assert_eq!(seen.iter().filter(|o| **o == from_asker).count(), 3, "{seen:?}");
    assert_eq!(
        seen.iter().filter(|o| **o == Some(Origin::External)).count(),
        1,
        "{seen:?}"
    );
    wait_until("three answers", || log.records().len() >= 3);
    let mut got = results(&log);
    got.sort_by_key(|v| v["value"].as_i64());
    assert_eq!(
        got,
        (1..=3)
            .map(|n| json!({"value": n + 1000, "from": "Some(Node(\"doubler\"))"}))
            .collect::<Vec<_>>()
    );
    beta.shutdown();
}

#[test]
fn a_message_through_a_proxy_names_its_sending_node_and_the_reply_comes_back_to_it() {
    let (origins_tx, origins) = crossbeam_channel::unbounded();
    let mut alpha_config = config("alpha");
    alpha_config.bridge.delivery.mode = DeliveryMode::Acknowledged;
    let alpha = DistributedNetwork::new(alpha_config).unwrap();
    alpha
        .register_local_actor("echo", Box::new(answerer(1000, origins_tx)), json!({}))
        .unwrap();
    let alpha = started(alpha);
    let mut beta_config = config("beta");
    beta_config.bridge.delivery.mode = DeliveryMode::Acknowledged;
    let beta = DistributedNetwork::new(beta_config).unwrap();
    let recorder = Recorder::new(100);
    let log = recorder.log();
    beta.register_local_actor("asker", Box::new(asker()), json!({}))
        .unwrap();
    beta.register_local_actor("results", Box::new(recorder), json!({}))
        .unwrap();
    let proxy = beta.register_remote_actor("echo", "alpha").unwrap();
    let net = beta.get_local_network();
    net.connect("asker", "ask", &proxy, "in").unwrap();
    net.connect("asker", "result", "results", "in").unwrap();
    let beta = started(beta);
    beta.connect_to_network(&alpha.local_addr().unwrap().to_string())
        .unwrap();
    wait_until("alpha to list beta", || alpha.is_connected_to("beta"));
    for n in 1..=3 {
        beta.send_to_actor("asker", "go", n).unwrap();
    }
    // At alpha the sender is beta's node, not the proxy.
    for _ in 0..3 {
        assert_eq!(
            origins.recv_timeout(PATIENCE).expect("an origin"),
            Some(Origin::Remote {
                network: "beta".into(),
                actor: "asker".into()
            })
        );
    }
    wait_until("three answers", || log.records().len() >= 3);
    let mut got = results(&log);
    got.sort_by_key(|v| v["value"].as_i64());
    let from = format!(
        "{:?}",
        Some(Origin::Remote {
            network: "alpha".into(),
            actor: "echo".into()
        })
    );
    assert_eq!(
        got,
        (1..=3)
            .map(|n| json!({"value": n + 1000, "from": from}))
            .collect::<Vec<_>>()
    );
    assert_eq!(beta.wait_acknowledged("alpha", PATIENCE), 0);
    assert_eq!(alpha.wait_acknowledged("beta", PATIENCE), 0);
    beta.shutdown();
    alpha.shutdown();
}
