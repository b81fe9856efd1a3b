//! Bridge benchmark across two processes, at three levels measured side by side
//! in the same run:
//!
//! - **raw**: a plain tungstenite client and server (default settings,
//!   TCP_NODELAY), no envelope: the floor for one WebSocket connection.
//! - **bridge**: `Bridge::send` in this process, an `InboundSink` in the child;
//!   messages (ids, timestamps) are built before the clock starts.
//! - **actors**: two `DistributedNetwork`s. `send_to_actor("sink@child", ..)`
//!   goes through the proxy node, the bridge and the child's router into a
//!   counting actor `sink`, which reports done through its own proxy
//!   `done@parent` once it has counted what the run announced. For the RTT, an
//!   `echo` actor in the child sends each ping back through `pong@parent` to a
//!   `pong` actor here, which wakes the measuring thread.
//! - **direct**: as actors, but sent with `send_to_remote_actor` (the message
//!   is encoded and queued on the calling thread, no proxy node): the gap to
//!   actors is what the sending proxy node costs.
//! - **acknowledged**: direct, with both peers in acknowledged delivery
//!   (`DeliveryMode::Acknowledged`): every message numbered, kept in the
//!   outbox until the child's actor consumed it, acknowledged back. 64 B
//!   throughput and RTT only (measured with direct), printed beside direct
//!   (at most once) with the ratio: what acknowledged delivery costs.
//!
//!     cargo run --release --example bench_bridge [-- --scale 0.2] [--runs 3] [--only LEVEL] [--quick]
//!
//! The program re-executes itself (`--child raw|bridge|actors|acked`) to get the
//! receiving processes; they exit when their standard input closes and are
//! killed on every exit path of this one. Throughput: N String payloads of
//! 64 B, 1 KiB and 64 KiB, clock stopped at the child's answer. RTT: 64 B
//! pings one at a time. Each level is measured `--runs` times, interleaved
//! (raw, bridge, direct, actors, raw, …) so that load from elsewhere hits every level;
//! the tables give the median and the range over the runs. A last table gives
//! the per-message cost of the JSON envelope in one thread.
//!
//! After the tables: the 1.0 JSON path (`Bridge::send` toward a child that
//! plays async Reflow 1.0: JSON text frames both ways), the peak resident
//! memory of each receiving child, the aims with their baselines,
//! and as the last line one JSON object with every figure and ratio.
//! `--quick` is `--scale 0.25` with the default three runs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use reflow_distributed::DistributedConfig;
use reflow_distributed::Message;
use reflow_distributed::bridge::{
    Bridge, BridgeConfig, BridgeIdentity, DeliveryError, DeliveryMode, InboundSink, RemoteMessage,
};
use reflow_distributed::distributed_network::DistributedNetwork;
use reflow_distributed::runtime::FnActor;
use serde_json::Value;
use tungstenite::Message as WsMessage;

const SIZES: [(usize, &str, usize); 3] = [
    (64, "64 B", 200_000),
    (1024, "1 KiB", 100_000),
    (65_536, "64 KiB", 4_000),
];
const PINGS: usize = 5_000;
const TIMEOUT: Duration = Duration::from_secs(30);
const LEVELS: [Level; 4] = [Level::Raw, Level::Bridge, Level::Direct, Level::Actors];

type BoxError = Box<dyn std::error::Error>;

const HELP: &str = "\
bench_bridge: throughput and round trips through the bridge, in two processes.

Usage: cargo run --release --example bench_bridge [-- OPTIONS]

Options:
  --scale F     Multiply every message count by F (default 1; 0.2 for a quick look).
  --runs N      Measure each level N times, interleaved (default 3).
  --only LEVEL  Measure one level only: raw, bridge, direct or actors
                (direct also measures acknowledged delivery beside it).
  --size BYTES  Throughput at one message size only (64, 1024 or 65536):
                no round trips, codec table or 1.0 path (for a profiler).
  --quick       --scale 0.25 (well under a minute).
  --help        Print this text.
";
const VALUE_FLAGS: [&str; 4] = ["--scale", "--runs", "--only", "--size"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Level {
    Raw,
    Bridge,
    Direct,
    Actors,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Raw => "raw",
            Level::Bridge => "bridge",
            Level::Direct => "direct",
            Level::Actors => "actors",
        }
    }

    fn parse(text: &str) -> Result<Level, BoxError> {
        LEVELS
            .into_iter()
            .find(|level| level.name() == text)
            .ok_or_else(|| format!("unknown level {text:?} (raw, bridge, direct or actors)").into())
    }
}

