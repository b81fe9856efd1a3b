//! Which thread runs a node's turn when a remote message reaches it: the
//! connection's reader when the node's turns are short
//! (`NetworkConfig::inline_turn_limit`), a pool worker otherwise. Two peers
//! in one process over real loopback sockets; each actor records the name of
//! the thread each of its ticks ran on. Messages go one at a time (the next
//! once the last was recorded), so every one finds its node idle and makes
//! it ready anew.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reflow_distributed::DistributedConfig;
use reflow_distributed::Message;
use reflow_distributed::bridge::DeliveryMode;
use reflow_distributed::distributed_network::DistributedNetwork;
use reflow_distributed::runtime::{FnActor, NetworkEvent};

const PATIENCE: Duration = Duration::from_secs(10);
const READER: &str = "bridge-reader-alpha";
const WORKER: &str = "reflow-worker-";

fn config(network: &str, inline_turn_limit: Duration) -> DistributedConfig {
    let mut config = DistributedConfig::new(network);
    config.bridge.bind_address = "127.0.0.1".into();
    config.bridge.bind_port = 0;
    config.bridge.heartbeat_interval = Duration::from_millis(100);
    config.network.workers = 2;
    config.network.inline_turn_limit = inline_turn_limit;
    config
}

/// Per tick: the thread it ran on and the message it took.
type Ticks = Arc<Mutex<Vec<(String, Message)>>>;

/// alpha linked to beta, where actor `probe` records its ticks, sleeps
/// for a message `Integer(ms)` and panics for `"panic"`.
struct Pair {
    alpha: DistributedNetwork,
    beta: DistributedNetwork,
    ticks: Ticks,
}

impl Pair {
    fn new(inline_turn_limit: Duration) -> Pair {
        Pair::with(inline_turn_limit, |_| {})
    }

    /// As [`Pair::new`], with `adjust` applied to both peers' configs.
    fn with(inline_turn_limit: Duration, adjust: impl Fn(&mut DistributedConfig)) -> Pair {
        let ticks: Ticks = Arc::default();
        let recorded = ticks.clone();
        let probe = FnActor::new(&["in"], &[], move |ctx| {
            let Some(message) = ctx.take_input("in") else {
                return Ok(());
            };
            if let Message::Integer(ms) = message {
                std::thread::sleep(Duration::from_millis(ms as u64));
            }
            if message == Message::string("panic") {
                panic!("asked to");
            }
            let thread = std::thread::current().name().unwrap_or("?").to_string();
            recorded.lock().unwrap().push((thread, message));
            Ok(())
        });
        let mut beta_config = config("beta", inline_turn_limit);
        adjust(&mut beta_config);
        let beta = DistributedNetwork::new(beta_config).unwrap();
        beta.register_local_actor("probe", Box::new(probe), serde_json::json!({}))
            .unwrap();
        beta.start().unwrap();
        let mut alpha_config = config("alpha", inline_turn_limit);
        alpha_config.instance_id = "alpha-1".into();
        adjust(&mut alpha_config);
        let alpha = DistributedNetwork::new(alpha_config).unwrap();
        alpha.start().unwrap();
        let endpoint = beta.local_addr().unwrap().to_string();
        alpha.connect_to_network(&endpoint).unwrap();
        Pair { alpha, beta, ticks }
    }

