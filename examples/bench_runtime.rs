//! Benchmark: a 10-node pipeline through the runtime against 10 plain threads
//! chained by bounded crossbeam channels, same message count, same run.
//!
//!     cargo run --release --example bench_runtime [-- MESSAGES] [--quick]
//!
//! `--quick` runs 200,000 messages instead of 1,000,000 (a few seconds). The
//! last line printed is one JSON object with every figure and the ratio.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use reflow_distributed::Message;
use reflow_distributed::runtime::{FnActor, Network, NetworkConfig};
use serde_json::json;

const STAGES: usize = 10;
const CAPACITY: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let messages: u64 =
        args.iter()
            .find_map(|a| a.parse().ok())
            .unwrap_or(if quick { 200_000 } else { 1_000_000 });
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    println!(
        "10-stage pipeline, {messages} Integer messages, inbox/channel capacity {CAPACITY}, {workers} cores"
    );
    // Warm up both once, then take the better of three runs each.
    baseline(messages / 10);
    runtime(messages / 10, workers);
    let base = (0..3)
        .map(|_| baseline(messages))
        .fold(Duration::MAX, Duration::min);
    let ours = (0..3)
        .map(|_| runtime(messages, workers))
        .fold(Duration::MAX, Duration::min);
    report("baseline: 10 threads + bounded channels", messages, base);
    report("reflow runtime: 10 passthrough nodes", messages, ours);
    let ratio = base.as_secs_f64() / ours.as_secs_f64();
    let met = if ratio >= 0.5 { "met" } else { "not met" };
    println!("aim: runtime throughput >= 0.5x the threads': {ratio:.2}x ({met})");
    let rate = |elapsed: Duration| (messages as f64 / elapsed.as_secs_f64()).round();
    println!(
        "{}",
        json!({
            "bench": "runtime",
            "messages": messages,
            "stages": STAGES,
            "capacity": CAPACITY,
            "workers": workers,
            "baseline_msg_per_s": rate(base),
            "runtime_msg_per_s": rate(ours),
            "runtime_over_baseline": (ratio * 1000.0).round() / 1000.0,
            "aim_runtime_over_baseline": 0.5,
            "aim_met": ratio >= 0.5,
        })
    );
}

fn report(label: &str, messages: u64, elapsed: Duration) {
    let rate = messages as f64 / elapsed.as_secs_f64();
    let per = elapsed.as_nanos() as f64 / messages as f64;
    println!("{label:<42} {rate:>12.0} msg/s  {per:>7.0} ns/msg");
}

fn baseline(messages: u64) -> Duration {
    let (first_tx, mut rx) = bounded::<Message>(CAPACITY);
    let mut threads = Vec::new();
    for _ in 1..STAGES {
        let (tx, next_rx) = bounded::<Message>(CAPACITY);
        let stage_rx = std::mem::replace(&mut rx, next_rx);
        threads.push(std::thread::spawn(move || {
            for message in stage_rx {
                if tx.send(message).is_err() {
                    break;
                }
            }
        }));
    }
    let last_rx = rx;
    let sink = std::thread::spawn(move || last_rx.iter().take(messages as usize).count());
    let start = Instant::now();
    for i in 0..messages {
        let _ = first_tx.send(Message::Integer(i as i64));
    }
    let received = sink.join().unwrap_or(0);
    let elapsed = start.elapsed();
    drop(first_tx);
    for t in threads {
        let _ = t.join();
    }
    assert_eq!(received as u64, messages);
    elapsed
}

fn runtime(messages: u64, workers: usize) -> Duration {
    let mut config = NetworkConfig::default();
    config.workers = workers;
    config.inbox_capacity = CAPACITY;
    config.send_timeout = Duration::from_secs(60);
    let network = Network::new(config);
    for i in 0..STAGES - 1 {
        network
            .add_node(&format!("stage{i}"), "passthrough", json!({}))
            .unwrap();
        if i > 0 {
            network
                .connect(&format!("stage{}", i - 1), "out", &format!("stage{i}"), "in")
                .unwrap();
        }
    }
    let received = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = bounded::<()>(1);
    let counter = received.clone();
    let sink = FnActor::new(&["in"], &[], move |_| {
        if counter.fetch_add(1, Ordering::Relaxed) + 1 == messages {
            let _ = done_tx.try_send(());
        }
        Ok(())
    });
    network.add_actor("sink", Box::new(sink), json!({})).unwrap();
    network
        .connect(&format!("stage{}", STAGES - 2), "out", "sink", "in")
        .unwrap();
    network.start().unwrap();
    let start = Instant::now();
    for i in 0..messages {
        network
            .send_to_actor("stage0", "in", Message::Integer(i as i64))
            .unwrap();
    }
    done_rx
        .recv_timeout(Duration::from_secs(600))
        .expect("pipeline finished");
    let elapsed = start.elapsed();
    network.shutdown();
    elapsed
}