struct Options {
    scale: f64,
    runs: usize,
    only: Option<Level>,
    /// One size of `SIZES`, throughput only.
    size: Option<usize>,
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        exit_when_stdin_closes();
        return match args.get(i + 1).map(String::as_str) {
            Some("bridge") => bridge_child(),
            Some("raw") => raw_child(),
            Some("actors") => actors_child(DeliveryMode::AtMostOnce),
            Some("acked") => actors_child(DeliveryMode::Acknowledged),
            Some("reflow10") => reflow10_child(),
            other => Err(format!("unknown child mode {other:?}").into()),
        };
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{HELP}");
        return Ok(());
    }
    // A misspelt flag would otherwise be ignored and the whole bench run.
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg == "--quick" {
            continue;
        }
        if !VALUE_FLAGS.contains(&arg.as_str()) {
            eprint!("unknown argument {arg:?}\n\n{HELP}");
            std::process::exit(2);
        }
        rest.next();
    }
    let value = |flag: &str| -> Option<Result<&String, BoxError>> {
        let i = args.iter().position(|a| a == flag)?;
        Some(
            args.get(i + 1)
                .ok_or_else(|| format!("{flag} needs a value").into()),
        )
    };
    let quick = args.iter().any(|a| a == "--quick");
    let options = Options {
        scale: value("--scale")
            .transpose()?
            .map_or(Ok(if quick { 0.25 } else { 1.0 }), |s| s.parse())?,
        runs: value("--runs").transpose()?.map_or(Ok(3), |s| s.parse())?.max(1),
        only: value("--only")
            .transpose()?
            .map(|s| Level::parse(s))
            .transpose()?,
        size: value("--size")
            .transpose()?
            .map(|s| match s.parse() {
                Ok(size) if SIZES.iter().any(|&(known, _, _)| known == size) => Ok(size),
                _ => Err(format!("--size takes 64, 1024 or 65536, not {s:?}")),
            })
            .transpose()?,
    };
    parent(&options)
}

// ---------- parent ----------

/// A child process that is killed when this value is dropped, whatever the
/// exit path (error, panic unwinding, normal end).
struct ChildGuard {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Closing stdin asks the child to exit; it holds nothing worth waiting for.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `--child mode` and reads the port it announces.
fn spawn_child(mode: &str) -> Result<(ChildGuard, u16), BoxError> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--child", mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let guard = ChildGuard { child, stdin };
    let mut line = String::new();
    BufReader::new(stdout.ok_or("child has no stdout")?).read_line(&mut line)?;
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .ok_or_else(|| format!("{mode} child did not report a port (said {line:?})"))?
        .parse()?;
    Ok((guard, port))
}

/// The three senders, one per level, each connected to its own child.
struct Senders {
    /// Process ids of the receiving children, for their peak memory.
    bridge_pid: u32,
    actors_pid: u32,
    raw_port: u16,
    bridge: Bridge,
    bridge_inbox: Receiver<RemoteMessage>,
    actors: ActorSide,
    /// Direct, with acknowledged delivery on both sides.
    acked: ActorSide,
    // Dropped last: the children outlive the connections to them.
    _children: Vec<ChildGuard>,
}

impl Senders {
    fn start() -> Result<Senders, BoxError> {
        let (raw_child, raw_port) = spawn_child("raw")?;
        let (bridge_child, bridge_port) = spawn_child("bridge")?;
        let (actors_child, actors_port) = spawn_child("actors")?;
        let (acked_child, acked_port) = spawn_child("acked")?;
        let (bridge_pid, actors_pid) = (bridge_child.child.id(), actors_child.child.id());
        let children = vec![raw_child, bridge_child, actors_child, acked_child];

        let (tx, bridge_inbox) = unbounded();
        let bridge = Bridge::start(
            BridgeIdentity::new("bench-tx", "bench-tx-1"),
            BridgeConfig::default(),
            Arc::new(ForwardSink(tx)),
        )?;
        bridge.connect(&format!("127.0.0.1:{bridge_port}"))?;
        let actors = ActorSide::start(actors_port, DeliveryMode::AtMostOnce)?;
        let acked = ActorSide::start(acked_port, DeliveryMode::Acknowledged)?;
        Ok(Senders {
            bridge_pid,
            actors_pid,
            raw_port,
            bridge,
            bridge_inbox,
            actors,
            acked,
            _children: children,
        })
    }

    /// Messages per second at `level`.
    fn throughput(&self, level: Level, size: usize, n: usize) -> Result<f64, BoxError> {
        match level {
            Level::Raw => raw_throughput(self.raw_port, size, n),
            Level::Bridge => bridge_throughput(&self.bridge, &self.bridge_inbox, size, n),
            Level::Direct => self.actors.throughput(Route::Direct, size, n),
            Level::Actors => self.actors.throughput(Route::Proxy, size, n),
        }
    }

    /// Round-trip samples in microseconds at `level`.
    fn rtt(&self, level: Level, n: usize) -> Result<Vec<f64>, BoxError> {
        match level {
            Level::Raw => raw_rtt(self.raw_port, n),
            Level::Bridge => bridge_rtt(&self.bridge, &self.bridge_inbox, n),
            Level::Direct => self.actors.rtt(Route::Direct, n),
            Level::Actors => self.actors.rtt(Route::Proxy, n),
        }
    }

    fn shutdown(&self) {
        self.acked.peer.shutdown();
        self.actors.peer.shutdown();
        self.bridge.shutdown();
    }
}

/// Measurements of one quantity over the runs.
#[derive(Default, Clone)]
struct Spread(Vec<f64>);

