//! Churn: alpha, a `reflow-peer` process on a fixed port, is SIGKILLed and
//! restarted five times (`REFLOW_CHURN_CYCLES`) while beta, a `DistributedNetwork` in this process,
//! keeps sending numbered messages to alpha's recorder (one every 2 ms) and
//! counts the sends that fail. Each time, beta redials within its backoff
//! window and messages flow again. Per cycle: sent, refused, delivered (the
//! numbers alpha's recorder logged), lost; across cycles: no duplicates, and
//! this process's resident memory and thread count stay flat.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::harness::{self, Proc, Tally, TempDir, Traffic, free_port, task_count, vm_rss_kib};
use reflow_distributed::DistributedConfig;
use reflow_distributed::bridge::ReconnectPolicy;
use reflow_distributed::distributed_network::DistributedNetwork;

/// Restarts of alpha; `REFLOW_CHURN_CYCLES` sets another number (at least 2).
const CYCLES: usize = 5;
/// Deadline for a start, a handshake, a message.
const WAIT: Duration = Duration::from_secs(20);
/// Heartbeats are not what notices a kill (the socket closes); long enough
/// that a loaded machine never evicts by accident.
const BEAT: Duration = Duration::from_millis(500);
const PERIOD: Duration = Duration::from_millis(2);
/// Beta's redial schedule: 100, 200, 400, 400… ms.
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_millis(400);
/// Slack on top of a computed bound, for a loaded machine.
const MARGIN: Duration = Duration::from_secs(2);
/// Messages that must arrive in each cycle before alpha is killed.
const FLOWING: usize = 200;
/// Growth of this process's resident memory allowed from cycle 1 to the last
/// (measured: 100–200 KiB over 4 cycles, most of it this test's own records).
const RSS_SLACK_KIB: u64 = 2 * 1024;

const RECORDED: &str = "recorder.in: Integer(";

fn peer_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_reflow-peer"))
}

fn init_logging() {
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Off)
        .env()
        .with_module_level("tungstenite", log::LevelFilter::Info)
        .init();
}

fn alpha_toml(port: u16) -> String {
    format!(
        "network_id = \"alpha\"\nbind_address = \"127.0.0.1\"\nbind_port = {port}\n\
         heartbeat_interval_ms = {}\n",
        BEAT.as_millis()
    )
}

fn beta() -> DistributedNetwork {
    init_logging();
    let mut config = DistributedConfig::new("beta");
    config.bridge.bind_address = "127.0.0.1".into();
    config.bridge.heartbeat_interval = BEAT;
    config.bridge.connect_timeout = Duration::from_secs(2);
    config.bridge.handshake_timeout = Duration::from_secs(2);
    config.bridge.reconnect = ReconnectPolicy {
        initial_delay: FIRST_DELAY,
        multiplier: 2,
        max_delay: MAX_DELAY,
        max_attempts: 1000,
    };
    config.network.workers = 2;
    config.network.send_timeout = Duration::from_millis(100);
    DistributedNetwork::new(config).expect("valid config")
}

/// The sequence numbers alpha's recorder logged, in order.
fn recorded(alpha: &Proc) -> Vec<u64> {
    alpha
        .lines_after(0, RECORDED)
        .iter()
        .filter_map(|line| {
            let rest = &line[line.find(RECORDED)? + RECORDED.len()..];
            rest.split(')').next()?.parse().ok()
        })
        .collect()
}

/// Polls `check` every 10 ms until it holds; panics with `what` after WAIT.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    harness::wait_until(WAIT, Duration::from_millis(10), || {
        check().then_some(()).ok_or_else(|| what.to_string())
    })
    .unwrap_or_else(|e| panic!("timed out: {e}"));
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

struct Cycle {
    /// Sequence numbers sent while this alpha ran (from its start to the next's).
    span: std::ops::Range<u64>,
    arrived: Vec<u64>,
    reconnect: Duration,
    rss_kib: u64,
    threads: usize,
}

