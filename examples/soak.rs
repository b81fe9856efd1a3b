//! Load and soak across two processes, watching resident memory and threads.
//!
//! - **flood**: this process sends as fast as `send_to_actor` lets it (1 KiB
//!   String payloads through the proxy `slow@soak-rx`) to an actor in the
//!   child that takes 1 ms per message. The sender is held back by the bounded
//!   queues and TCP; the memory of both processes must stay flat.
//! - **steady**: normal traffic both ways at a steady rate (2000 msg/s each
//!   way by default), 64 B payloads, counted at both ends.
//!
//! ```text
//! cargo run --release --example soak -- [--seconds 120] [--mode flood|steady|both]
//!     [--rate 2000] [--every 5] [--payload BYTES] [--max-growth-mib 16]
//! ```
//!
//! `--seconds` is per mode (`both`, the default, runs flood then steady).
//! Every `--every` seconds a line gives, for this process (tx) and the child
//! (rx): resident memory (VmRSS), threads, messages sent and delivered. At the
//! end: sent, delivered, lost, duplicates, out of order, and the memory growth
//! after the warm-up (the first fifth of the run). The exit code is 1 when a
//! message was lost or duplicated or memory grew past `--max-growth-mib`.
//!
//! The child is this program re-executed (`--child flood|steady`); it exits
//! when its standard input closes, which also happens if this process dies,
//! and is killed on every exit path of this one. Ctrl-C ends a run early with
//! its summary. Everything binds and dials 127.0.0.1 only.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use reflow_distributed::DistributedConfig;
use reflow_distributed::Message;
use reflow_distributed::distributed_network::DistributedNetwork;
use reflow_distributed::runtime::{FnActor, Threading};
use serde_json::Value;

type BoxError = Box<dyn std::error::Error>;

/// Time a message takes in the child's slow actor (flood mode).
const SLOW: Duration = Duration::from_millis(1);
/// How long the end of a run waits for what is still in flight.
const DRAIN: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Flood,
    Steady,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Flood => "flood",
            Mode::Steady => "steady",
        }
    }

    fn parse(text: &str) -> Result<Vec<Mode>, BoxError> {
        match text {
            "flood" => Ok(vec![Mode::Flood]),
            "steady" => Ok(vec![Mode::Steady]),
            "both" => Ok(vec![Mode::Flood, Mode::Steady]),
            other => Err(format!("unknown mode {other:?} (flood, steady or both)").into()),
        }
    }
}

struct Options {
    seconds: u64,
    modes: Vec<Mode>,
    rate: u64,
    every: u64,
    payload: Option<usize>,
    max_growth_mib: u64,
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    }
}

fn run() -> Result<bool, BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| -> Result<Option<&String>, BoxError> {
        match args.iter().position(|a| a == flag) {
            None => Ok(None),
            Some(i) => Ok(Some(
                args.get(i + 1).ok_or_else(|| format!("{flag} needs a value"))?,
            )),
        }
    };
    if let Some(mode) = value("--child")? {
        child(Mode::parse(mode)?[0])?;
        return Ok(true);
    }
    let number = |flag: &str, default: u64| -> Result<u64, BoxError> {
        Ok(value(flag)?.map_or(Ok(default), |v| v.parse())?)
    };
    let options = Options {
        seconds: number("--seconds", 120)?.max(1),
        modes: Mode::parse(value("--mode")?.map_or("both", String::as_str))?,
        rate: number("--rate", 2000)?.max(1),
        every: number("--every", 5)?.max(1),
        payload: value("--payload")?.map(|v| v.parse()).transpose()?,
        max_growth_mib: number("--max-growth-mib", 16)?,
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, interrupted.clone())?;
    }
    let mut passed = true;
    for &mode in &options.modes {
        if interrupted.load(Ordering::Relaxed) {
            break;
        }
        passed &= parent(mode, &options, &interrupted)?;
    }
    Ok(passed)
}

// ---------------------------------------------------------------- counting

/// Numbered arrivals at one end. One sender, one connection and no fault:
/// each arrival must be greater than the one before, so a duplicate or a
/// reordering shows as an arrival that is not; nothing per message is kept.
#[derive(Default)]
struct Arrivals {
    delivered: u64,
    /// Arrivals equal to the one before.
    duplicates: u64,
    /// Arrivals below the one before (a reordering, or an older duplicate).
    out_of_order: u64,
    last: Option<u64>,
}