impl Spread {
    fn median(&self) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 0 => (sorted[mid - 1] + sorted[mid]) / 2.0,
            _ => sorted[mid],
        }
    }

    /// `median (min-max)`, each value divided by `unit`; `-` for a level
    /// that was not measured (left out by `--only`).
    fn text(&self, unit: f64, digits: usize) -> String {
        if self.0.is_empty() {
            return "-".into();
        }
        let (median, lo, hi) = (
            self.median() / unit,
            percentile(&self.0, 0.0) / unit,
            percentile(&self.0, 1.0) / unit,
        );
        match self.0.len() {
            1 => format!("{median:.digits$}"),
            _ => format!("{median:.digits$} ({lo:.digits$}-{hi:.digits$})"),
        }
    }
}

/// One row of a table: a label and one spread per level.
struct Row {
    label: String,
    cells: Vec<Spread>,
}

fn print_table(title: &str, rows: &[Row], unit: f64, digits: usize) {
    let mut line = format!("{title:<18}");
    for level in LEVELS {
        line += &format!(" {:>20}", level.name());
    }
    println!("{line} {:>8} {:>8}", "brg/raw", "act/raw");
    for row in rows {
        let mut line = format!("{:<18}", row.label);
        for cell in &row.cells {
            line += &format!(" {:>20}", cell.text(unit, digits));
        }
        let ratio = |level: Level| ratio(&row.cells[level as usize], &row.cells[Level::Raw as usize]);
        println!("{line} {:>8} {:>8}", ratio(Level::Bridge), ratio(Level::Actors));
    }
}

fn parent(options: &Options) -> Result<(), BoxError> {
    let levels: Vec<Level> = LEVELS
        .into_iter()
        .filter(|l| options.only.is_none_or(|only| only == *l))
        .collect();
    let senders = Senders::start()?;
    let result = measure(&senders, &levels, options);
    senders.shutdown();
    result
}

fn measure(senders: &Senders, levels: &[Level], options: &Options) -> Result<(), BoxError> {
    let count = |n: usize| ((n as f64 * options.scale) as usize).max(10);
    // Warm up every path once (connections, allocator, caches) before measuring.
    for &level in levels {
        senders.throughput(level, 64, count(5_000))?;
        senders.rtt(level, count(200))?;
    }
    // `--size` measures that throughput alone.
    let whole = options.size.is_none();
    let acked = whole && levels.contains(&Level::Direct);
    if acked {
        senders.acked.throughput(Route::Direct, 64, count(5_000))?;
        senders.acked.rtt(Route::Direct, count(200))?;
    }
    let empty = || vec![Spread::default(); LEVELS.len()];
    let mut rates: Vec<Vec<Spread>> = SIZES.iter().map(|_| empty()).collect();
    let (mut p50, mut p99) = (empty(), empty());
    let mut acked_cells = ModeCells::default();
    let pings = count(PINGS);
    for run in 0..options.runs {
        eprint!("run {}/{}...", run + 1, options.runs);
        for (s, &(size, _, n)) in SIZES.iter().enumerate() {
            if options.size.is_some_and(|only| only != size) {
                continue;
            }
            for &level in levels {
                rates[s][level as usize]
                    .0
                    .push(senders.throughput(level, size, count(n))?);
            }
        }
        for &level in levels.iter().filter(|_| whole) {
            let samples = senders.rtt(level, pings)?;
            p50[level as usize].0.push(percentile(&samples, 0.50));
            p99[level as usize].0.push(percentile(&samples, 0.99));
        }
        if acked {
            let n = count(SIZES[0].2);
            acked_cells
                .rate
                .0
                .push(senders.acked.throughput(Route::Direct, 64, n)?);
            let samples = senders.acked.rtt(Route::Direct, pings)?;
            acked_cells.p50.0.push(percentile(&samples, 0.50));
            acked_cells.p99.0.push(percentile(&samples, 0.99));
        }
        eprintln!(" done");
    }

    println!(
        "median (min-max) over {} run(s); ratios are of the medians\n",
        options.runs
    );
    let rows: Vec<Row> = SIZES
        .iter()
        .zip(&rates)
        .map(|(&(_, label, n), cells)| Row {
            label: format!("{label} x {}", count(n)),
            cells: cells.clone(),
        })
        .collect();
    print_table("throughput, k/s", &rows, 1e3, 0);
    for (&(size, label, _), cells) in SIZES.iter().zip(&rates) {
        let mut line = format!("{:<18}", format!("  {label}, MB/s"));
        for cell in cells {
            let mb = cell.median() * size as f64 / 1e6;
            line += &if cell.0.is_empty() {
                format!(" {:>20}", "-")
            } else {
                format!(" {mb:>20.1}")
            };
        }
        println!("{line}");
    }
    let figures = Figures {
        rates: &rates,
        p50: &p50,
        p99: &p99,
        pings,
    };
    let mut summary = figures.json(options);
    if !whole {
        println!("{}", Value::Object(summary));
        return Ok(());
    }
    let rtt = [
        Row {
            label: "p50".into(),
            cells: p50.clone(),
        },
        Row {
            label: "p99".into(),
            cells: p99.clone(),
        },
    ];
    println!();
    print_table(&format!("RTT 64Bx{pings}, µs"), &rtt, 1.0, 1);
    if acked {
        let direct = Level::Direct as usize;
        let at_most_once = ModeCells {
            rate: rates[0][direct].clone(),
            p50: p50[direct].clone(),
            p99: p99[direct].clone(),
        };
        print_delivery(&at_most_once, &acked_cells, count(SIZES[0].2), pings);
        acked_cells.json(&at_most_once, &mut summary);
    }
    codec_costs();
    extras(senders, options, summary)
}

