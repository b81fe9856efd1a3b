//! A network blip between two peers, under steady numbered traffic.
//!
//! Beta dials alpha through a TCP relay written here (two threads per
//! connection, 127.0.0.1 only) that can stall (stop forwarding both ways,
//! sockets kept open) or cut (close both sockets). Both peers are
//! `DistributedNetwork`s in this process, so every message is counted: beta
//! sends one numbered Integer per millisecond to alpha's `sink`, which
//! records the numbers in arrival order. Each scenario reports sent, refused
//! (the send returned an error), delivered, lost, duplicates and order, and
//! checks that the loss, if any, lies within the fault.
//!
//! The three tests take turns (one lock), so that one's traffic does not
//! starve another's heartbeats on a small machine.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::harness::{Outcomes, Tally, Traffic};
use crossbeam_channel::Receiver;
use reflow_distributed::DistributedConfig;
use reflow_distributed::Message;
use reflow_distributed::bridge::{BridgeEvent, ReconnectPolicy};
use reflow_distributed::distributed_network::DistributedNetwork;
use reflow_distributed::runtime::FnActor;
use serde_json::json;

/// Heartbeat interval: a connection silent for 3 of them (600 ms) is evicted.
const BEAT: Duration = Duration::from_millis(200);
/// One message per millisecond from beta to alpha.
const PERIOD: Duration = Duration::from_millis(1);
/// Deadline for what should happen soon, even on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(15);
/// Messages that must arrive before a fault, and again after recovery.
const FLOWING: u64 = 300;

static TURN: Mutex<()> = Mutex::new(());

fn take_turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn init_logging() {
    // Silent unless RUST_LOG is set (e.g. RUST_LOG=info).
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Off)
        .env()
        .with_module_level("tungstenite", log::LevelFilter::Info)
        .init();
}

/// Polls `condition` every 5 ms until it holds; panics after PATIENCE.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------- the relay