impl Arrivals {
    fn record(&mut self, seq: u64) {
        match self.last {
            Some(last) if seq == last => self.duplicates += 1,
            Some(last) if seq < last => self.out_of_order += 1,
            _ => {
                self.delivered += 1;
                self.last = Some(seq);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// `seq|padding`: the sequence number and `payload` bytes in all.
fn numbered(seq: u64, payload: usize) -> Message {
    let mut text = seq.to_string();
    text.push('|');
    while text.len() < payload {
        text.push('x');
    }
    Message::string(text)
}

fn seq_of(message: Option<&Message>) -> Result<u64, String> {
    message
        .and_then(Message::as_str)
        .and_then(|t| t.split('|').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| "a numbered String".to_string())
}

/// An actor `in` that records every number; `delay` per message.
fn counting_actor(arrivals: Arc<Mutex<Arrivals>>, delay: Duration) -> FnActor {
    let actor = FnActor::new(&["in"], &[], move |ctx| {
        let seq = seq_of(ctx.input("in"))?;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        lock(&arrivals).record(seq);
        Ok(())
    });
    if delay.is_zero() {
        actor
    } else {
        actor.with_threading(Threading::Dedicated)
    }
}

/// Sends numbered messages from a thread of its own until stopped: as fast as
/// `send` returns when `rate` is `None`, else `rate` per second.
struct Sender {
    accepted: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sender {
    fn start(
        rate: Option<u64>,
        mut send: impl FnMut(u64) -> bool + Send + 'static,
    ) -> Result<Sender, BoxError> {
        let accepted = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, r, s) = (accepted.clone(), refused.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("soak-sender".into())
            .spawn(move || {
                let started = Instant::now();
                let mut seq = 0u64;
                while !s.load(Ordering::Relaxed) {
                    if let Some(rate) = rate {
                        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                        if seq >= due {
                            std::thread::sleep(Duration::from_millis(1));
                            continue;
                        }
                    }
                    let counter = if send(seq) { &a } else { &r };
                    counter.fetch_add(1, Ordering::Relaxed);
                    seq += 1;
                }
            })?;
        Ok(Sender {
            accepted,
            refused,
            stop,
            thread: Some(thread),
        })
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop();
    }
}

fn peer_config(network: &str) -> DistributedConfig {
    let mut config = DistributedConfig::new(network);
    config.bridge.bind_address = "127.0.0.1".into();
    config.bridge.bind_port = 0;
    config
}

/// Resident memory in KiB and threads of process `pid` (`self` for this one).
fn rss_and_threads(pid: &str) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    (rss, threads)
}

// ---------------------------------------------------------------- child

/// What the child reports on its standard output, one `STAT` line a second
/// and a `FINAL` line once stopped.
#[derive(Clone, Copy, Default, Debug)]
struct ChildStat {
    delivered: u64,
    duplicates: u64,
    out_of_order: u64,
    sent: u64,
    refused: u64,
    dropped: u64,
}

impl ChildStat {
    fn line(&self, tag: &str) -> String {
        format!(
            "{tag} {} {} {} {} {} {}",
            self.delivered, self.duplicates, self.out_of_order, self.sent, self.refused, self.dropped
        )
    }

    fn parse(line: &str) -> Option<(bool, ChildStat)> {
        let mut words = line.split_whitespace();
        let is_final = match words.next()? {
            "STAT" => false,
            "FINAL" => true,
            _ => return None,
        };
        let mut n = || words.next()?.parse::<u64>().ok();
        let stat = ChildStat {
            delivered: n()?,
            duplicates: n()?,
            out_of_order: n()?,
            sent: n()?,
            refused: n()?,
            dropped: n()?,
        };
        Some((is_final, stat))
    }
}

/// The receiving process: `slow` (flood) or `sink` (steady); in steady mode
/// it also sends to the parent's `sink` once told `go`. Commands on standard
/// input: `go RATE PAYLOAD`, `stop N` (N: what the parent sent; wait for it,
/// then report `FINAL`). Exits when standard input closes.
fn child(mode: Mode) -> Result<(), BoxError> {
    let peer = Arc::new(DistributedNetwork::new(peer_config("soak-rx"))?);
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let (name, delay) = match mode {
        Mode::Flood => ("slow", SLOW),
        Mode::Steady => ("sink", Duration::ZERO),
    };
    peer.register_local_actor(
        name,
        Box::new(counting_actor(arrivals.clone(), delay)),
        Value::Null,
    )?;
    peer.start()?;
    let mut out = std::io::stdout();
    writeln!(
        out,
        "PORT {}",
        peer.local_addr().ok_or("no bridge address")?.port()
    )?;
    out.flush()?;

    let sender: Arc<Mutex<Option<Sender>>> = Arc::new(Mutex::new(None));
    let stat = {
        let (peer, arrivals, sender) = (peer.clone(), arrivals.clone(), sender.clone());
        move || {
            let a = lock(&arrivals);
            let (sent, refused) = lock(&sender)
                .as_ref()
                .map_or((0, 0), |s| (s.accepted(), s.refused()));
            let stats = peer.bridge_stats().unwrap_or_default();
            ChildStat {
                delivered: a.delivered,
                duplicates: a.duplicates,
                out_of_order: a.out_of_order,
                sent,
                refused,
                dropped: stats.dropped_delivery_timeout + stats.dropped_unknown_target,
            }
        }
    };
    let stopped = Arc::new(AtomicBool::new(false));
    {
        let (stat, stopped) = (stat.clone(), stopped.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                println!("{}", stat().line("STAT"));
            }
        });
    }
    for line in BufReader::new(std::io::stdin()).lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["go", rate, payload] => {
                let (rate, payload): (u64, usize) = (rate.parse()?, payload.parse()?);
                let peer = peer.clone();
                *lock(&sender) = Some(Sender::start(Some(rate), move |seq| {
                    peer.send_to_remote_actor("soak-tx", "sink", "in", numbered(seq, payload))
                        .is_ok()
                })?);
            }
            ["stop", expected] => {
                let expected: u64 = expected.parse()?;
                if let Some(sender) = lock(&sender).as_mut() {
                    sender.stop();
                }
                let deadline = Instant::now() + DRAIN;
                while stat().delivered < expected && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                stopped.store(true, Ordering::Relaxed);
                println!("{}", stat().line("FINAL"));
            }
            _ => return Err(format!("unknown command {line:?}").into()),
        }
    }
    // Standard input closed: the parent is done or gone.
    std::process::exit(0)
}