/// The 64 B throughput and RTT of one delivery mode over the runs.
#[derive(Default)]
struct ModeCells {
    rate: Spread,
    p50: Spread,
    p99: Spread,
}

impl ModeCells {
    /// The acknowledged figures, and their ratios to at most once, into the summary.
    fn json(&self, at_most_once: &ModeCells, summary: &mut serde_json::Map<String, Value>) {
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        let figures = [
            ("acknowledged_64b_msg_per_s", self.rate.median().round()),
            (
                "acknowledged_64b_over_direct",
                self.rate.median() / at_most_once.rate.median(),
            ),
            ("acknowledged_rtt_p50_us", self.p50.median()),
            ("acknowledged_rtt_p99_us", self.p99.median()),
            (
                "acknowledged_rtt_p50_over_direct",
                self.p50.median() / at_most_once.p50.median(),
            ),
        ];
        for (key, value) in figures {
            if value.is_finite() {
                summary.insert(key.into(), round(value).into());
            }
        }
    }
}

/// Acknowledged delivery beside at most once (both `direct`), with the ratio.
fn print_delivery(at_most_once: &ModeCells, acknowledged: &ModeCells, n: usize, pings: usize) {
    println!(
        "\n{:<22} {:>20} {:>20} {:>8}",
        "delivery, 64 B", "at-most-once", "acknowledged", "ack/amo"
    );
    let rows = [
        (
            format!("throughput x {n}, k/s"),
            &at_most_once.rate,
            &acknowledged.rate,
            1e3,
            0,
        ),
        (
            format!("RTT p50 x {pings}, µs"),
            &at_most_once.p50,
            &acknowledged.p50,
            1.0,
            1,
        ),
        (
            format!("RTT p99 x {pings}, µs"),
            &at_most_once.p99,
            &acknowledged.p99,
            1.0,
            1,
        ),
    ];
    for (label, amo, ack, unit, digits) in rows {
        println!(
            "{label:<22} {:>20} {:>20} {:>8}",
            amo.text(unit, digits),
            ack.text(unit, digits),
            ratio(ack, amo)
        );
    }
}

fn ratio(ours: &Spread, base: &Spread) -> String {
    if ours.0.is_empty() || base.0.is_empty() {
        return "-".into();
    }
    format!("{:.2}", ours.median() / base.median())
}

/// What the v1.0 JSON envelope costs per message in one thread: building a
/// message (id, timestamp, names), encoding it, decoding it.
fn codec_costs() {
    println!(
        "\n{:<16} {:>12} {:>12} {:>12} {:>12}",
        "envelope, 1 thread", "frame bytes", "build ns", "encode ns", "decode ns"
    );
    for (size, label, _) in SIZES {
        let payload: Arc<str> = "x".repeat(size).into();
        let reps = (2_000_000 / (size + 256)).clamp(200, 20_000);
        let build = || {
            RemoteMessage::new(
                "parent",
                "sink@child",
                "child",
                "sink",
                "in",
                Message::String(payload.clone()),
            )
        };
        // Best of three batches: the least disturbed by other work on the machine.
        let time = |f: &mut dyn FnMut()| {
            (0..3)
                .map(|_| {
                    let started = Instant::now();
                    for _ in 0..reps {
                        f();
                    }
                    started.elapsed().as_nanos() as f64 / reps as f64
                })
                .fold(f64::INFINITY, f64::min)
        };
        let build_ns = time(&mut || drop(std::hint::black_box(build())));
        let message = build();
        let encode_ns = time(&mut || drop(std::hint::black_box(serde_json::to_string(&message))));
        let text = serde_json::to_string(&message).unwrap_or_default();
        let decode_ns = time(&mut || {
            drop(std::hint::black_box(serde_json::from_str::<RemoteMessage>(&text)));
        });
        println!(
            "{:<16} {:>12} {:>12.0} {:>12.0} {:>12.0}",
            label,
            text.len(),
            build_ns,
            encode_ns,
            decode_ns
        );
    }
}

struct ForwardSink(Sender<RemoteMessage>);

impl InboundSink for ForwardSink {
    fn deliver(&self, message: RemoteMessage) -> Result<(), DeliveryError> {
        self.0.send(message).map_err(|_| DeliveryError::ShuttingDown)
    }
}

fn to_child(actor: &str, payload: &Arc<str>) -> RemoteMessage {
    RemoteMessage::new(
        "bench-tx",
        "unknown",
        "bench-rx",
        actor,
        "in",
        Message::String(payload.clone()),
    )
}

