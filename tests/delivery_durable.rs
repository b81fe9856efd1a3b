//! The durable outbox (`outbox_dir`): a sending peer killed with SIGKILL
//! loses nothing that `send` accepted.
//!
//! The sending peer is a child process: this test binary run again with
//! `DURABLE_CHILD` set, so the kill is a real `kill -9` of a whole process.
//! It sends numbered messages in acknowledged mode and prints `accepted N`
//! after each `send` returned `Ok`.
//!
//! - With the link down: the child holds a link to alpha through a
//!   listener that never answers (so every message stays in the outbox) and
//!   is killed at fixed counts; a second child on the same `outbox_dir`
//!   holds a link to the real alpha, whose recorder must get every number
//!   the first printed, in order, once.
//! - With traffic flowing: the child sends to the real alpha at a steady
//!   rate while acknowledgements come back, and is killed at a random
//!   moment (seed printed; `DURABLE_SEED` replays it), restarted on the same
//!   directory, five times. Every printed number arrives, in order; alpha
//!   never sees one twice, since the restarted sender takes back its
//!   incarnation and alpha drops a replay of what it already has.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::rng::Rng;

use reflow_distributed::DistributedConfig;
use reflow_distributed::bridge::{DeliveryMode, HoldOptions, SendOptions};
use reflow_distributed::distributed_network::DistributedNetwork;
use reflow_distributed::runtime::{Recorder, RecorderLog};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(30);
const CHILD: &str = "DURABLE_CHILD";
/// The first number a `flow` child sends, less one.
const BASE: &str = "DURABLE_BASE";
/// The steady child's pace: 2,000 messages a second.
const PERIOD: Duration = Duration::from_micros(500);

fn config(network: &str) -> DistributedConfig {
    let mut config = DistributedConfig::new(network);
    config.bridge.bind_address = "127.0.0.1".into();
    config.bridge.bind_port = 0;
    config.bridge.heartbeat_interval = Duration::from_millis(100);
    config.bridge.reconnect.initial_delay = Duration::from_millis(20);
    config.bridge.reconnect.max_delay = Duration::from_millis(200);
    config.network.workers = 2;
    config
}

