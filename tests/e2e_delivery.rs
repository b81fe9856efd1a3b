//! Delivery between real `reflow-peer` processes under faults, and
//! head-of-line blocking across the bridge.
//!
//! - Kills and cuts: beta (`reflow-peer --send-file`) sends 20,000 numbered
//!   messages at 2,000 a second to alpha's recorder, through a relay that
//!   can cut the link; meanwhile alpha is SIGKILLed and restarted on its
//!   port five times and the relay cuts the link twice. Acknowledged: every
//!   number arrives, in order within each run of alpha, duplicates only
//!   after a kill and at most `ack_window` of them, beta exits 0. At most
//!   once: beta says how many it sent and how many the bridge counted lost,
//!   and its bound on what was delivered is never below what alpha recorded.
//! - Head of line: alpha (`examples/slow_receiver.rs`) hosts `slow` (10
//!   messages a second) and `recorder`; beta, in this process, floods
//!   `slow` while sending 10,000 messages to `recorder` on the same
//!   connection. The recorder's traffic takes no longer than without the
//!   flood (medians of interleaved runs), alpha's memory stays flat, and
//!   nothing is dropped.
//!
//! The tests take turns (one lock): they measure time and memory.

mod common;
mod relay_support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::harness::{self, Proc, TempDir, free_port, lines_since, vm_rss_kib};
use reflow_distributed::DistributedConfig;
use reflow_distributed::bridge::{BridgeError, DeliveryMode, SendOptions};
use reflow_distributed::distributed_network::{DistributedError, DistributedNetwork};
use relay_support::Relay;

/// Deadline of any one wait (a start, a threshold, an exit).
const WAIT: Duration = Duration::from_secs(40);
const MESSAGES: u64 = 20_000;
const RATE: u32 = 2_000;
/// Beta's acknowledgement window: the most duplicates one kill of alpha
/// may cause. Small, so the bound means something.
const ACK_WINDOW: usize = 64;
/// What happens when the highest number alpha recorded reaches each mark.
const EVENTS: [(u64, Event); 7] = [
    (2_000, Event::Kill),
    (4_500, Event::Kill),
    (7_000, Event::Cut),
    (9_500, Event::Kill),
    (12_000, Event::Kill),
    (14_500, Event::Cut),
    (17_000, Event::Kill),
];
const RECORDED: &str = "recorder.in: String(\"";

static TURNS: Mutex<()> = Mutex::new(());

#[derive(Clone, Copy, Debug, PartialEq)]
enum Event {
    Kill,
    Cut,
}

fn peer_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_reflow-peer"))
}

fn alpha_toml(port: u16) -> String {
    format!(
        "network_id = \"alpha\"\nbind_address = \"127.0.0.1\"\nbind_port = {port}\n\
         heartbeat_interval_ms = 200\nauto_connect = false\n"
    )
}

fn beta_toml(relay: &str, mode: DeliveryMode) -> String {
    format!(
        "network_id = \"beta\"\nbind_address = \"127.0.0.1\"\nheartbeat_interval_ms = 200\n\n\
         [reconnect]\ninitial_delay_ms = 20\nmax_delay_ms = 200\nmax_attempts = 1000\n\n\
         [delivery]\nmode = \"{}\"\nack_window = {ACK_WINDOW}\n\n\
         [[connect]]\nendpoint = \"{relay}\"\nnetwork_id = \"alpha\"\n",
        mode.name()
    )
}

/// One run of alpha: the numbers its recorder logged, in order.
struct Run {
    proc_: Proc,
    mark: usize,
    numbers: Vec<u64>,
    /// Why the run before this one ended (none for the first).
    after: Option<Event>,
}

impl Run {
    fn start(dir: &TempDir, toml: &str, endpoint: &str, after: Option<Event>) -> Run {
        let proc_ = harness::start_peer(peer_bin(), dir, "alpha", toml, &[]);
        assert_eq!(harness::bridge_address(&proc_, WAIT), endpoint);
        Run {
            proc_,
            mark: 0,
            numbers: Vec::new(),
            after,
        }
    }

    /// Reads what arrived since the last call.
    fn update(&mut self) {
        let (lines, mark) = lines_since(&self.proc_, self.mark);
        self.mark = mark;
        self.numbers.extend(lines.iter().filter_map(|line| {
            let rest = &line[line.find(RECORDED)? + RECORDED.len()..];
            rest.split('"').next()?.parse::<u64>().ok()
        }));
    }
}

