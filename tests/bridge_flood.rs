//! Honest sends under load, in process: two `DistributedNetwork`s, beta
//! sending numbered Integers to alpha's `counter` as fast as it can. Every
//! attempt either returns `Ok` (queued) or an error that hands the message
//! back; every `Ok` is delivered, or counted in `lost_messages`, or (only when
//! the connection dies) was already written to the socket when it died.
//!
//! The tests take turns (one lock): each loads the machine, and the others
//! check heartbeats.

mod bridge_support;
mod relay_support;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bridge_support::{eventually, init_logging};
use crossbeam_channel::Receiver;
use reflow_distributed::DistributedConfig;
use reflow_distributed::Message;
use reflow_distributed::bridge::{BridgeError, BridgeEvent, BridgeStats};
use reflow_distributed::distributed_network::{DistributedError, DistributedNetwork};
use reflow_distributed::runtime::FnActor;
use relay_support::Relay;
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(60);

static TURN: Mutex<()> = Mutex::new(());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A growable set of sequence numbers.
#[derive(Default, Clone)]
struct Bits(Vec<u64>);

impl Bits {
    /// Adds `n`; false if it was there already.
    fn insert(&mut self, n: u64) -> bool {
        let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }

    fn count_common(&self, other: &Bits) -> u64 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| u64::from((a & b).count_ones()))
            .sum()
    }
}

/// What alpha's counter saw.
#[derive(Default)]
struct Arrivals {
    seen: Bits,
    count: u64,
    duplicates: u64,
    out_of_order: u64,
    last: Option<u64>,
}

/// What beta's sends returned.
#[derive(Default)]
struct Attempts {
    count: u64,
    ok: Bits,
    ok_count: u64,
    err: Bits,
    err_count: u64,
    /// Errors by kind.
    kinds: std::collections::BTreeMap<&'static str, u64>,
    /// Errors that did not hand back the message that was sent.
    not_handed_back: u64,
}

impl Attempts {
    /// One send of `seq`; checks that a failure hands `seq` back.
    fn record(&mut self, seq: u64, result: Result<(), DistributedError>) {
        self.count += 1;
        match result {
            Ok(()) => {
                self.ok.insert(seq);
                self.ok_count += 1;
            }
            Err(err) => {
                self.err.insert(seq);
                self.err_count += 1;
                *self.kinds.entry(kind(&err)).or_default() += 1;
                if err.into_message() != Some(Message::Integer(seq as i64)) {
                    self.not_handed_back += 1;
                }
            }
        }
    }
}

fn kind(err: &DistributedError) -> &'static str {
    match err {
        DistributedError::NotSent(e) => match e.error() {
            BridgeError::QueueFull { .. } => "queue full",
            BridgeError::WindowFull { .. } => "window full",
            BridgeError::ConnectionClosed(_) => "connection closed",
            BridgeError::NoConnection(_) => "no connection",
            _ => "other",
        },
        _ => "other",
    }
}

fn config(network: &str, beat: Duration) -> DistributedConfig {
    let mut config = DistributedConfig::new(network);
    config.bridge.bind_address = "127.0.0.1".into();
    config.bridge.bind_port = 0;
    config.bridge.heartbeat_interval = beat;
    config.bridge.connect_timeout = Duration::from_secs(3);
    config.bridge.handshake_timeout = Duration::from_secs(3);
    config.network.workers = 2;
    config.network.send_timeout = Duration::from_millis(2);
    // Without credits: these cases are about the data lane filling behind a
    // reader that blocks on a full inbox (the flow control toward a peer
    // without them); per-target credits have their own suite
    // (tests/delivery.rs).
    config.bridge.delivery.offer = false;
    config
}

struct Pair {
    alpha: DistributedNetwork,
    beta: DistributedNetwork,
    arrivals: Arc<Mutex<Arrivals>>,
    alpha_events: Receiver<BridgeEvent>,
    beta_events: Receiver<BridgeEvent>,
}