/// Messages per second through the bridge.
fn bridge_throughput(
    bridge: &Bridge,
    inbox: &Receiver<RemoteMessage>,
    size: usize,
    n: usize,
) -> Result<f64, BoxError> {
    let payload: Arc<str> = "x".repeat(size).into();
    // Ids and timestamps are the caller's cost, not the transport's: build first.
    let messages: Vec<RemoteMessage> = (0..n).map(|_| to_child("count", &payload)).collect();
    let started = Instant::now();
    for message in messages {
        bridge.send(message, TIMEOUT)?;
    }
    bridge.send(to_child("end", &"".into()), TIMEOUT)?;
    let done = inbox.recv_timeout(TIMEOUT)?;
    let elapsed = started.elapsed();
    let received = done.payload.as_i64().unwrap_or(-1);
    if received != n as i64 {
        return Err(format!("bridge child counted {received} of {n}").into());
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// Round trips through the bridge, in microseconds.
fn bridge_rtt(bridge: &Bridge, inbox: &Receiver<RemoteMessage>, n: usize) -> Result<Vec<f64>, BoxError> {
    let payload: Arc<str> = "p".repeat(64).into();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        bridge.send(to_child("echo", &payload), TIMEOUT)?;
        inbox.recv_timeout(TIMEOUT)?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    Ok(samples)
}

/// The parent's `DistributedNetwork`: proxies `sink@child` and `echo@child`,
/// and local actors `done` and `pong` that hand what reaches them to the
/// measuring thread.
struct ActorSide {
    peer: DistributedNetwork,
    done: Receiver<i64>,
    pong: Receiver<()>,
}

impl ActorSide {
    fn start(child_port: u16, mode: DeliveryMode) -> Result<ActorSide, BoxError> {
        let peer = DistributedNetwork::new(delivery_config("parent", mode))?;
        let (done_tx, done) = unbounded();
        let (pong_tx, pong) = unbounded();
        let done_actor = FnActor::new(&["in"], &[], move |ctx| {
            if let Some(n) = ctx.input("in").and_then(Message::as_i64) {
                let _ = done_tx.send(n);
            }
            Ok(())
        });
        let pong_actor = FnActor::new(&["in"], &[], move |_| {
            let _ = pong_tx.send(());
            Ok(())
        });
        peer.register_local_actor("done", Box::new(done_actor), Value::Null)?;
        peer.register_local_actor("pong", Box::new(pong_actor), Value::Null)?;
        peer.register_remote_actor("sink", "child")?;
        peer.register_remote_actor("echo", "child")?;
        peer.start()?;
        peer.connect_to_network(&format!("127.0.0.1:{child_port}"))?;
        Ok(ActorSide { peer, done, pong })
    }

    /// Sends one message to `actor.port` in the child, by `route`.
    fn send(&self, route: Route, actor: &str, port: &str, message: Message) -> Result<(), BoxError> {
        match route {
            Route::Proxy => self
                .peer
                .send_to_actor(&format!("{actor}@child"), port, message)?,
            Route::Direct => self.peer.send_to_remote_actor("child", actor, port, message)?,
        }
        Ok(())
    }

    /// Messages per second from here to the child's `sink` actor.
    fn throughput(&self, route: Route, size: usize, n: usize) -> Result<f64, BoxError> {
        let payload: Arc<str> = "x".repeat(size).into();
        // The count goes ahead of the data, on the same connection.
        self.send(route, "sink", "expect", Message::Integer(n as i64))?;
        let (sink, started) = (route.node("sink"), Instant::now());
        for _ in 0..n {
            match &sink {
                Some(node) => self
                    .peer
                    .send_to_actor(node, "in", Message::String(payload.clone()))?,
                None => self.send(route, "sink", "in", Message::String(payload.clone()))?,
            }
        }
        let counted = self.done.recv_timeout(TIMEOUT)?;
        let elapsed = started.elapsed();
        if counted != n as i64 {
            return Err(format!("actors child counted {counted} of {n}").into());
        }
        Ok(n as f64 / elapsed.as_secs_f64())
    }

    /// Round trips to the child's `echo`, back through `pong@parent` to
    /// `pong`, in microseconds.
    fn rtt(&self, route: Route, n: usize) -> Result<Vec<f64>, BoxError> {
        let payload: Arc<str> = "p".repeat(64).into();
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            self.send(route, "echo", "in", Message::String(payload.clone()))?;
            self.pong.recv_timeout(TIMEOUT)?;
            samples.push(started.elapsed().as_secs_f64() * 1e6);
        }
        Ok(samples)
    }
}

/// How the parent's messages enter the bridge.
#[derive(Clone, Copy)]
enum Route {
    /// `send_to_actor("actor@child", ..)`: through the proxy node.
    Proxy,
    /// `send_to_remote_actor("child", "actor", ..)`: straight to the bridge.
    Direct,
}

impl Route {
    /// The proxy node's name, made once rather than per message.
    fn node(self, actor: &str) -> Option<String> {
        match self {
            Route::Proxy => Some(format!("{actor}@child")),
            Route::Direct => None,
        }
    }
}

fn raw_connect(port: u16) -> Result<tungstenite::WebSocket<TcpStream>, BoxError> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}/"), tcp)?;
    Ok(ws)
}