// ---------------------------------------------------------------- parent

/// The child process, killed when this is dropped, whatever the exit path.
struct ChildGuard {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl ChildGuard {
    fn tell(&mut self, command: &str) -> Result<(), BoxError> {
        let stdin = self.stdin.as_mut().ok_or("child stdin closed")?;
        writeln!(stdin, "{command}")?;
        stdin.flush()?;
        Ok(())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the child said last, and its `FINAL` line once it comes.
#[derive(Default)]
struct Heard {
    last: ChildStat,
    last_final: Option<ChildStat>,
}

fn spawn_child(mode: Mode) -> Result<(ChildGuard, u16, Arc<Mutex<Heard>>), BoxError> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--child", mode.name()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let guard = ChildGuard { child, stdin };
    let mut reader = BufReader::new(stdout.ok_or("child has no stdout")?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .ok_or_else(|| format!("child did not report a port (said {line:?})"))?
        .parse()?;
    let heard = Arc::new(Mutex::new(Heard::default()));
    let for_thread = heard.clone();
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if let Some((is_final, stat)) = ChildStat::parse(&line) {
                let mut heard = lock(&for_thread);
                heard.last = stat;
                if is_final {
                    heard.last_final = Some(stat);
                }
            }
        }
    });
    Ok((guard, port, heard))
}

/// One sample of both processes.
struct Sample {
    at: Duration,
    tx: (u64, usize),
    rx: (u64, usize),
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs one mode for `options.seconds`; prints samples and a summary;
/// returns whether it passed.
fn parent(mode: Mode, options: &Options, interrupted: &AtomicBool) -> Result<bool, BoxError> {
    let payload = options
        .payload
        .unwrap_or(if mode == Mode::Flood { 1024 } else { 64 });
    println!(
        "== {}: {} s, payload {payload} B{}",
        mode.name(),
        options.seconds,
        match mode {
            Mode::Flood => format!(", receiver takes {} ms per message", SLOW.as_millis()),
            Mode::Steady => format!(", {} msg/s each way", options.rate),
        }
    );
    let (mut child, port, heard) = spawn_child(mode)?;
    let child_pid = child.child.id().to_string();

    let peer = Arc::new(DistributedNetwork::new(peer_config("soak-tx"))?);
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    peer.register_local_actor(
        "sink",
        Box::new(counting_actor(arrivals.clone(), Duration::ZERO)),
        Value::Null,
    )?;
    let target = match mode {
        Mode::Flood => peer.register_remote_actor("slow", "soak-rx")?,
        Mode::Steady => peer.register_remote_actor("sink", "soak-rx")?,
    };
    peer.start()?;
    peer.connect_to_network(&format!("127.0.0.1:{port}"))?;
    if mode == Mode::Steady {
        child.tell(&format!("go {} {payload}", options.rate))?;
    }
    let rate = (mode == Mode::Steady).then_some(options.rate);
    let sending = peer.clone();
    let mut sender = Sender::start(rate, move |seq| {
        sending
            .send_to_actor(&target, "in", numbered(seq, payload))
            .is_ok()
    })?;

    println!(
        "{:>6}  {:>9} {:>7}  {:>9} {:>7}  {:>10} {:>10} {:>10} {:>10}",
        "t (s)", "tx RSS", "tx thr", "rx RSS", "rx thr", "tx->rx", "delivered", "rx->tx", "delivered"
    );
    let started = Instant::now();
    let end = started + Duration::from_secs(options.seconds);
    let mut samples = Vec::new();
    let mut next_sample = started + Duration::from_secs(options.every);
    while Instant::now() < end && !interrupted.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if Instant::now() < next_sample {
            continue;
        }
        next_sample += Duration::from_secs(options.every);
        let sample = Sample {
            at: started.elapsed(),
            tx: rss_and_threads("self"),
            rx: rss_and_threads(&child_pid),
        };
        let child_stat = lock(&heard).last;
        println!(
            "{:>6.0}  {:>5.1} MiB {:>7}  {:>5.1} MiB {:>7}  {:>10} {:>10} {:>10} {:>10}",
            sample.at.as_secs_f64(),
            mib(sample.tx.0),
            sample.tx.1,
            mib(sample.rx.0),
            sample.rx.1,
            sender.accepted(),
            child_stat.delivered,
            child_stat.sent,
            lock(&arrivals).delivered,
        );
        samples.push(sample);
    }
    let ran = started.elapsed();