/// Alpha hosts `counter`, which takes `work` per message (a slow receiver
/// when non-zero); beta dials alpha at `via(alpha's address)`.
fn start_pair(
    alpha_config: DistributedConfig,
    beta_config: DistributedConfig,
    work: Duration,
    via: impl FnOnce(std::net::SocketAddr) -> String,
) -> Pair {
    init_logging();
    let alpha = DistributedNetwork::new(alpha_config).unwrap();
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let log = arrivals.clone();
    let counter = FnActor::new(&["in"], &[], move |ctx| {
        let seq = ctx.input("in").and_then(Message::as_i64).ok_or("an Integer")? as u64;
        if !work.is_zero() {
            // The slow consumer being simulated.
            std::thread::sleep(work);
        }
        let mut a = lock(&log);
        if !a.seen.insert(seq) {
            a.duplicates += 1;
        }
        if a.last.is_some_and(|last| seq <= last) {
            a.out_of_order += 1;
        }
        a.last = Some(seq);
        a.count += 1;
        Ok(())
    });
    alpha
        .register_local_actor("counter", Box::new(counter), json!({}))
        .unwrap();
    alpha.start().unwrap();
    let beta = DistributedNetwork::new(beta_config).unwrap();
    beta.start().unwrap();
    let alpha_events = alpha.bridge_events().unwrap();
    let beta_events = beta.bridge_events().unwrap();
    let endpoint = via(alpha.local_addr().unwrap());
    assert_eq!(beta.connect_to_network(&endpoint).unwrap(), "alpha");
    assert!(eventually(PATIENCE, || alpha.is_connected_to("beta")));
    Pair {
        alpha,
        beta,
        arrivals,
        alpha_events,
        beta_events,
    }
}

impl Pair {
    fn delivered(&self) -> u64 {
        lock(&self.arrivals).count
    }

    fn send(&self, seq: u64) -> Result<(), DistributedError> {
        self.beta
            .send_to_remote_actor("alpha", "counter", "in", seq as i64)
    }

    /// Beta sends as fast as it can for `span`.
    fn flood(&self, span: Duration) -> Attempts {
        let mut attempts = Attempts::default();
        let end = Instant::now() + span;
        let mut seq = 0;
        while Instant::now() < end {
            attempts.record(seq, self.send(seq));
            seq += 1;
        }
        attempts
    }
}

fn stats(net: &DistributedNetwork) -> BridgeStats {
    net.bridge_stats().expect("started")
}

/// Events other than Connected (a dropped link shows up here).
fn trouble(events: &Receiver<BridgeEvent>) -> Vec<BridgeEvent> {
    events
        .try_iter()
        .filter(|e| !matches!(e, BridgeEvent::Connected { .. }))
        .collect()
}

/// Floods for `span`, waits for the queue to drain, and checks the books:
/// no eviction, nothing dropped, every Ok delivered (or counted lost), every
/// error handed its message back, none of them delivered.
fn flood_and_account(name: &str, pair: &Pair, span: Duration) -> Attempts {
    let started = Instant::now();
    let attempts = pair.flood(span);
    let elapsed = started.elapsed().as_secs_f64();
    let lost = || pair.beta.lost_messages("alpha");
    let drained = eventually(PATIENCE, || pair.delivered() + lost() >= attempts.ok_count);
    let arrivals = lock(&pair.arrivals);
    let (alpha, beta) = (stats(&pair.alpha), stats(&pair.beta));
    println!(
        "{name}: {} attempts in {elapsed:.1} s ({:.0}/s): ok {} ({:.0}/s), errors {} {:?}; \
         delivered {}, lost {}; drained {} s after the flood",
        attempts.count,
        attempts.count as f64 / elapsed,
        attempts.ok_count,
        attempts.ok_count as f64 / elapsed,
        attempts.err_count,
        attempts.kinds,
        arrivals.count,
        lost(),
        started.elapsed().as_secs() - span.as_secs(),
    );
    assert!(drained, "{name}: never drained: {alpha:?} {beta:?}");
    assert_eq!(attempts.ok_count + attempts.err_count, attempts.count);
    assert_eq!(attempts.not_handed_back, 0, "{name}: errors without the message");
    assert_eq!(arrivals.count + lost(), attempts.ok_count, "{name}");
    assert_eq!(
        arrivals.seen.count_common(&attempts.err),
        0,
        "{name}: an error was delivered"
    );
    assert_eq!((arrivals.duplicates, arrivals.out_of_order), (0, 0), "{name}");
    assert_eq!(
        lost(),
        0,
        "{name}: the link never dropped, so nothing may be lost"
    );
    assert_eq!((alpha.evictions, beta.evictions), (0, 0), "{name}: evicted");
    assert_eq!(
        alpha.dropped_delivery_timeout + alpha.dropped_unknown_target,
        0,
        "{name}"
    );
    assert_eq!(trouble(&pair.alpha_events), vec![], "{name}: alpha");
    assert_eq!(trouble(&pair.beta_events), vec![], "{name}: beta");
    assert!(pair.alpha.is_connected_to("beta") && pair.beta.is_connected_to("alpha"));
    drop(arrivals);
    attempts
}