/// Polls `check` every 10 ms until it holds; panics with `what` after WAIT.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    harness::wait_until(WAIT, Duration::from_millis(10), || {
        check().then_some(()).ok_or_else(|| what.to_string())
    })
    .unwrap_or_else(|e| panic!("timed out: {e}"));
}

/// What a run of the fault schedule left behind.
struct Faults {
    runs: Vec<Run>,
    beta: Proc,
    beta_exit: std::process::ExitStatus,
    cuts: usize,
}

/// Beta sends MESSAGES numbered lines in `mode` while EVENTS happen to alpha.
fn send_through_faults(label: &str, mode: DeliveryMode) -> Faults {
    let dir = TempDir::new(label);
    let port = free_port();
    let endpoint = format!("127.0.0.1:{port}");
    let alpha = alpha_toml(port);
    let mut runs = vec![Run::start(&dir, &alpha, &endpoint, None)];
    let relay = Relay::start(endpoint.parse().expect("an address"), None);
    let lines: String = (1..=MESSAGES)
        .map(|n| format!("alpha:recorder:in:{n}\n"))
        .collect();
    let lines = dir.write("numbers.txt", &lines);
    let lines = lines.to_string_lossy().to_string();
    let rate = RATE.to_string();
    let mut beta = harness::start_peer(
        peer_bin(),
        &dir,
        "beta",
        &beta_toml(&relay.endpoint(), mode),
        &["--send-file", &lines, "--send-rate", &rate, "--once"],
    );
    let mut cuts = 0;
    for (mark, event) in EVENTS {
        wait_until(&format!("alpha to record number {mark}"), || {
            let run = runs.last_mut().expect("a run");
            run.update();
            run.numbers.last().is_some_and(|&n| n >= mark)
        });
        match event {
            Event::Kill => {
                let mut run = runs.pop().expect("a run");
                run.proc_.kill();
                run.update();
                runs.push(run);
                runs.push(Run::start(&dir, &alpha, &endpoint, Some(Event::Kill)));
            }
            Event::Cut => {
                let accepted = relay.accepted();
                // The relay also holds the sockets of links that died with
                // alpha; the live one is among them.
                assert!(relay.cut() >= 1, "a link to cut");
                cuts += 1;
                wait_until("beta to redial through the relay", || relay.accepted() > accepted);
            }
        }
    }
    let beta_exit = beta.wait_exit(WAIT * 2).unwrap_or_else(|e| panic!("{e}"));
    if mode == DeliveryMode::Acknowledged {
        wait_until("the last number at alpha", || {
            let run = runs.last_mut().expect("a run");
            run.update();
            run.numbers.contains(&MESSAGES)
        });
    } else {
        runs.last_mut().expect("a run").update();
    }
    Faults {
        runs,
        beta,
        beta_exit,
        cuts,
    }
}

/// Each run's numbers strictly increase (in order, no duplicate within it).
fn assert_in_order_within_runs(faults: &Faults) {
    for (i, run) in faults.runs.iter().enumerate() {
        let backward = run.numbers.windows(2).find(|w| w[1] <= w[0]);
        assert!(
            backward.is_none(),
            "run {i} of alpha went from {:?}; a cut must neither repeat nor reorder",
            backward
        );
    }
}

#[test]
fn acknowledged_delivery_survives_five_kills_and_two_cuts() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let faults = send_through_faults("delivery-acked", DeliveryMode::Acknowledged);
    let beta = faults.beta.output();
    assert!(faults.beta_exit.success(), "beta failed:\n{beta}");
    assert!(
        beta.contains(&format!(
            "sent {MESSAGES} of {MESSAGES} message(s); all {MESSAGES} sent to other networks acknowledged"
        )),
        "{beta}"
    );
    assert_eq!(faults.runs.len(), 6, "five kills");
    assert_eq!(faults.cuts, 2, "two cuts");
    assert_in_order_within_runs(&faults);
    // Every number, and duplicates only where a kill cut acknowledgements off.
    let mut seen: HashSet<u64> = HashSet::new();
    let mut report = Vec::new();
    for (i, run) in faults.runs.iter().enumerate() {
        let duplicates = run.numbers.iter().filter(|n| seen.contains(n)).count();
        seen.extend(run.numbers.iter().copied());
        report.push(format!(
            "run {i}: {} recorded, {duplicates} again",
            run.numbers.len()
        ));
        match run.after {
            Some(Event::Kill) => assert!(
                duplicates <= ACK_WINDOW,
                "run {i}: {duplicates} duplicates after a kill, more than ack_window {ACK_WINDOW}"
            ),
            _ => assert_eq!(duplicates, 0, "run {i}"),
        }
    }
    let missing: Vec<u64> = (1..=MESSAGES).filter(|n| !seen.contains(n)).collect();
    assert!(missing.is_empty(), "never arrived: {missing:?}");
    println!(
        "acknowledged, {MESSAGES} at {RATE}/s, 5 kills, {} cuts, {:.1} s: {}",
        faults.cuts,
        started.elapsed().as_secs_f64(),
        report.join("; ")
    );
}