/// The child: `DURABLE_CHILD=send:<dir>:<endpoint>` sends until killed;
/// `flow:<dir>:<endpoint>` sends from `DURABLE_BASE` + 1 every PERIOD until
/// killed, printing the unacknowledged count too;
/// `replay:<dir>:<endpoint>` waits until its outbox is empty.
fn child(spec: &str) {
    let mut parts = spec.splitn(3, ':');
    let (mode, dir, endpoint) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let mut config = config("beta");
    config.bridge.delivery.outbox_dir = Some(dir.into());
    config.bridge.delivery.mode = DeliveryMode::Acknowledged;
    let beta = DistributedNetwork::new(config).unwrap();
    beta.start().unwrap();
    beta.hold_connection(endpoint, HoldOptions::expecting("alpha"))
        .unwrap();
    let options = SendOptions::new(DeliveryMode::Acknowledged, PATIENCE);
    if mode == "send" {
        for n in 1.. {
            beta.send_to_remote_actor_with("alpha", "recorder", "in", n as i64, options)
                .unwrap();
            println!("accepted {n}");
        }
    }
    if mode == "flow" {
        let base: i64 = std::env::var(BASE).unwrap().parse().unwrap();
        let mut due = Instant::now();
        for n in base + 1.. {
            beta.send_to_remote_actor_with("alpha", "recorder", "in", n, options)
                .unwrap();
            println!("accepted {n} {}", beta.unacknowledged("alpha"));
            due = (due + PERIOD).max(Instant::now());
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
    let left = beta.wait_acknowledged("alpha", PATIENCE);
    println!("unacknowledged {left}");
    beta.shutdown();
}

/// Runs `test` of this binary as a child with `spec` (and `base` for a
/// `flow` child).
fn spawn_child(test: &str, spec: &str, base: Option<i64>) -> std::process::Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", test, "--nocapture"])
        .env(CHILD, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(base) = base {
        command.env(BASE, base.to_string());
    }
    command.spawn().expect("spawn the child")
}

/// A listener that accepts and never answers: a dial through it hangs in
/// its handshake, so the child's link stays down and its outbox fills.
fn black_hole() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    (listener, endpoint)
}

fn alpha() -> (DistributedNetwork, Arc<RecorderLog>) {
    let alpha = DistributedNetwork::new(config("alpha")).unwrap();
    let recorder = Recorder::new(100_000);
    let log = recorder.log();
    alpha
        .register_local_actor("recorder", Box::new(recorder), json!({}))
        .unwrap();
    alpha.start().unwrap();
    (alpha, log)
}

const KILLED: &str = "a_killed_sender_loses_nothing_it_accepted";

#[test]
fn a_killed_sender_loses_nothing_it_accepted() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    let (alpha, log) = alpha();
    let alpha_endpoint = alpha.local_addr().unwrap().to_string();
    // Kill points: early, mid, later (the child sends as fast as it can,
    // so each is a different count of messages).
    for (round, after) in [7usize, 250, 1200].into_iter().enumerate() {
        let dir = std::env::temp_dir().join(format!("reflow-durable-{}-{round}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (_hole, hole) = black_hole();
        let dir_text = dir.display().to_string();
        let mut sender = spawn_child(KILLED, &format!("send:{dir_text}:{hole}"), None);
        let mut lines = BufReader::new(sender.stdout.take().unwrap()).lines();
        let mut accepted = 0usize;
        while accepted < after {
            let line = lines.next().expect("the child stopped early").unwrap();
            if let Some(n) = line.strip_prefix("accepted ") {
                accepted = n.parse().unwrap();
            }
        }
        // SIGKILL: no destructor, no flush, no goodbye.
        sender.kill().unwrap();
        let _ = sender.wait();
        // Whatever it printed after our count was accepted too.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("accepted ") {
                accepted = n.parse().unwrap();
            }
        }
        let before = log.records().len();
        let replayer = spawn_child(KILLED, &format!("replay:{dir_text}:{alpha_endpoint}"), None);
        let output = replayer.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("unacknowledged 0"), "round {round}: {text}");
        let got: Vec<i64> = log.records()[before..]
            .iter()
            .map(|r| r.message.as_i64().unwrap())
            .collect();
        // Every accepted number, in order, once; a message appended but
        // killed before its `accepted` line may follow.
        assert!(
            got.len() >= accepted,
            "round {round}: {} of {accepted} arrived",
            got.len()
        );
        assert_eq!(
            got[..accepted],
            (1..=accepted as i64).collect::<Vec<_>>()[..],
            "round {round}"
        );
        assert!(got.len() <= accepted + 1, "round {round}: {} arrived", got.len());
        let _ = std::fs::remove_dir_all(&dir);
        println!("round {round}: killed after {accepted} accepted; all replayed");
    }
    alpha.shutdown();
}

const FLOWING: &str = "a_sender_killed_while_acknowledgements_flow_loses_and_repeats_nothing";
/// Kills of the steady sender.
const KILLS: u64 = 5;

/// What one run of a `flow` child printed before it was killed.
struct Round {
    base: i64,
    /// Numbers whose send returned Ok, in order.
    accepted: Vec<i64>,
    /// The largest unacknowledged count it printed.
    most_unacked: usize,
    /// Its unacknowledged count at its last line.
    last_unacked: usize,
    killed_after: Duration,
}