/// Case 7: A 20 s flood over a direct link with 200 ms heartbeats (eviction
/// after 600 ms of silence): no eviction, and the books balance. Before, a
/// refused send returned the error alone (`into_message` gave nothing back:
/// the message was gone), heartbeats shared the data queue and were dropped
/// when it was full, and nothing counted what a dropped link took with it.
#[test]
fn a_flood_keeps_the_link_and_every_send_is_accounted_for() {
    let _turn = lock(&TURN);
    let beat = Duration::from_millis(200);
    let pair = start_pair(config("alpha", beat), config("beta", beat), Duration::ZERO, |a| {
        a.to_string()
    });
    let attempts = flood_and_account("flood", &pair, Duration::from_secs(20));
    assert!(attempts.ok_count > 0);
    pair.beta.shutdown();
    pair.alpha.shutdown();
}

/// Case 7b: The receiver is slow (inbox of 1, 50 µs per message), so beta's
/// queue (64) fills and sends time out: the data lane is full for seconds,
/// heartbeats still go on the control lane, the link holds, and every
/// timed-out send hands its message back (before: the error alone).
#[test]
fn a_slow_receiver_fills_the_queue_without_losing_the_link() {
    let _turn = lock(&TURN);
    let beat = Duration::from_millis(200);
    let mut alpha = config("alpha", beat);
    alpha.network.inbox_capacity = 1;
    let mut beta = config("beta", beat);
    beta.bridge.outbound_queue_capacity = 64;
    let work = Duration::from_micros(50);
    let pair = start_pair(alpha, beta, work, |a| a.to_string());
    let attempts = flood_and_account("slow receiver", &pair, Duration::from_secs(5));
    assert!(
        attempts.kinds.get("queue full").copied().unwrap_or(0) > 0,
        "the queue never filled, so this proves nothing"
    );
    pair.beta.shutdown();
    pair.alpha.shutdown();
}