/// Messages per second over a plain WebSocket: write all, flush, wait for "done".
fn raw_throughput(port: u16, size: usize, n: usize) -> Result<f64, BoxError> {
    let mut ws = raw_connect(port)?;
    let payload = "x".repeat(size);
    let started = Instant::now();
    for _ in 0..n {
        ws.write(WsMessage::text(payload.clone()))?;
    }
    ws.send(WsMessage::text("END"))?;
    let done = ws.read()?;
    let elapsed = started.elapsed();
    if done.to_text()? != format!("DONE {n}") {
        return Err(format!("raw child answered {done}").into());
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}

fn raw_rtt(port: u16, n: usize) -> Result<Vec<f64>, BoxError> {
    let mut ws = raw_connect(port)?;
    let payload = "p".repeat(64);
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        ws.send(WsMessage::text(format!("P{payload}")))?;
        ws.read()?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    Ok(samples)
}

/// Nearest-rank percentile; NaN when there are no samples.
fn percentile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

// ---------- children ----------

fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
}

fn announce(port: u16) -> Result<(), BoxError> {
    let mut out = std::io::stdout();
    writeln!(out, "PORT {port}")?;
    out.flush()?;
    Ok(())
}

/// The child's bridge; the sink answers through it.
static CHILD_BRIDGE: OnceLock<Bridge> = OnceLock::new();

struct ChildSink {
    counted: std::sync::atomic::AtomicI64,
}

impl ChildSink {
    fn reply(&self, actor: &str, payload: Message) -> Result<(), DeliveryError> {
        let bridge = CHILD_BRIDGE.get().ok_or(DeliveryError::ShuttingDown)?;
        let message = RemoteMessage::new("bench-rx", "bench", "bench-tx", actor, "in", payload);
        bridge.send(message, TIMEOUT).map_err(|_| DeliveryError::Full)
    }
}

impl InboundSink for ChildSink {
    fn deliver(&self, message: RemoteMessage) -> Result<(), DeliveryError> {
        use std::sync::atomic::Ordering;
        match message.target_actor.as_str() {
            "count" => {
                self.counted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            "end" => self.reply("done", Message::Integer(self.counted.swap(0, Ordering::Relaxed))),
            "echo" => self.reply("pong", message.payload),
            other => Err(DeliveryError::UnknownActor(other.to_string())),
        }
    }
}

fn bridge_child() -> Result<(), BoxError> {
    let sink = Arc::new(ChildSink { counted: 0.into() });
    let bridge = Bridge::start(
        BridgeIdentity::new("bench-rx", "bench-rx-1"),
        BridgeConfig::default(),
        sink,
    )?;
    let port = bridge.local_addr().port();
    let _ = CHILD_BRIDGE.set(bridge);
    announce(port)?;
    loop {
        std::thread::park();
    }
}

/// A peer of network `name` whose sends go in `mode`.
fn delivery_config(name: &str, mode: DeliveryMode) -> DistributedConfig {
    let mut config = DistributedConfig::new(name);
    config.bridge.delivery.mode = mode;
    config
}

/// The child's `DistributedNetwork`: `sink` counts `in` messages and, once it
/// has the number announced on `expect`, sends the count to `done@parent`;
/// `echo` sends every message back to `pong@parent`.
fn actors_child(mode: DeliveryMode) -> Result<(), BoxError> {
    let peer = DistributedNetwork::new(delivery_config("child", mode))?;
    let mut counted = 0i64;
    let mut expected: Option<i64> = None;
    let sink = FnActor::new(&["in", "expect"], &["out"], move |ctx| {
        if ctx.input("in").is_some() {
            counted += 1;
        }
        if let Some(n) = ctx.input("expect").and_then(Message::as_i64) {
            expected = Some(n);
        }
        if expected.is_some_and(|n| counted >= n) {
            ctx.emit("out", counted)?;
            counted = 0;
            expected = None;
        }
        Ok(())
    });
    let echo = FnActor::new(&["in"], &["out"], |ctx| match ctx.take_input("in") {
        Some(message) => ctx.emit("out", message),
        None => Ok(()),
    });
    peer.register_local_actor("sink", Box::new(sink), Value::Null)?;
    peer.register_local_actor("echo", Box::new(echo), Value::Null)?;
    let done = peer.register_remote_actor("done", "parent")?;
    let pong = peer.register_remote_actor("pong", "parent")?;
    let network = peer.get_local_network();
    network.connect("sink", "out", &done, "in")?;
    network.connect("echo", "out", &pong, "in")?;
    peer.start()?;
    announce(peer.local_addr().ok_or("no bridge address")?.port())?;
    loop {
        std::thread::park();
    }
}

fn raw_child() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    announce(listener.local_addr()?.port())?;
    for tcp in listener.incoming() {
        let tcp = tcp?;
        tcp.set_nodelay(true)?;
        std::thread::spawn(move || {
            if let Err(err) = raw_serve(tcp) {
                eprintln!("raw child: {err}");
            }
        });
    }
    Ok(())
}