    // Stop both senders and wait for what is in flight.
    sender.stop();
    let tx_sent = sender.accepted();
    child.tell(&format!("stop {tx_sent}"))?;
    let deadline = Instant::now() + DRAIN;
    let child_final = loop {
        if let Some(stat) = lock(&heard).last_final {
            break stat;
        }
        if Instant::now() > deadline {
            return Err("the child did not report its final counts".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    while lock(&arrivals).delivered < child_final.sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let back = {
        let a = lock(&arrivals);
        (a.delivered, a.duplicates, a.out_of_order)
    };
    let stats = peer.bridge_stats().unwrap_or_default();
    peer.shutdown();
    drop(child);

    // Summary.
    let secs = ran.as_secs_f64();
    let mut passed = true;
    let mut direction = |name: &str, sent: u64, refused: u64, got: (u64, u64, u64), dropped: u64| {
        let lost = sent.saturating_sub(got.0);
        println!(
            "{name}: sent {sent} ({:.0} msg/s), refused {refused}, delivered {}, lost {lost}, \
             duplicates {}, out of order {}, dropped at the receiver {dropped}",
            sent as f64 / secs,
            got.0,
            got.1,
            got.2
        );
        passed &= lost == 0 && got.1 == 0 && got.2 == 0;
    };
    direction(
        "tx->rx",
        tx_sent,
        sender.refused(),
        (
            child_final.delivered,
            child_final.duplicates,
            child_final.out_of_order,
        ),
        child_final.dropped,
    );
    if mode == Mode::Steady {
        direction(
            "rx->tx",
            child_final.sent,
            child_final.refused,
            back,
            stats.dropped_delivery_timeout + stats.dropped_unknown_target,
        );
    }
    // Memory after the warm-up (the first fifth of the run).
    let warm = ran / 5;
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at >= warm).collect();
    for (name, pick) in [
        ("tx", (|s: &Sample| s.tx) as fn(&Sample) -> (u64, usize)),
        ("rx", |s: &Sample| s.rx),
    ] {
        let (Some(first), Some(last)) = (after.first(), after.last()) else {
            println!("{name}: too short a run for a memory verdict");
            continue;
        };
        let peak = after.iter().map(|s| pick(s).0).max().unwrap_or(0);
        let threads: Vec<usize> = after.iter().map(|s| pick(s).1).collect();
        let growth = peak.saturating_sub(pick(first).0);
        let flat = growth <= options.max_growth_mib * 1024;
        println!(
            "{name}: RSS {:.1} MiB at {:.0} s, {:.1} MiB at the end, peak {:.1} MiB (growth {:.1} MiB: {}); \
             threads {}..{}",
            mib(pick(first).0),
            first.at.as_secs_f64(),
            mib(pick(last).0),
            mib(peak),
            mib(growth),
            if flat { "flat" } else { "GROWING" },
            threads.iter().min().unwrap_or(&0),
            threads.iter().max().unwrap_or(&0),
        );
        passed &= flat;
    }
    println!("== {}: {}", mode.name(), if passed { "passed" } else { "FAILED" });
    Ok(passed)
}