/// Case 8: A steady stream through a relay, cut from the outside (the relay shut
/// down) mid-stream. The relay first stops forwarding toward alpha until
/// beta's socket and queue are full, so every stage holds messages at the
/// cut. What a sender can know: an error handed the message back and it was
/// never delivered; an Ok was delivered, or counted lost (still queued when
/// the link died), or was written (handed to the WebSocket and the kernel:
/// then it may have died in a buffer on the way, and nobody can tell). So
/// the test checks `delivered + lost <= ok` and, on beta's side exactly,
/// `written + lost <= ok <= written + lost + 1` (the one message the writer
/// held when the socket failed). Before, queued messages vanished with the
/// link without a count, and `ok` exceeded `written + lost` by the queue.
#[test]
fn a_cut_mid_stream_leaves_every_send_honest() {
    let _turn = lock(&TURN);
    // 3 s of silence to evict: the stall before the cut must not evict.
    let beat = Duration::from_millis(1000);
    let capacity = 64;
    let mut alpha = config("alpha", beat);
    alpha.network.inbox_capacity = 1;
    let mut beta = config("beta", beat);
    beta.bridge.outbound_queue_capacity = capacity;
    let relay = Arc::new(Mutex::new(None::<Relay>));
    let slot = relay.clone();
    let pair = start_pair(alpha, beta, Duration::from_micros(50), move |alpha| {
        let relay = Relay::start(alpha, None);
        let endpoint = relay.endpoint();
        *lock(&slot) = Some(relay);
        endpoint
    });
    let mut relay = lock(&relay).take().expect("relay started");

    let pair = Arc::new(pair);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attempts = Arc::new(Mutex::new(Attempts::default()));
    let sender = {
        let (pair, stop, attempts) = (pair.clone(), stop.clone(), attempts.clone());
        std::thread::spawn(move || {
            let mut seq = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let result = pair.send(seq);
                lock(&attempts).record(seq, result);
                seq += 1;
            }
        })
    };
    assert!(eventually(PATIENCE, || pair.delivered() >= 200), "nothing flows");
    // Accepted but not written: beta's queue (and the writer's hand).
    let backlog = || {
        lock(&attempts)
            .ok_count
            .saturating_sub(stats(&pair.beta).messages_sent)
    };
    let stalled = Instant::now();
    relay.stall_up();
    // Cut when the queue is full and the writer has made no progress for a
    // moment: it is then stuck on a full socket. (Its progress, if any, comes
    // in bursts when the relay's kernel finds room; a cut right at one of
    // those would find the queue briefly low, which changes the counts but
    // not the invariants below.)
    let mut last_written = (u64::MAX, Instant::now());
    let stuck = eventually(PATIENCE, || {
        let written = stats(&pair.beta).messages_sent;
        if written != last_written.0 {
            last_written = (written, Instant::now());
        }
        backlog() >= capacity as u64 && last_written.1.elapsed() >= Duration::from_millis(20)
    });
    assert!(stuck, "beta's queue never filled");
    let stalled = stalled.elapsed();
    let before_cut = lock(&attempts).count;
    relay.shutdown();
    // Beta's session has ended and counted its losses once it reports the
    // disconnection; then a few more sends meet no connection.
    let ended = |events: &Receiver<BridgeEvent>| {
        let deadline = Instant::now() + PATIENCE;
        while let Ok(event) = events.recv_deadline(deadline) {
            if let BridgeEvent::Disconnected { .. } = event {
                return true;
            }
        }
        false
    };
    assert!(ended(&pair.beta_events), "beta never saw the cut");
    let after = lock(&attempts).count;
    assert!(eventually(PATIENCE, || lock(&attempts).count >= after + 100));
    stop.store(true, std::sync::atomic::Ordering::Release);
    sender.join().unwrap();
    assert!(ended(&pair.alpha_events), "alpha never saw the cut");
    // Alpha's reader has handed over its last message; wait for the counter
    // to have taken every one of them.
    let alpha_stats = stats(&pair.alpha);
    let handed = alpha_stats.messages_received
        - alpha_stats.dropped_delivery_timeout
        - alpha_stats.dropped_unknown_target;
    assert!(eventually(PATIENCE, || pair.delivered() >= handed));

    let attempts = lock(&attempts);
    let arrivals = lock(&pair.arrivals);
    let lost = pair.beta.lost_messages("alpha");
    let written = stats(&pair.beta).messages_sent;
    let (ok, delivered) = (attempts.ok_count, arrivals.count);
    println!(
        "cut: stuck {} ms into the stall; {} attempts ({before_cut} before the cut), ok {ok}, errors {} {:?}; \
         delivered {delivered}, lost (queued) {lost}, written {written}, in flight at the cut {}",
        stalled.as_millis(),
        attempts.count,
        attempts.err_count,
        attempts.kinds,
        ok.saturating_sub(delivered + lost),
    );
    assert_eq!(attempts.ok_count + attempts.err_count, attempts.count);
    assert_eq!(attempts.not_handed_back, 0, "errors without the message");
    // No error was delivered; so every delivery was an Ok.
    assert_eq!(
        arrivals.seen.count_common(&attempts.err),
        0,
        "an error was delivered"
    );
    assert_eq!(arrivals.seen.count_common(&attempts.ok), delivered);
    assert_eq!((arrivals.duplicates, arrivals.out_of_order), (0, 0));
    assert!(
        delivered + lost <= ok,
        "delivered {delivered} + lost {lost} > ok {ok}"
    );
    assert!(delivered <= written, "delivered {delivered} > written {written}");
    assert!(
        written + lost <= ok && ok <= written + lost + 1,
        "ok {ok} is not written {written} + lost {lost} (+1)"
    );
    let (alpha_stats, beta_stats) = (stats(&pair.alpha), stats(&pair.beta));
    assert_eq!(
        (alpha_stats.evictions, beta_stats.evictions),
        (0, 0),
        "evicted before the cut"
    );
}