#[test]
fn at_most_once_says_what_it_lost_and_never_claims_more() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let faults = send_through_faults("delivery-amo", DeliveryMode::AtMostOnce);
    let beta = faults.beta.output();
    let summary = beta
        .lines()
        .find(|l| l.contains("message(s) at most once; the bridge counted"))
        .unwrap_or_else(|| panic!("no summary from beta:\n{beta}"));
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    // "... sent S of T message(s) at most once; the bridge counted L lost
    // ..., so at most D of the R sent to other networks were delivered"
    let [sent, total, lost, at_most, remote] = numbers[numbers.len() - 5..] else {
        panic!("unexpected summary {summary:?}");
    };
    assert_eq!(total, MESSAGES);
    assert_eq!(remote, sent);
    assert_eq!(at_most, sent - lost);
    assert_in_order_within_runs(&faults);
    let mut seen: HashSet<u64> = HashSet::new();
    let mut duplicates = 0;
    for run in &faults.runs {
        for n in &run.numbers {
            duplicates += usize::from(!seen.insert(*n));
        }
    }
    assert_eq!(duplicates, 0, "at most once never repeats a message");
    let delivered = seen.len() as u64;
    assert!(
        delivered <= at_most,
        "beta allowed at most {at_most} delivered, alpha recorded {delivered}"
    );
    // What the bridge counted lost really was lost (it never counts a
    // message that arrived), and a send that failed was said to fail.
    assert!(
        lost <= sent - delivered.min(sent),
        "counted {lost} lost, {delivered} of {sent} arrived"
    );
    assert_eq!(
        faults.beta_exit.success(),
        sent == MESSAGES,
        "exit status {:?} with {sent} of {MESSAGES} sent:\n{beta}",
        faults.beta_exit
    );
    println!(
        "at most once, {MESSAGES} at {RATE}/s, 5 kills, {} cuts, {:.1} s: sent {sent}, counted lost {lost}, recorded {delivered} ({} lost uncounted)",
        faults.cuts,
        started.elapsed().as_secs_f64(),
        sent - delivered - lost
    );
}

/// Fast messages per run of the head-of-line test.
const FAST: i64 = 10_000;
/// Runs with and without the flood, interleaved.
const ROUNDS: usize = 5;
/// The slow actor's time per message: 10 a second.
const SLOW_MS: &str = "100";
/// Growth of alpha's resident memory allowed from the first flooded run to
/// the last (measured: under 1 MiB; the allocator keeps what it freed).
const RSS_SLACK_KIB: u64 = 8 * 1024;

fn beta_in_process() -> DistributedNetwork {
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Off)
        .env()
        .with_module_level("tungstenite", log::LevelFilter::Info)
        .init();
    let mut config = DistributedConfig::new("beta");
    config.bridge.bind_address = "127.0.0.1".into();
    config.bridge.heartbeat_interval = Duration::from_millis(200);
    config.network.workers = 2;
    let beta = DistributedNetwork::new(config).expect("valid config");
    beta.start().expect("beta starts");
    beta
}

/// Sends to alpha's `slow` from a thread of its own, as fast as credit
/// allows: numbered from where the last flood stopped, a refused message
/// sent again (never skipped), until stopped.
struct Flood {
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicI64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flood {
    fn start(beta: &Arc<DistributedNetwork>, next: &Arc<AtomicI64>) -> Flood {
        let (stop, refused) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicI64::new(0)));
        let (beta, next, s, r) = (beta.clone(), next.clone(), stop.clone(), refused.clone());
        let thread = std::thread::spawn(move || {
            let options = SendOptions::new(DeliveryMode::AtMostOnce, Duration::from_millis(50));
            while !s.load(Ordering::Acquire) {
                let n = next.load(Ordering::Acquire);
                match beta.send_to_remote_actor_with("alpha", "slow", "in", n, options) {
                    Ok(()) => next.store(n + 1, Ordering::Release),
                    Err(DistributedError::NotSent(e))
                        if matches!(e.error(), BridgeError::WindowFull { .. }) =>
                    {
                        r.fetch_add(1, Ordering::AcqRel);
                    }
                    Err(e) => panic!("the flood's message {n} failed otherwise: {e}"),
                }
            }
        });
        Flood {
            stop,
            refused,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the flood thread");
        }
    }
}