fn raw_serve(tcp: TcpStream) -> Result<(), BoxError> {
    let mut ws = tungstenite::accept(tcp)?;
    let mut counted = 0usize;
    loop {
        let message = match ws.read() {
            Ok(message) => message,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => return Ok(()),
            Err(tungstenite::Error::Protocol(_)) => return Ok(()),
            Err(err) => return Err(err.into()),
        };
        let WsMessage::Text(text) = message else { continue };
        if text.as_str() == "END" {
            ws.send(WsMessage::text(format!("DONE {counted}")))?;
            counted = 0;
        } else if text.as_str().starts_with('P') {
            ws.send(WsMessage::Text(text))?;
        } else {
            counted += 1;
        }
    }
}

// ---------- the aims, the 1.0 path, memory, the JSON summary ----------

/// Aims, as ratios of actors (through a proxy) to raw batched WebSocket
/// frames of the same run, per size of `SIZES`.
const AIM_THROUGHPUT: [f64; 3] = [0.20, 0.30, 0.50];
/// Actors at 64 B, messages per second, on a quiet run.
const AIM_64B_RATE: f64 = 1_000_000.0;
/// Peak resident memory of the receiving process, KiB.
const AIM_RSS_KIB: u64 = 16 * 1024;

/// The measured tables, for the summary.
struct Figures<'a> {
    rates: &'a [Vec<Spread>],
    p50: &'a [Spread],
    p99: &'a [Spread],
    pings: usize,
}

impl Figures<'_> {
    /// Every figure (medians) and every ratio to raw, as JSON.
    fn json(&self, options: &Options) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        out.insert("bench".into(), "bridge".into());
        out.insert("scale".into(), options.scale.into());
        out.insert("runs".into(), options.runs.into());
        let raw = Level::Raw as usize;
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        let mut put = |key: String, value: f64| {
            if value.is_finite() {
                out.insert(key, round(value).into());
            }
        };
        for (s, &(size, _, _)) in SIZES.iter().enumerate() {
            for level in LEVELS {
                let rate = self.rates[s][level as usize].median();
                put(format!("{}_{size}b_msg_per_s", level.name()), rate.round());
                if level != Level::Raw {
                    let base = self.rates[s][raw].median();
                    put(format!("{}_{size}b_over_raw", level.name()), rate / base);
                }
            }
        }
        put("rtt_pings".into(), self.pings as f64);
        for level in LEVELS {
            let (p50, p99) = (
                self.p50[level as usize].median(),
                self.p99[level as usize].median(),
            );
            put(format!("{}_rtt_p50_us", level.name()), p50);
            put(format!("{}_rtt_p99_us", level.name()), p99);
            if level != Level::Raw {
                put(
                    format!("{}_rtt_p50_over_raw", level.name()),
                    p50 / self.p50[raw].median(),
                );
                put(
                    format!("{}_rtt_p99_over_raw", level.name()),
                    p99 / self.p99[raw].median(),
                );
            }
        }
        out
    }
}

/// The 1.0 path, the children's memory, the aims, and the JSON line.
fn extras(
    senders: &Senders,
    options: &Options,
    mut summary: serde_json::Map<String, Value>,
) -> Result<(), BoxError> {
    let n = ((200_000.0 * options.scale) as usize).max(10);
    let v10 = Reflow10Side::start()?;
    v10.throughput(n / 10)?;
    let rates: Vec<f64> = (0..options.runs)
        .map(|_| v10.throughput(n))
        .collect::<Result<_, _>>()?;
    v10.bridge.shutdown();
    let v10_rate = Spread(rates);
    println!(
        "\n1.0 JSON path, 64 B x {n} to a peer playing Reflow 1.0: {} k/s",
        v10_rate.text(1e3, 0)
    );
    let bridge_kib = peak_rss_kib(senders.bridge_pid);
    let actors_kib = peak_rss_kib(senders.actors_pid);
    println!(
        "peak RSS (VmHWM) of the receiving children: actors {} KiB, bridge {} KiB",
        actors_kib.map_or("-".into(), |k| k.to_string()),
        bridge_kib.map_or("-".into(), |k| k.to_string()),
    );
    summary.insert("v10_64b_msg_per_s".into(), v10_rate.median().round().into());
    if let Some(kib) = actors_kib {
        summary.insert("actors_child_peak_rss_kib".into(), kib.into());
    }
    if let Some(kib) = bridge_kib {
        summary.insert("bridge_child_peak_rss_kib".into(), kib.into());
    }

    println!("\naims (actors through a proxy, 1.1 between two peers of ours, against raw batched frames):");
    let ratio = |key: &str| summary.get(key).and_then(Value::as_f64);
    let mut aims = serde_json::Map::new();
    let mut aim = |name: String, value: Option<f64>, met: Option<bool>, wanted: String| {
        let shown = value.map_or("-".into(), |v| format!("{v:.3}"));
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "not met",
            None => "not measured",
        };
        println!("  {name:<40} {shown:>12}  aim {wanted:<14} {verdict}");
        aims.insert(name, met.map_or(Value::Null, Value::Bool));
    };
    for (&(size, label, _), &want) in SIZES.iter().zip(&AIM_THROUGHPUT) {
        let got = ratio(&format!("actors_{size}b_over_raw"));
        aim(
            format!("{label}: actors / raw"),
            got,
            got.map(|r| r >= want),
            format!(">= {want:.2}x"),
        );
    }
    let rate = ratio("actors_64b_msg_per_s");
    aim(
        "64 B: actors msg/s".into(),
        rate,
        rate.map(|r| r >= AIM_64B_RATE),
        ">= 1000000".into(),
    );
    let rss = actors_kib.map(|k| k as f64);
    aim(
        "peak RSS of the receiving process, KiB".into(),
        rss,
        rss.map(|k| k <= AIM_RSS_KIB as f64),
        format!("<= {AIM_RSS_KIB}"),
    );
    println!(
        "  1.0 JSON path, 64 B: {:.0} msg/s (aim: no slower than the build before)",
        v10_rate.median()
    );
    summary.insert("aims_met".into(), Value::Object(aims));
    println!("{}", Value::Object(summary));
    Ok(())
}