    /// Sends `message` to `probe@beta` and returns the thread its tick ran
    /// on, once the turn has ended (so the next message finds the node idle).
    fn tick(&self, message: Message) -> String {
        let before = self.ticks.lock().unwrap().len();
        self.alpha
            .send_to_remote_actor("beta", "probe", "in", message.clone())
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some((thread, got)) = self.ticks.lock().unwrap().get(before)
                && self.beta.get_local_network().is_idle()
            {
                assert_eq!(got, &message);
                return thread.clone();
            }
            assert!(Instant::now() < deadline, "no tick for {message:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn a_node_with_short_turns_runs_on_the_reader_that_delivered_its_message() {
    // A limit no turn of this test comes near, however loaded the machine.
    let pair = Pair::new(Duration::from_secs(10));
    let first = pair.tick(Message::string("first"));
    assert!(
        first.starts_with(WORKER),
        "a node's first turn goes to a worker (its length is unknown), ran on {first}"
    );
    for i in 0..20 {
        let thread = pair.tick(Message::string(format!("m{i}")));
        assert_eq!(thread, READER, "message {i}");
    }
}

#[test]
fn a_node_whose_turns_grow_long_leaves_the_reader_after_one_such_turn() {
    let pair = Pair::new(Duration::from_millis(5));
    pair.tick(Message::string("first"));
    // Short turns: the reader runs them (a turn of some microseconds is far
    // under 5 ms; the running average forgives one slowed by the machine).
    let on_reader = (0..20)
        .filter(|i| pair.tick(Message::string(format!("m{i}"))) == READER)
        .count();
    assert!(
        on_reader >= 10,
        "only {on_reader} of 20 short turns ran on the reader"
    );
    // A 100 ms turn lifts the average to 25 ms and more: the next turns go
    // to the workers until it has decayed under 5 ms (six turns at least).
    pair.tick(Message::Integer(100));
    for i in 0..3 {
        let thread = pair.tick(Message::string(format!("after {i}")));
        assert!(
            thread.starts_with(WORKER),
            "turn {i} after a long one ran on {thread}"
        );
    }
}

#[test]
fn an_actor_that_panics_on_the_reader_fails_alone_and_the_connection_reads_on() {
    let pair = Pair::new(Duration::from_secs(10));
    let events = pair.beta.get_local_network().events();
    pair.tick(Message::string("first"));
    assert_eq!(pair.tick(Message::string("before")), READER);
    pair.alpha
        .send_to_remote_actor("beta", "probe", "in", "panic")
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let (node, error) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(NetworkEvent::ActorFailed { node, error }) => break (node, error),
            Ok(_) => continue,
            Err(_) => panic!("no ActorFailed event within {PATIENCE:?}"),
        }
    };
    assert_eq!(node, "probe");
    assert!(error.contains("asked to"), "{error}");
    // The reader caught the panic with the turn, and reads the next message.
    for i in 0..5 {
        pair.tick(Message::string(format!("after {i}")));
    }
    assert!(pair.beta.is_connected_to("alpha"));
}

#[test]
fn a_turn_runs_on_the_reader_only_with_the_stack_it_would_have_on_a_worker() {
    // Workers get 16 MiB here, the reader 2 MiB: a turn that needs more
    // than the reader has would end the process (a stack overflow cannot
    // be caught), so every turn goes to a worker.
    let pair = Pair::with(Duration::from_secs(10), |config| {
        config.network.thread_stack_bytes = 16 * 1024 * 1024;
    });
    for i in 0..20 {
        let thread = pair.tick(Message::string(format!("m{i}")));
        assert!(thread.starts_with(WORKER), "message {i} ran on {thread}");
    }
}

#[test]
fn a_sequenced_message_is_never_run_on_the_reader() {
    // Its reader holds the network's handover turn until the message is in
    // the inbox; another session's reader of the same network may wait for
    // it, so the turn is left to a worker.
    let pair = Pair::with(Duration::from_secs(10), |config| {
        config.bridge.delivery.mode = DeliveryMode::Acknowledged;
    });
    for i in 0..20 {
        let thread = pair.tick(Message::string(format!("m{i}")));
        assert!(thread.starts_with(WORKER), "message {i} ran on {thread}");
    }
    assert_eq!(pair.alpha.wait_acknowledged("beta", PATIENCE), 0);
}