/// Sends FAST numbers from `first` to alpha's recorder and returns how long
/// until alpha logged the last.
fn fast_run(beta: &DistributedNetwork, alpha: &Proc, first: i64) -> Duration {
    let mark = alpha.mark();
    let started = Instant::now();
    for n in first..first + FAST {
        beta.send_to_remote_actor("alpha", "recorder", "in", n)
            .unwrap_or_else(|e| panic!("fast message {n}: {e}"));
    }
    let last = format!("recorder.in: Integer({})", first + FAST - 1);
    alpha
        .wait_for_after(mark, &last, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The integers alpha logged for `node.in`, in order.
fn logged(alpha: &Proc, node: &str) -> Vec<i64> {
    let needle = format!("{node}.in: Integer(");
    alpha
        .lines_after(0, &needle)
        .iter()
        .filter_map(|line| {
            let rest = &line[line.find(&needle)? + needle.len()..];
            rest.split(')').next()?.parse().ok()
        })
        .collect()
}

#[test]
fn a_flooded_slow_actor_holds_back_only_its_own_senders() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    let program = harness::example_bin("slow_receiver");
    let dir = TempDir::new("head-of-line");
    let config = dir.write(
        "alpha.toml",
        "network_id = \"alpha\"\nbind_address = \"127.0.0.1\"\nheartbeat_interval_ms = 200\nauto_connect = false\n",
    );
    let config = config.to_string_lossy().to_string();
    let alpha = Proc::spawn("alpha", &program, &[&config, SLOW_MS], &[], harness::Echo::Quiet);
    let address = harness::bridge_address(&alpha, WAIT);
    let beta = Arc::new(beta_in_process());
    assert_eq!(
        beta.connect_to_network(&address).expect("beta reaches alpha"),
        "alpha"
    );
    let pid = alpha.pid().to_string();

    // One run to warm both sides up, not measured.
    fast_run(&beta, &alpha, -FAST);
    let next_slow = Arc::new(AtomicI64::new(0));
    let (mut quiet, mut flooded, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS as i64 {
        quiet.push(fast_run(&beta, &alpha, 2 * round * FAST));
        let flood = Flood::start(&beta, &next_slow);
        // The slow actor's window is used up: its sender is held back.
        wait_until("the flood to run out of credit", || {
            flood.refused.load(Ordering::Acquire) > 0
        });
        flooded.push(fast_run(&beta, &alpha, (2 * round + 1) * FAST));
        flood.stop();
        rss.push(vm_rss_kib(&pid).expect("alpha's VmRSS"));
    }

    let (quiet_ms, flooded_ms) = (median(quiet.clone()), median(flooded.clone()));
    let allowed = (quiet_ms * 3 / 2).max(quiet_ms + Duration::from_secs(1));
    println!(
        "head of line: {FAST} fast messages in {quiet:?} without the flood, {flooded:?} with it \
         (medians {quiet_ms:?} and {flooded_ms:?}, ratio {:.2}); slow consumed {}; alpha's VmRSS {rss:?} KiB",
        flooded_ms.as_secs_f64() / quiet_ms.as_secs_f64(),
        logged(&alpha, "slow").len()
    );
    assert!(
        flooded_ms <= allowed,
        "the flood slowed the fast traffic from {quiet_ms:?} to {flooded_ms:?} (allowed {allowed:?})"
    );
    let growth = rss.last().copied().unwrap_or(0).saturating_sub(rss[0]);
    assert!(
        growth <= RSS_SLACK_KIB,
        "alpha grew {growth} KiB under the flood: {rss:?}"
    );

    // Nothing dropped: every fast number once and in order, the slow
    // actor's messages without a gap, and no drop logged.
    let fast = logged(&alpha, "recorder");
    let expected: Vec<i64> = (-FAST..2 * ROUNDS as i64 * FAST).collect();
    assert!(
        fast == expected,
        "fast numbers: {} of {}",
        fast.len(),
        expected.len()
    );
    let slow = logged(&alpha, "slow");
    assert!(!slow.is_empty(), "the slow actor consumed nothing");
    assert!(
        slow.iter().enumerate().all(|(i, &n)| n == i as i64),
        "the slow actor's messages have a gap: {slow:?}"
    );
    assert_eq!(alpha.count("Dropped message"), 0, "{}", alpha.output());
    beta.shutdown();
}