/// Peak resident set (VmHWM) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A bridge of ours dialing a child that speaks only protocol 1.0.
struct Reflow10Side {
    bridge: Bridge,
    inbox: Receiver<RemoteMessage>,
    _child: ChildGuard,
}

impl Reflow10Side {
    fn start() -> Result<Reflow10Side, BoxError> {
        let (child, port) = spawn_child("reflow10")?;
        let (tx, inbox) = unbounded();
        let bridge = Bridge::start(
            BridgeIdentity::new("bench-tx10", "bench-tx10-1"),
            BridgeConfig::default(),
            Arc::new(ForwardSink(tx)),
        )?;
        bridge.connect(&format!("127.0.0.1:{port}"))?;
        Ok(Reflow10Side {
            bridge,
            inbox,
            _child: child,
        })
    }

    /// 64 B messages per second, clock stopped at the 1.0 peer's count
    /// (sent back as a 1.0 JSON message).
    fn throughput(&self, n: usize) -> Result<f64, BoxError> {
        let payload: Arc<str> = "x".repeat(64).into();
        let message = |actor: &str, payload: &Arc<str>| {
            RemoteMessage::new(
                "bench-tx10",
                "unknown",
                "bench-rx10",
                actor,
                "in",
                Message::String(payload.clone()),
            )
        };
        let messages: Vec<RemoteMessage> = (0..n).map(|_| message("count", &payload)).collect();
        let started = Instant::now();
        for m in messages {
            self.bridge.send(m, TIMEOUT)?;
        }
        self.bridge.send(message("end", &"".into()), TIMEOUT)?;
        let done = self.inbox.recv_timeout(TIMEOUT)?;
        let elapsed = started.elapsed();
        let counted = done.payload.as_i64().unwrap_or(-1);
        if counted != n as i64 {
            return Err(format!("1.0 child counted {counted} of {n}").into());
        }
        Ok(n as f64 / elapsed.as_secs_f64())
    }
}

/// Plays async Reflow 1.0: answers the handshake as 1.0, parses every text
/// frame as a 1.0 message (heartbeats do not parse and are skipped), counts
/// those for `count`, and answers `end` with the count, in a 1.0 JSON message.
fn reflow10_child() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    announce(listener.local_addr()?.port())?;
    for tcp in listener.incoming() {
        let tcp = tcp?;
        tcp.set_nodelay(true)?;
        std::thread::spawn(move || {
            if let Err(err) = reflow10_serve(tcp) {
                eprintln!("1.0 child: {err}");
            }
        });
    }
    Ok(())
}

fn reflow10_serve(tcp: TcpStream) -> Result<(), BoxError> {
    let mut ws = tungstenite::accept(tcp)?;
    loop {
        if let WsMessage::Text(_) = ws.read()? {
            break;
        }
    }
    let welcome = serde_json::json!({
        "success": true, "network_id": "bench-rx10", "instance_id": "bench-rx10-1", "error": null
    });
    ws.send(WsMessage::text(welcome.to_string()))?;
    let mut counted = 0i64;
    loop {
        let text = match ws.read() {
            Ok(WsMessage::Text(text)) => text,
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => return Ok(()),
            Err(tungstenite::Error::Protocol(_)) => return Ok(()),
            Err(err) => return Err(err.into()),
        };
        let Ok(message) = serde_json::from_str::<RemoteMessage>(text.as_str()) else {
            continue;
        };
        match message.target_actor.as_str() {
            "count" => counted += 1,
            "end" => {
                let reply = RemoteMessage::new(
                    "bench-rx10",
                    "bench",
                    "bench-tx10",
                    "done",
                    "in",
                    Message::Integer(std::mem::take(&mut counted)),
                );
                ws.send(WsMessage::text(serde_json::to_string(&reply)?))?;
            }
            _ => {}
        }
    }
}