#[test]
fn a_peer_killed_and_restarted_five_times_under_traffic_comes_back_every_time() {
    let dir = TempDir::new("churn");
    let port = free_port();
    let endpoint = format!("127.0.0.1:{port}");
    let toml = alpha_toml(port);
    let start_alpha = || {
        let alpha = harness::start_peer(peer_bin(), &dir, "alpha", &toml, &[]);
        assert_eq!(harness::bridge_address(&alpha, WAIT), endpoint);
        alpha
    };

    let beta = Arc::new(beta());
    beta.start().unwrap();
    let mut alpha = start_alpha();
    assert_eq!(beta.connect_to_network(&endpoint).unwrap(), "alpha");
    let sender = beta.clone();
    let traffic = Traffic::start(PERIOD, move |seq| {
        sender
            .send_to_remote_actor("alpha", "recorder", "in", seq as i64)
            .map_err(|e| e.to_string())
    });

    let restarts = std::env::var("REFLOW_CHURN_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .map_or(CYCLES, |n: usize| n.max(2));
    let mut cycles: Vec<Cycle> = Vec::new();
    let mut span_start = 0;
    let mut reconnect = Duration::ZERO;
    let mut thread_baseline = None;
    for cycle in 0..=restarts {
        // Messages flow to this alpha.
        let from = traffic.next_seq();
        wait_until(&format!("cycle {cycle}: {FLOWING} messages to arrive"), || {
            recorded(&alpha).iter().filter(|&&s| s >= from).count() >= FLOWING
        });
        // Threads of the dropped connection are joined soon after it drops.
        let threads = match thread_baseline {
            None => *thread_baseline.insert(task_count("self")),
            Some(baseline) => {
                let _ = harness::wait_until(WAIT, Duration::from_millis(10), || {
                    let now = task_count("self");
                    (now <= baseline).then_some(()).ok_or(format!("{now} threads"))
                });
                task_count("self")
            }
        };
        let rss_kib = vm_rss_kib("self").expect("VmRSS of this process");

        if cycle == restarts {
            let outcomes = traffic.stop();
            let last = outcomes.accepted.last().copied().unwrap_or(0);
            wait_until("the last message to arrive", || {
                recorded(&alpha).last().is_some_and(|&s| s >= last)
            });
            cycles.push(Cycle {
                span: span_start..last + 1,
                arrived: recorded(&alpha),
                reconnect,
                rss_kib,
                threads,
            });
            report(&cycles, &outcomes);
            break;
        }

        alpha.kill();
        let arrived = recorded(&alpha);
        wait_until("beta to notice the kill", || !beta.is_connected_to("alpha"));
        let span_end = traffic.next_seq();
        // Beta is redialing on its backoff schedule; alpha comes back on the
        // same port.
        alpha = start_alpha();
        let ready = Instant::now();
        wait_until("beta to redial alpha", || beta.is_connected_to("alpha"));
        cycles.push(Cycle {
            span: span_start..span_end,
            arrived,
            reconnect,
            rss_kib,
            threads,
        });
        reconnect = ready.elapsed();
        span_start = span_end;
        assert!(
            reconnect <= MAX_DELAY + MARGIN,
            "cycle {cycle}: reconnected {} ms after alpha was listening again",
            ms(reconnect)
        );
    }
    beta.shutdown();
}

/// Prints a line per cycle and checks the whole run.
fn report(cycles: &[Cycle], outcomes: &harness::Outcomes) {
    let mut all_arrived = Vec::new();
    for (i, cycle) in cycles.iter().enumerate() {
        let tally = Tally::of(outcomes, &cycle.arrived, cycle.span.clone());
        println!(
            "cycle {i}: #{}..#{}: {}; link back {} ms after restart; sender RSS {} KiB, {} threads",
            cycle.span.start,
            cycle.span.end,
            tally.summary(),
            ms(cycle.reconnect),
            cycle.rss_kib,
            cycle.threads
        );
        assert_eq!(tally.duplicates, 0, "cycle {i}: {}", tally.summary());
        assert_eq!(tally.out_of_order, 0, "cycle {i}: {}", tally.summary());
        assert!(tally.delivered >= FLOWING, "cycle {i}: {}", tally.summary());
        // A connection that drops loses what was in flight: the tail of the
        // messages sent to that alpha, never a message in the middle.
        let last_delivered = cycle
            .arrived
            .iter()
            .copied()
            .filter(|s| cycle.span.contains(s))
            .max();
        assert!(
            tally.lost.iter().all(|&s| Some(s) > last_delivered),
            "cycle {i}: lost {:?} before the last delivered #{last_delivered:?}",
            tally.lost
        );
        // Numbers that arrived at this alpha were all sent while it ran.
        assert!(
            cycle.arrived.iter().all(|s| cycle.span.contains(s)),
            "cycle {i}: alpha got a number from outside #{}..#{}",
            cycle.span.start,
            cycle.span.end
        );
        all_arrived.extend_from_slice(&cycle.arrived);
    }
    let whole = Tally::of(outcomes, &all_arrived, 0..u64::MAX);
    println!("all cycles: {}", whole.summary());
    assert_eq!(whole.duplicates, 0);
    assert_eq!(whole.out_of_order, 0);

    let first = &cycles[0];
    for (i, cycle) in cycles.iter().enumerate().skip(1) {
        assert_eq!(
            cycle.threads, first.threads,
            "cycle {i}: {} threads in this process, {} in cycle 0",
            cycle.threads, first.threads
        );
    }
    // Cycle 0 warms up the allocator; growth is measured from cycle 1.
    let base = cycles[1].rss_kib;
    let peak = cycles.iter().skip(1).map(|c| c.rss_kib).max().unwrap_or(base);
    println!(
        "sender RSS from cycle 1 to {}: {base} -> {} KiB (peak {peak} KiB)",
        cycles.len() - 1,
        cycles[cycles.len() - 1].rss_kib
    );
    assert!(
        peak <= base + RSS_SLACK_KIB,
        "sender RSS grew from {base} KiB to {peak} KiB over the cycles"
    );
}