#[test]
fn a_live_instance_is_not_replaced_while_its_reader_runs_a_long_turn() {
    // The reader reads nothing during the turn, so it cannot read the
    // answer to the ping that asks whether alpha-1 is alive: that counts
    // as alive, as for eviction, and the second instance is refused.
    let pair = Pair::new(Duration::from_secs(10));
    pair.tick(Message::string("first"));
    assert_eq!(pair.tick(Message::string("short")), READER);
    let before = pair.ticks.lock().unwrap().len();
    pair.alpha
        .send_to_remote_actor("beta", "probe", "in", Message::Integer(1500))
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while pair.beta.get_local_network().is_idle() {
        assert!(Instant::now() < deadline, "the long turn did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut second = config("alpha", Duration::from_secs(10));
    second.instance_id = "alpha-2".into();
    let alpha_2 = DistributedNetwork::new(second).unwrap();
    alpha_2.start().unwrap();
    let endpoint = pair.beta.local_addr().unwrap().to_string();
    let refused = alpha_2.connect_to_network(&endpoint);
    let running = pair.ticks.lock().unwrap().len() == before;
    assert!(
        running,
        "the long turn ended before the second instance was refused"
    );
    let error = refused.expect_err("a second instance replaced the live one");
    assert!(error.to_string().contains("alpha-1"), "{error}");
    assert!(pair.beta.is_connected_to("alpha"));
}

#[test]
fn with_the_limit_at_zero_every_turn_goes_to_a_worker() {
    let pair = Pair::new(Duration::ZERO);
    for i in 0..20 {
        let thread = pair.tick(Message::string(format!("m{i}")));
        assert!(thread.starts_with(WORKER), "message {i} ran on {thread}");
    }
}

#[test]
fn an_actor_that_stops_its_network_from_the_reader_lets_the_shutdown_finish() {
    // The shutdown runs on the reader (the node's turns are short), which the
    // bridge's shutdown would otherwise wait for and then try to join: it
    // must count neither itself nor wait out `close_timeout`.
    let network: Arc<std::sync::OnceLock<std::sync::Weak<DistributedNetwork>>> = Arc::default();
    let stopped: Arc<Mutex<Option<(String, Duration)>>> = Arc::default();
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (handle, report, count) = (network.clone(), stopped.clone(), taken.clone());
    let stopper = FnActor::new(&["in"], &[], move |ctx| {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if ctx.take_input("in") == Some(Message::string("stop"))
            && let Some(net) = handle.get().and_then(std::sync::Weak::upgrade)
        {
            let began = Instant::now();
            net.shutdown();
            let thread = std::thread::current().name().unwrap_or("?").to_string();
            *report.lock().unwrap() = Some((thread, began.elapsed()));
        }
        Ok(())
    });
    let mut beta_config = config("beta", Duration::from_secs(10));
    beta_config.bridge.close_timeout = Duration::from_secs(30);
    let beta = Arc::new(DistributedNetwork::new(beta_config).unwrap());
    beta.register_local_actor("stopper", Box::new(stopper), serde_json::json!({}))
        .unwrap();
    beta.start().unwrap();
    network.set(Arc::downgrade(&beta)).unwrap();
    let alpha = DistributedNetwork::new(config("alpha", Duration::from_secs(10))).unwrap();
    alpha.start().unwrap();
    alpha
        .connect_to_network(&beta.local_addr().unwrap().to_string())
        .unwrap();

    // The first turn goes to a worker; the second runs on the reader.
    alpha
        .send_to_remote_actor("beta", "stopper", "in", "warm")
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while taken.load(std::sync::atomic::Ordering::SeqCst) == 0 || !beta.get_local_network().is_idle() {
        assert!(Instant::now() < deadline, "the first message was not taken");
        std::thread::sleep(Duration::from_millis(1));
    }
    alpha
        .send_to_remote_actor("beta", "stopper", "in", "stop")
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let (thread, took) = loop {
        if let Some(done) = stopped.lock().unwrap().clone() {
            break done;
        }
        assert!(
            Instant::now() < deadline,
            "the shutdown begun by the actor did not return"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(thread, READER);
    assert!(
        took < PATIENCE,
        "the shutdown took {took:?}: it waited for its own thread"
    );
    assert!(!beta.is_connected_to("alpha"));
}
