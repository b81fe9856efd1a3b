//! Behaviour of the local runtime: graphs, scheduling, backpressure, failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reflow_distributed::Message;
use reflow_distributed::runtime::{
    AwaitRule, FnActor, Network, NetworkConfig, NetworkEvent, Origin, RecorderLog, RuntimeError,
    SendErrorKind, StreamFrame, Threading, stream_channel,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn config(workers: usize, inbox_capacity: usize) -> NetworkConfig {
    let mut config = NetworkConfig::default();
    config.workers = workers;
    config.inbox_capacity = inbox_capacity;
    config
}

fn recorder(network: &Network, name: &str) -> Arc<RecorderLog> {
    network
        .add_node(name, "recorder", json!({"history_capacity": 100_000}))
        .unwrap();
    network
        .node_handle::<RecorderLog>(name)
        .expect("recorder publishes its log")
}

fn integers(log: &RecorderLog) -> Vec<i64> {
    log.records().iter().filter_map(|r| r.message.as_i64()).collect()
}

#[test]
fn ten_node_pipeline_with_one_worker_keeps_order() {
    let network = Network::new(config(1, 2));
    for i in 0..10 {
        network
            .add_node(&format!("stage{i}"), "passthrough", json!({}))
            .unwrap();
        if i > 0 {
            network
                .connect(&format!("stage{}", i - 1), "out", &format!("stage{i}"), "in")
                .unwrap();
        }
    }
    let log = recorder(&network, "sink");
    network.connect("stage9", "out", "sink", "in").unwrap();
    network.start().unwrap();
    for i in 0..2000 {
        network.send_to_actor("stage0", "in", i as i64).unwrap();
    }
    assert!(
        log.wait_until(WAIT, |r| r.len() == 2000),
        "got {} of 2000",
        log.len()
    );
    assert_eq!(integers(&log), (0..2000).collect::<Vec<i64>>());
    network.shutdown();
}

/// Two nodes feed each other through inboxes of one slot; far more tokens
/// circulate than the inboxes hold, so the only way to finish is the runtime's
/// cycle rule. Each token goes around until its count reaches zero.
#[test]
fn cycle_under_full_inboxes_completes() {
    let network = Network::new(config(2, 1));
    for name in ["ping", "pong"] {
        let actor = FnActor::new(&["in"], &["next", "done"], |ctx| {
            let n = ctx.input("in").and_then(Message::as_i64).unwrap_or(0);
            if n == 0 {
                ctx.emit("done", 0i64)
            } else {
                ctx.emit("next", n - 1)
            }
        });
        network.add_actor(name, Box::new(actor), json!({})).unwrap();
    }
    let log = recorder(&network, "finished");
    network.connect("ping", "next", "pong", "in").unwrap();
    network.connect("pong", "next", "ping", "in").unwrap();
    network.connect("ping", "done", "finished", "in").unwrap();
    network.connect("pong", "done", "finished", "in").unwrap();
    network.start().unwrap();
    let tokens = 200;
    for _ in 0..tokens {
        network.send_to_actor("ping", "in", 50i64).unwrap();
    }
    assert!(
        log.wait_until(WAIT, |r| r.len() == tokens),
        "only {} of {tokens} tokens finished",
        log.len()
    );
    network.shutdown();
}

#[test]
fn panicking_actor_is_reported_and_keeps_serving() {
    let network = Network::new(config(2, 8));
    let events = network.events();
    let actor = FnActor::new(&["in"], &["out"], |ctx| {
        let n = ctx.input("in").and_then(Message::as_i64).unwrap_or(0);
        if n % 2 == 1 {
            panic!("odd input {n}");
        }
        if n == 4 {
            return Err("four is refused".into());
        }
        ctx.emit("out", n)
    });
    network.add_actor("fragile", Box::new(actor), json!({})).unwrap();
    let log = recorder(&network, "sink");
    network.connect("fragile", "out", "sink", "in").unwrap();
    network.start().unwrap();
    for i in 0..7 {
        network.send_to_actor("fragile", "in", i as i64).unwrap();
    }
    assert!(log.wait_until(WAIT, |r| r.len() == 3));
    assert_eq!(integers(&log), vec![0, 2, 6]);
    let mut failures = Vec::new();
    while failures.len() < 4 {
        match events.recv_timeout(WAIT).expect("failure events") {
            NetworkEvent::ActorFailed { node, error } => failures.push((node, error)),
            _ => continue,
        }
    }
    assert!(failures.iter().all(|(node, _)| node == "fragile"));
    assert!(
        failures.iter().any(|(_, e)| e.contains("panicked: odd input 3")),
        "{failures:?}"
    );
    assert!(
        failures.iter().any(|(_, e)| e == "four is refused"),
        "{failures:?}"
    );
    network.shutdown();
}

#[test]
fn fan_out_delivers_a_copy_to_every_connection() {
    let network = Network::new(config(2, 8));
    network.add_node("split", "passthrough", json!({})).unwrap();
    let logs: Vec<_> = (0..3).map(|i| recorder(&network, &format!("r{i}"))).collect();
    for i in 0..3 {
        network.connect("split", "out", &format!("r{i}"), "in").unwrap();
    }
    network.start().unwrap();
    network.send_to_actor("split", "in", "shared").unwrap();
    for log in &logs {
        assert!(log.wait_until(WAIT, |r| r.len() == 1));
        assert_eq!(log.records()[0].message, Message::string("shared"));
    }
    network.shutdown();
}

#[test]
fn await_all_waits_for_every_inport() {
    let network = Network::new(config(2, 8));
    let adder = FnActor::new(&["a", "b"], &["sum"], |ctx| {
        let a = ctx.input("a").and_then(Message::as_i64).ok_or("no a")?;
        let b = ctx.input("b").and_then(Message::as_i64).ok_or("no b")?;
        ctx.emit("sum", a + b)
    })
    .with_await_rule(AwaitRule::All);
    network.add_actor("adder", Box::new(adder), json!({})).unwrap();
    let log = recorder(&network, "sink");
    network.connect("adder", "sum", "sink", "in").unwrap();
    network.start().unwrap();
    network.send_to_actor("adder", "a", 1i64).unwrap();
    network.send_to_actor("adder", "a", 10i64).unwrap();
    network.send_to_actor("adder", "b", 2i64).unwrap();
    assert!(log.wait_until(WAIT, |r| r.len() == 1));
    network.send_to_actor("adder", "b", 20i64).unwrap();
    assert!(log.wait_until(WAIT, |r| r.len() == 2));
    assert_eq!(integers(&log), vec![3, 30]);
    network.shutdown();
}

#[test]
fn await_named_ports_fires_when_those_ports_have_input() {
    let network = Network::new(config(1, 8));
    let gate = FnActor::new(&["data", "trigger"], &["out"], |ctx| {
        let data = ctx.input("data").cloned().unwrap_or(Message::Flow);
        ctx.emit("out", data)
    })
    .with_await_rule(AwaitRule::Ports(vec!["trigger".into()]));
    network.add_actor("gate", Box::new(gate), json!({})).unwrap();
    let log = recorder(&network, "sink");
    network.connect("gate", "out", "sink", "in").unwrap();
    network.start().unwrap();
    network.send_to_actor("gate", "data", 5i64).unwrap();
    assert!(!log.wait_until(Duration::from_millis(100), |r| !r.is_empty()));
    network.send_to_actor("gate", "trigger", Message::Flow).unwrap();
    assert!(log.wait_until(WAIT, |r| r.len() == 1));
    assert_eq!(integers(&log), vec![5]);
    network.shutdown();
}

#[test]
fn initial_packets_are_delivered_at_start() {
    let network = Network::new(config(2, 1));
    let log = recorder(&network, "sink");
    for i in 0..3 {
        network.add_initial("sink", "in", i as i64).unwrap();
    }
    assert!(log.is_empty());
    network.start().unwrap();
    assert!(log.wait_until(WAIT, |r| r.len() == 3));
    assert_eq!(integers(&log), vec![0, 1, 2]);
    network.shutdown();
}

#[test]
fn state_and_pools_persist_across_ticks() {
    let network = Network::new(config(2, 8));
    let counter = FnActor::new(&["in"], &["count"], |ctx| {
        let seen = ctx.state().get("seen").and_then(|v| v.as_i64()).unwrap_or(0) + 1;
        ctx.state().insert("seen".into(), json!(seen));
        let key = ctx
            .input("in")
            .and_then(Message::as_str)
            .unwrap_or("")
            .to_string();
        ctx.pool_upsert("words", &key, json!(seen));
        if key == "clear" {
            ctx.pool_clear("words");
        }
        let distinct = ctx.pool_count("words") as i64;
        ctx.emit("count", seen * 100 + distinct)
    });
    network
        .add_actor("counter", Box::new(counter), json!({}))
        .unwrap();
    let log = recorder(&network, "sink");
    network.connect("counter", "count", "sink", "in").unwrap();
    network.start().unwrap();
    for word in ["a", "b", "a", "clear", "c"] {
        network.send_to_actor("counter", "in", word).unwrap();
    }
    assert!(log.wait_until(WAIT, |r| r.len() == 5));
    assert_eq!(integers(&log), vec![101, 202, 302, 400, 501]);
    network.shutdown();
}

#[test]
fn node_config_is_visible_to_the_actor() {
    let network = Network::new(config(1, 8));
    let actor = FnActor::new(&["in"], &["out"], |ctx| {
        let factor = ctx.config().get("factor").and_then(|v| v.as_i64()).unwrap_or(1);
        let n = ctx.input("in").and_then(Message::as_i64).unwrap_or(0);
        ctx.emit("out", n * factor)
    });
    network
        .add_actor("scale", Box::new(actor), json!({"factor": 3}))
        .unwrap();
    let log = recorder(&network, "sink");
    network.connect("scale", "out", "sink", "in").unwrap();
    network.start().unwrap();
    network.send_to_actor("scale", "in", 7i64).unwrap();
    assert!(log.wait_until(WAIT, |r| r.len() == 1));
    assert_eq!(integers(&log), vec![21]);
    network.shutdown();
}

#[test]
fn full_inbox_makes_external_senders_wait_then_fail_with_the_message() {
    let network = Network::new(config(1, 2));
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    let (started_tx, started_rx) = crossbeam_channel::bounded::<()>(1);
    // Blocks its (dedicated) thread until released, so its inbox fills.
    let stuck = FnActor::new(&["in"], &[], move |_| {
        let _ = started_tx.try_send(());
        let _ = release_rx.recv_timeout(Duration::from_secs(30));
        Ok(())
    })
    .with_threading(Threading::Dedicated);
    network.add_actor("stuck", Box::new(stuck), json!({})).unwrap();
    network.start().unwrap();
    network.send_to_actor("stuck", "in", 0i64).unwrap();
    started_rx.recv_timeout(WAIT).expect("the first tick started");
    network.try_send_to_actor("stuck", "in", 1i64).unwrap();
    network.try_send_to_actor("stuck", "in", 2i64).unwrap();
    let err = network.try_send_to_actor("stuck", "in", 99i64).unwrap_err();
    assert!(err.is_full(), "{err}");
    assert_eq!(err.into_message(), Message::Integer(99));
    let err = network
        .send_to_actor_timeout("stuck", "in", 100i64, Duration::from_millis(50))
        .unwrap_err();
    assert!(matches!(err.kind(), SendErrorKind::Full { .. }), "{err}");
    assert!(err.to_string().contains("inbox stuck.in is full"), "{err}");
    drop(release_tx);
    network.shutdown();
}

#[test]
fn dedicated_source_is_held_back_by_a_slow_consumer_without_loss() {
    let network = Network::new(config(1, 4));
    let total = 500i64;
    let source = FnActor::new(&[], &["out"], move |ctx| {
        for i in 0..total {
            ctx.send("out", i)?;
        }
        Ok(())
    })
    .with_threading(Threading::Dedicated);
    network.add_actor("source", Box::new(source), json!({})).unwrap();
    let log = recorder(&network, "sink");
    network.connect("source", "out", "sink", "in").unwrap();
    network.start().unwrap();
    assert!(
        log.wait_until(WAIT, |r| r.len() == total as usize),
        "got {}",
        log.len()
    );
    assert_eq!(integers(&log), (0..total).collect::<Vec<_>>());
    network.shutdown();
}

#[test]
fn pool_source_sending_many_messages_in_one_tick_is_not_lost() {
    let network = Network::new(config(2, 2));
    let source = FnActor::new(&["go"], &["out"], |ctx| {
        for i in 0..100i64 {
            ctx.send("out", i)?;
        }
        Ok(())
    });
    network.add_actor("burst", Box::new(source), json!({})).unwrap();
    network.add_node("relay", "passthrough", json!({})).unwrap();
    let log = recorder(&network, "sink");
    network.connect("burst", "out", "relay", "in").unwrap();
    network.connect("relay", "out", "sink", "in").unwrap();
    network.start().unwrap();
    network.send_to_actor("burst", "go", Message::Flow).unwrap();
    assert!(log.wait_until(WAIT, |r| r.len() == 100));
    assert_eq!(integers(&log), (0..100).collect::<Vec<_>>());
    network.shutdown();
}

#[test]
fn streams_carry_frames_between_actors() {
    let network = Network::new(config(2, 8));
    let producer = FnActor::new(&["go"], &["stream"], |ctx| {
        let (writer, handle) = stream_channel(4, json!({"content_type": "text/plain"}));
        ctx.emit("stream", Message::StreamHandle(handle))?;
        std::thread::spawn(move || {
            let wait = Duration::from_secs(10);
            let _ = writer.send(StreamFrame::Begin(json!({})), wait);
            for chunk in ["ab", "cd", "ef"] {
                let _ = writer.send(StreamFrame::Data(chunk.as_bytes().to_vec().into()), wait);
            }
            let _ = writer.send(StreamFrame::End, wait);
        });
        Ok(())
    });
    let reader = FnActor::new(&["stream"], &["text"], |ctx| {
        let Some(Message::StreamHandle(handle)) = ctx.take_input("stream") else {
            return Err("expected a stream".into());
        };
        let mut text = Vec::new();
        loop {
            match handle.recv(Duration::from_secs(10)).map_err(|e| e.to_string())? {
                StreamFrame::Begin(_) => {}
                StreamFrame::Data(bytes) => text.extend_from_slice(&bytes),
                StreamFrame::End => break,
                StreamFrame::Error(e) => return Err(e.into()),
            }
        }
        ctx.emit("text", String::from_utf8_lossy(&text).to_string())
    })
    .with_threading(Threading::Dedicated);
    network
        .add_actor("producer", Box::new(producer), json!({}))
        .unwrap();
    network.add_actor("reader", Box::new(reader), json!({})).unwrap();
    let log = recorder(&network, "sink");
    network.connect("producer", "stream", "reader", "stream").unwrap();
    network.connect("reader", "text", "sink", "in").unwrap();
    network.start().unwrap();
    network.send_to_actor("producer", "go", Message::Flow).unwrap();
    assert!(log.wait_until(WAIT, |r| r.len() == 1));
    assert_eq!(log.records()[0].message, Message::string("abcdef"));
    network.shutdown();
}

#[test]
fn graph_errors_name_what_is_wrong() {
    let network = Network::new(config(1, 8));
    network.add_node("a", "passthrough", json!({})).unwrap();
    assert!(matches!(
        network.add_node("a", "passthrough", json!({})),
        Err(RuntimeError::DuplicateNode(_))
    ));
    let err = network.add_node("b", "nope", json!({})).unwrap_err();
    assert_eq!(err.to_string(), "no actor template registered as \"nope\"");
    let err = network.connect("a", "out", "ghost", "in").unwrap_err();
    assert_eq!(err.to_string(), "unknown node \"ghost\"");
    let err = network.connect("a", "missing", "a", "in").unwrap_err();
    assert_eq!(err.to_string(), "node \"a\" has no port \"missing\" (ports: out)");
    let err = network.connect("a", "out", "a", "nope").unwrap_err();
    assert_eq!(err.to_string(), "node \"a\" has no port \"nope\" (ports: in)");
    let err = network.send_to_actor("ghost", "in", 1i64).unwrap_err();
    assert_eq!(err.to_string(), "unknown node \"ghost\"");
    let err = network.send_to_actor("a", "nope", 1i64).unwrap_err();
    assert_eq!(err.to_string(), "node \"a\" has no inport \"nope\"");
    let bad = FnActor::new(&["in"], &[], |_| Ok(())).with_await_rule(AwaitRule::Ports(vec!["x".into()]));
    let err = network.add_actor("bad", Box::new(bad), json!({})).unwrap_err();
    assert!(err.to_string().contains("await rule names \"x\""), "{err}");
    assert!(matches!(
        network.register_template("recorder", |_| unreachable!()),
        Err(RuntimeError::DuplicateTemplate(_))
    ));
    network.start().unwrap();
    assert!(matches!(network.start(), Err(RuntimeError::AlreadyStarted)));
    network.shutdown();
    assert!(network.send_to_actor("a", "in", 1i64).is_err());
}

#[test]
fn nodes_added_after_start_take_part() {
    let network = Network::new(config(2, 8));
    network.start().unwrap();
    network.add_node("late", "passthrough", json!({})).unwrap();
    let log = recorder(&network, "sink");
    network.connect("late", "out", "sink", "in").unwrap();
    network.send_to_actor("late", "in", "after start").unwrap();
    assert!(log.wait_until(WAIT, |r| r.len() == 1));
    network.shutdown();
}

#[test]
fn templates_make_one_actor_per_node() {
    let network = Network::new(config(2, 8));
    let made = Arc::new(AtomicUsize::new(0));
    let counter = made.clone();
    network
        .register_template("tagger", move |meta| {
            counter.fetch_add(1, Ordering::SeqCst);
            let tag = meta
                .get("tag")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string();
            Box::new(FnActor::new(&["in"], &["out"], move |ctx| {
                ctx.emit("out", tag.as_str())
            }))
        })
        .unwrap();
    network.add_node("t1", "tagger", json!({"tag": "one"})).unwrap();
    network.add_node("t2", "tagger", json!({"tag": "two"})).unwrap();
    let log = recorder(&network, "sink");
    network.connect("t1", "out", "sink", "in").unwrap();
    network.connect("t2", "out", "sink", "in").unwrap();
    network.start().unwrap();
    network.send_to_actor("t1", "in", Message::Flow).unwrap();
    assert!(log.wait_until(WAIT, |r| r.len() == 1));
    network.send_to_actor("t2", "in", Message::Flow).unwrap();
    assert!(log.wait_until(WAIT, |r| r.len() == 2));
    let tags: Vec<_> = log.records().iter().map(|r| r.message.clone()).collect();
    assert_eq!(tags, vec![Message::string("one"), Message::string("two")]);
    assert_eq!(made.load(Ordering::SeqCst), 2);
    network.shutdown();
}

#[test]
fn idle_event_follows_the_last_tick() {
    let network = Network::new(config(2, 8));
    let log = recorder(&network, "sink");
    let events = network.events();
    network.start().unwrap();
    network.send_to_actor("sink", "in", 1i64).unwrap();
    loop {
        match events.recv_timeout(WAIT).expect("an idle event") {
            NetworkEvent::Idle => break,
            _ => continue,
        }
    }
    assert_eq!(log.len(), 1);
    network.shutdown();
    let mut rest: Vec<NetworkEvent> = events.try_iter().collect();
    rest.retain(|e| matches!(e, NetworkEvent::ShuttingDown | NetworkEvent::Shutdown));
    assert_eq!(rest, vec![NetworkEvent::ShuttingDown, NetworkEvent::Shutdown]);
}

/// Passes messages on when `open`, else hands them back to be queued.
struct Relay {
    open: std::sync::atomic::AtomicBool,
    out: std::sync::Mutex<Vec<i64>>,
}

impl reflow_distributed::runtime::Forward for Relay {
    fn try_forward(&self, _port: &str, message: Message, _origin: &Origin) -> Result<(), Message> {
        if !self.open.load(Ordering::SeqCst) {
            return Err(message);
        }
        self.out.lock().unwrap().push(message.as_i64().unwrap_or(-1));
        Ok(())
    }
}

struct RelayActor(Arc<Relay>);

impl reflow_distributed::runtime::Actor for RelayActor {
    fn inports(&self) -> Vec<String> {
        vec!["in".into()]
    }
    fn outports(&self) -> Vec<String> {
        Vec::new()
    }
    fn forwarder(&self) -> Option<Arc<dyn reflow_distributed::runtime::Forward>> {
        Some(self.0.clone())
    }
    fn run(
        &mut self,
        ctx: &mut reflow_distributed::runtime::ActorContext<'_>,
    ) -> Result<(), reflow_distributed::runtime::ActorError> {
        let n = ctx.input("in").and_then(Message::as_i64).unwrap_or(-1);
        self.0.out.lock().unwrap().push(n);
        Ok(())
    }
}

#[test]
fn forwarders_take_messages_inline_without_reordering_queued_ones() {
    let network = Network::new(config(1, 4));
    let relay = Arc::new(Relay {
        open: std::sync::atomic::AtomicBool::new(false),
        out: std::sync::Mutex::new(Vec::new()),
    });
    network
        .add_actor("relay", Box::new(RelayActor(relay.clone())), json!({}))
        .unwrap();
    network.start().unwrap();
    // Refused messages are queued for ticks; once the forwarder accepts again,
    // later messages still wait behind any that are queued.
    for i in 0..200i64 {
        relay.open.store(i % 7 != 0, Ordering::SeqCst);
        network.send_to_actor("relay", "in", i).unwrap();
    }
    let deadline = std::time::Instant::now() + WAIT;
    while relay.out.lock().unwrap().len() < 200 {
        assert!(std::time::Instant::now() < deadline, "not every message arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(*relay.out.lock().unwrap(), (0..200).collect::<Vec<i64>>());
    network.shutdown();
}