/// Starts a `flow` child from `base`, waits until acknowledgements of its
/// messages come back, lets it run `delay` more, and kills it.
fn flow_round(dir: &str, endpoint: &str, base: i64, delay: Duration) -> Round {
    let mut sender = spawn_child(FLOWING, &format!("flow:{dir}:{endpoint}"), Some(base));
    let stdout = sender.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    // Some of this run's messages acknowledged: a line `accepted N U`
    // with fewer unacknowledged than it has sent.
    let acknowledging = || {
        lines.lock().unwrap().iter().any(|line| {
            let Some(rest) = line.strip_prefix("accepted ") else {
                return false;
            };
            let mut words = rest.split(' ').map(|w| w.parse::<i64>().ok());
            matches!((words.next(), words.next()), (Some(Some(n)), Some(Some(u))) if u < n - base)
        })
    };
    let deadline = Instant::now() + PATIENCE;
    while !acknowledging() {
        assert!(
            Instant::now() < deadline,
            "base {base}: no acknowledgement came back; the child printed {:?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The random moment: no condition, on purpose.
    let flowing = Instant::now();
    std::thread::sleep(delay);
    sender.kill().unwrap();
    let killed_after = flowing.elapsed();
    let _ = sender.wait();
    reader.join().unwrap();
    let mut round = Round {
        base,
        accepted: Vec::new(),
        most_unacked: 0,
        last_unacked: 0,
        killed_after,
    };
    for line in lines.lock().unwrap().iter() {
        let Some(rest) = line.strip_prefix("accepted ") else {
            continue;
        };
        let mut words = rest.split(' ');
        round.accepted.push(words.next().unwrap().parse().unwrap());
        round.last_unacked = words.next().unwrap().parse().unwrap();
        round.most_unacked = round.most_unacked.max(round.last_unacked);
    }
    round
}

#[test]
fn a_sender_killed_while_acknowledgements_flow_loses_and_repeats_nothing() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    let seed = std::env::var("DURABLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
        .max(1);
    println!("seed {seed} (DURABLE_SEED={seed} replays these kill points)");
    let mut rng = Rng(seed);
    let (alpha, log) = alpha();
    let endpoint = alpha.local_addr().unwrap().to_string();
    let dir = std::env::temp_dir().join(format!("reflow-durable-flow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_text = dir.display().to_string();

    let mut rounds = Vec::new();
    for kill in 1..=KILLS {
        // Each run numbers from a base of its own: an unprinted message of
        // the run before cannot be confused with one of this run.
        let base = kill as i64 * 1_000_000;
        let delay = Duration::from_millis(50 + rng.below(700));
        let round = flow_round(&dir_text, &endpoint, base, delay);
        assert!(!round.accepted.is_empty(), "base {base}: nothing accepted");
        rounds.push(round);
    }
    let replayer = spawn_child(FLOWING, &format!("replay:{dir_text}:{endpoint}"), None);
    let output = replayer.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("unacknowledged 0"), "{text}");

    let arrived: Vec<i64> = log
        .records()
        .iter()
        .map(|r| r.message.as_i64().unwrap())
        .collect();
    let backward = arrived.windows(2).filter(|w| w[1] <= w[0]).count();
    assert_eq!(backward, 0, "seed {seed}: out of order or repeated: {arrived:?}");
    let mut report = Vec::new();
    for round in &rounds {
        let next = round.base + 1_000_000;
        let got: Vec<i64> = arrived
            .iter()
            .copied()
            .filter(|n| (round.base..next).contains(n))
            .collect();
        let printed = round.accepted.len();
        // Every printed number, and at most the one appended before the
        // kill cut off its line.
        assert!(
            got.len() >= printed && got[..printed] == round.accepted[..],
            "seed {seed}, base {}: {} arrived of {printed} accepted",
            round.base,
            got.len()
        );
        let last = *round.accepted.last().unwrap();
        assert!(
            got[printed..].iter().all(|&n| n == last + 1),
            "seed {seed}, base {}: arrived past the accepted: {:?}",
            round.base,
            &got[printed..]
        );
        report.push(format!(
            "killed {} ms in: {printed} accepted (+{} unprinted), {} unacknowledged at the kill (at most {})",
            round.killed_after.as_millis(),
            got.len() - printed,
            round.last_unacked,
            round.most_unacked
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    // Replays of what alpha had consumed but the sender had not yet heard
    // (or written down) as acknowledged: dropped by alpha, not delivered.
    let dropped = alpha.bridge_stats().unwrap().duplicates_dropped;
    println!(
        "seed {seed}: {} arrived, none twice, in order ({dropped} replays dropped by alpha as duplicates); {}",
        arrived.len(),
        report.join("; ")
    );
    alpha.shutdown();
}