/// A TCP relay from a local port to `target`: one pair of sockets and two
/// pump threads per accepted connection.
struct Relay {
    addr: SocketAddr,
    shared: Arc<RelayShared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct RelayShared {
    stalled: Mutex<bool>,
    resumed: Condvar,
    stopping: AtomicBool,
    /// Both sockets of every pair relayed so far, for `cut`.
    sockets: Mutex<Vec<TcpStream>>,
    pumps: Mutex<Vec<JoinHandle<()>>>,
    accepted: AtomicU64,
}

impl RelayShared {
    fn wait_while_stalled(&self) {
        let mut stalled = lock(&self.stalled);
        while *stalled && !self.stopping.load(Ordering::Acquire) {
            stalled = self
                .resumed
                .wait_timeout(stalled, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        let shared = Arc::new(RelayShared::default());
        let for_thread = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || accept_loop(&listener, target, &for_thread))
            .expect("spawn the relay");
        Relay {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Stops forwarding, both ways and on every connection (new ones too);
    /// the sockets stay open and unread, so the senders' buffers fill.
    fn stall(&self) {
        *lock(&self.shared.stalled) = true;
    }

    fn resume(&self) {
        *lock(&self.shared.stalled) = false;
        self.shared.resumed.notify_all();
    }

    /// Closes both sockets of every connection relayed so far.
    fn cut(&self) {
        for socket in lock(&self.shared.sockets).drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Connections accepted so far.
    fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Acquire)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.resume();
        self.cut();
        // Wakes the accept loop, which then sees `stopping`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.cut();
        for pump in lock(&self.shared.pumps).drain(..) {
            let _ = pump.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, shared: &Arc<RelayShared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::AcqRel);
        let (Ok(client2), Ok(server2), Ok(client3), Ok(server3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        lock(&shared.sockets).extend([client3, server3]);
        let mut pumps = lock(&shared.pumps);
        for (from, to, name) in [(client, server, "relay-up"), (server2, client2, "relay-down")] {
            let shared = shared.clone();
            let pump = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || pump(from, to, &shared))
                .expect("spawn a relay pump");
            pumps.push(pump);
        }
    }
}

/// Copies `from` to `to` until either side closes; waits while stalled,
/// before reading and again before writing what it read.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &RelayShared) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        shared.wait_while_stalled();
        let n = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        shared.wait_while_stalled();
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

// ---------------------------------------------------------------- the peers

fn config(network: &str) -> DistributedConfig {
    let mut config = DistributedConfig::new(network);
    config.bridge.bind_address = "127.0.0.1".into();
    config.bridge.bind_port = 0;
    config.bridge.heartbeat_interval = BEAT;
    config.bridge.connect_timeout = Duration::from_secs(2);
    // A redial stuck in the stalled relay gives up after this and tries again.
    config.bridge.handshake_timeout = Duration::from_secs(1);
    config.bridge.reconnect = ReconnectPolicy {
        initial_delay: Duration::from_millis(100),
        multiplier: 2,
        max_delay: Duration::from_millis(400),
        max_attempts: 100,
    };
    config.network.workers = 2;
    // A send that finds the connection's queue full fails soon.
    config.network.send_timeout = Duration::from_millis(100);
    config
}

/// Alpha (hosting `sink`), beta, and the relay beta dials alpha through.
struct Link {
    alpha: Arc<DistributedNetwork>,
    beta: Arc<DistributedNetwork>,
    relay: Relay,
    /// Sequence numbers in the order alpha's `sink` got them.
    arrived: Arc<Mutex<Vec<u64>>>,
    alpha_events: Receiver<BridgeEvent>,
    beta_events: Receiver<BridgeEvent>,
}

impl Link {
    fn start() -> Link {
        init_logging();
        let alpha = DistributedNetwork::new(config("alpha")).expect("valid config");
        let arrived = Arc::new(Mutex::new(Vec::new()));
        let log = arrived.clone();
        let sink = FnActor::new(&["in"], &[], move |ctx| {
            let seq = ctx
                .input("in")
                .and_then(Message::as_i64)
                .ok_or("an Integer sequence number")?;
            lock(&log).push(seq as u64);
            Ok(())
        });
        alpha
            .register_local_actor("sink", Box::new(sink), json!({}))
            .unwrap();
        alpha.start().unwrap();
        let relay = Relay::start(alpha.local_addr().expect("started"));
        let beta = DistributedNetwork::new(config("beta")).expect("valid config");
        beta.start().unwrap();
        let alpha_events = alpha.bridge_events().unwrap();
        let beta_events = beta.bridge_events().unwrap();
        assert_eq!(beta.connect_to_network(&relay.endpoint()).unwrap(), "alpha");
        wait_until("alpha to list beta", || alpha.is_connected_to("beta"));
        Link {
            alpha: Arc::new(alpha),
            beta: Arc::new(beta),
            relay,
            arrived,
            alpha_events,
            beta_events,
        }
    }

    fn both_connected(&self) -> bool {
        self.alpha.is_connected_to("beta") && self.beta.is_connected_to("alpha")
    }

    /// Beta sends `seq` to alpha's sink every PERIOD.
    fn traffic(&self) -> Traffic {
        let beta = self.beta.clone();
        Traffic::start(PERIOD, move |seq| {
            beta.send_to_remote_actor("alpha", "sink", "in", seq as i64)
                .map_err(|e| e.to_string())
        })
    }

    fn arrived(&self) -> Vec<u64> {
        lock(&self.arrived).clone()
    }

    fn last_arrived(&self) -> Option<u64> {
        lock(&self.arrived).last().copied()
    }

    /// Waits until a message numbered `seq` or later has arrived.
    fn wait_arrival_from(&self, seq: u64) {
        wait_until(&format!("message #{seq} or later to arrive"), || {
            self.last_arrived().is_some_and(|last| last >= seq)
        });
    }

    fn shutdown(self) {
        self.beta.shutdown();
        self.alpha.shutdown();
    }
}

/// Everything one scenario measured.
struct Report {
    tally: Tally,
    /// First sequence number not delivered when the fault began.
    fault_from: u64,
    /// First sequence number sent once both sides listed the link again.
    recovered_at: u64,
    outcomes: Outcomes,
}

/// Steady traffic; `fault` runs once messages flow and returns once both
/// peers list the link again; traffic goes on until FLOWING more messages
/// arrive, then stops and drains.
fn run_scenario(name: &str, link: &Link, fault: impl FnOnce(&Link)) -> Report {
    let traffic = link.traffic();
    link.wait_arrival_from(FLOWING);

    let fault_from = link.last_arrived().map_or(0, |last| last + 1);
    fault(link);
    assert!(
        link.both_connected(),
        "{name}: the fault must end with both connected"
    );
    let recovered_at = traffic.next_seq();

    link.wait_arrival_from(recovered_at + FLOWING);
    let outcomes = traffic.stop();
    // Everything sent after the recovery arrives, so wait for the last of it.
    if let Some(&last) = outcomes.accepted.last() {
        link.wait_arrival_from(last);
    }
    let end = outcomes.accepted.last().map_or(0, |last| last + 1);
    let arrived = link.arrived();
    let tally = Tally::of(&outcomes, &arrived, 0..end);
    println!("{name}: {}", tally.summary());
    let after = Tally::of(&outcomes, &arrived, recovered_at..end);
    println!(
        "{name}: fault from #{fault_from}, recovered at #{recovered_at}; after recovery: {}",
        after.summary()
    );
    if !outcomes.errors.is_empty() {
        println!("{name}: refusals read like: {}", outcomes.errors.join(" | "));
    }
    Report {
        tally,
        fault_from,
        recovered_at,
        outcomes,
    }
}

/// What every scenario must show: no duplicates, increasing order, losses
/// only within the fault, and every message sent after recovery delivered.
fn assert_clean(name: &str, report: &Report) {
    let tally = &report.tally;
    assert_eq!(tally.duplicates, 0, "{name}: {}", tally.summary());
    assert_eq!(tally.out_of_order, 0, "{name}: {}", tally.summary());
    let outside: Vec<u64> = tally
        .lost
        .iter()
        .copied()
        .filter(|seq| !(report.fault_from..report.recovered_at).contains(seq))
        .collect();
    assert!(
        outside.is_empty(),
        "{name}: lost outside the fault #{}..#{}: {outside:?}",
        report.fault_from,
        report.recovered_at
    );
    assert!(
        report
            .outcomes
            .refused
            .iter()
            .all(|seq| (report.fault_from..report.recovered_at).contains(seq)),
        "{name}: sends refused outside the fault: {:?}",
        report.outcomes.errors
    );
}

fn evictions(events: &Receiver<BridgeEvent>) -> (usize, usize, usize) {
    let (mut evicted, mut disconnected, mut reconnected) = (0, 0, 0);
    for event in events.try_iter() {
        match event {
            BridgeEvent::Evicted { .. } => evicted += 1,
            BridgeEvent::Disconnected { .. } => disconnected += 1,
            BridgeEvent::Reconnected { .. } => reconnected += 1,
            _ => {}
        }
    }
    (evicted, disconnected, reconnected)
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// ---------------------------------------------------------------- scenarios

#[test]
fn a_stall_shorter_than_the_eviction_window_loses_nothing_and_evicts_nobody() {
    let _turn = take_turn();
    let link = Link::start();
    let mut stall_took = Duration::ZERO;
    let report = run_scenario("short stall", &link, |link| {
        let started = Instant::now();
        link.relay.stall();
        // The stall itself: one heartbeat interval, a third of the window.
        std::thread::sleep(BEAT);
        link.relay.resume();
        stall_took = started.elapsed();
    });
    // Past 2 intervals (a very loaded machine) an eviction would be right,
    // and this check would prove nothing.
    assert!(
        stall_took < 2 * BEAT,
        "the stall lasted {} ms, too long for this check",
        ms(stall_took)
    );
    println!(
        "short stall: {} ms (eviction after {} ms of silence)",
        ms(stall_took),
        ms(3 * BEAT)
    );
    assert_clean("short stall", &report);
    assert!(report.tally.lost.is_empty(), "{}", report.tally.summary());
    assert_eq!(report.tally.refused, 0, "{:?}", report.outcomes.errors);
    assert_eq!(evictions(&link.alpha_events), (0, 0, 0), "alpha dropped the link");
    assert_eq!(evictions(&link.beta_events), (0, 0, 0), "beta dropped the link");
    assert_eq!(link.relay.accepted(), 1, "beta dialed again");
    link.shutdown();
}

#[test]
fn a_stall_longer_than_the_eviction_window_evicts_both_sides_and_beta_redials() {
    let _turn = take_turn();
    let link = Link::start();
    let mut timings = (Duration::ZERO, Duration::ZERO);
    let report = run_scenario("long stall", &link, |link| {
        let redials = link.beta.bridge_events().unwrap();
        let started = Instant::now();
        link.relay.stall();
        // Stalled until both sides have given up on the connection, and a
        // redial has timed out in the stalled relay (its handshake unanswered).
        wait_until("both sides to evict", || {
            let evicted = |net: &DistributedNetwork| net.bridge_stats().is_some_and(|s| s.evictions >= 1);
            evicted(&link.alpha) && evicted(&link.beta)
        });
        let evicted_after = started.elapsed();
        let failed = loop {
            match redials.recv_timeout(PATIENCE) {
                Ok(BridgeEvent::ReconnectFailed { reason, .. }) => break reason,
                Ok(_) => continue,
                Err(_) => panic!("no redial failed while the relay was stalled"),
            }
        };
        println!("long stall: a redial during the stall failed: {failed}");
        let resumed = Instant::now();
        link.relay.resume();
        wait_until("beta to redial through the relay", || link.both_connected());
        timings = (evicted_after, resumed.elapsed());
    });
    println!(
        "long stall: both evicted {} ms into the stall; resume -> link back: {} ms",
        ms(timings.0),
        ms(timings.1)
    );
    assert!(timings.0 >= 2 * BEAT, "evicted after {} ms", ms(timings.0));
    assert_clean("long stall", &report);
    let (alpha_evicted, _, _) = evictions(&link.alpha_events);
    let (beta_evicted, _, beta_reconnected) = evictions(&link.beta_events);
    assert_eq!((alpha_evicted, beta_evicted), (1, 1));
    assert_eq!(beta_reconnected, 1);
    assert!(link.relay.accepted() >= 2);
    link.shutdown();
}

#[test]
fn a_cut_connection_is_redialed_by_beta() {
    let _turn = take_turn();
    let link = Link::start();
    let mut back_after = Duration::ZERO;
    let report = run_scenario("cut", &link, |link| {
        let cut = Instant::now();
        link.relay.cut();
        wait_until("beta to notice the cut", || !link.beta.is_connected_to("alpha"));
        wait_until("beta to redial through the relay", || link.both_connected());
        back_after = cut.elapsed();
    });
    println!("cut -> link back: {} ms", ms(back_after));
    assert_clean("cut", &report);
    let (alpha_evicted, alpha_lost, _) = evictions(&link.alpha_events);
    let (beta_evicted, beta_lost, beta_reconnected) = evictions(&link.beta_events);
    assert_eq!(
        (alpha_evicted, beta_evicted),
        (0, 0),
        "a cut is noticed, not timed out"
    );
    assert_eq!((alpha_lost, beta_lost, beta_reconnected), (1, 1, 1));
    assert_eq!(link.relay.accepted(), 2);
    link.shutdown();
}
