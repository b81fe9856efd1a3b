//! Actor round trip across two processes, beside a raw WebSocket round trip
//! measured in the same run:
//!
//! - **raw**: a plain tungstenite client sends 64 B and waits for the child's
//!   echo (TCP_NODELAY, default settings): the floor for one WebSocket
//!   connection.
//! - **actors**: a local actor `ping` sends 64 B with
//!   `ActorContext::send_to_remote_actor` to `echo` in the child's
//!   `DistributedNetwork`, which answers with `ActorContext::reply`; the
//!   reply reaches `ping`'s `pong` port, which takes the time and sends the
//!   next ping from the same tick. No proxy node and no application thread
//!   on the path: send → remote actor → reply → local actor.
//!
//!     cargo run --release --example bench_rtt [-- --pings N] [--runs N] [--quick]
//!
//! Both levels are measured `--runs` times (default 3), interleaved, so load
//! from elsewhere hits both; the table gives the median over the runs of each
//! run's p50 and p99 (min-max beside it). `--quick`: 2,000 pings per run.
//! The last line printed is one JSON object with every figure and ratio.
//!
//! The program re-executes itself (`--child`) to get the echoing process,
//! which exits when its standard input closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, unbounded};
use reflow_distributed::distributed_network::DistributedNetwork;
use reflow_distributed::runtime::FnActor;
use reflow_distributed::{DistributedConfig, Message};
use serde_json::{Value, json};
use tungstenite::Message as WsMessage;

type BoxError = Box<dyn std::error::Error>;

const TIMEOUT: Duration = Duration::from_secs(30);
const PAYLOAD: usize = 64;
/// Aims, as ratios to the raw WebSocket round trip of the same run.
const AIM_P50: f64 = 1.3;
const AIM_P99: f64 = 2.0;

const HELP: &str = "\
bench_rtt: actor round trip (send -> remote actor -> reply -> local actor) beside a raw WebSocket round trip.

Usage: cargo run --release --example bench_rtt [-- OPTIONS]

Options:
  --pings N   Round trips per run and level (default 5000).
  --runs N    Runs of each level, interleaved (default 3).
  --quick     2000 pings per run.
  --help      Print this text.
";

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--child") {
        return child();
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{HELP}");
        return Ok(());
    }
    let mut pings = 5_000;
    let mut runs = 3;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--quick" => pings = 2_000,
            "--pings" => pings = rest.next().ok_or("--pings needs a value")?.parse()?,
            "--runs" => {
                runs = rest
                    .next()
                    .ok_or("--runs needs a value")?
                    .parse::<usize>()?
                    .max(1)
            }
            other => {
                eprint!("unknown argument {other:?}\n\n{HELP}");
                std::process::exit(2);
            }
        }
    }
    parent(pings, runs)
}

// ---------- parent ----------

/// The child process, killed when dropped (whatever the exit path).
struct ChildGuard {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The parent's peer and its `ping` actor; `start` sends a run's count to
/// `ping`, `done` brings back the run's samples in microseconds.
struct Pinger {
    peer: DistributedNetwork,
    done: crossbeam_channel::Receiver<Vec<f64>>,
}

impl Pinger {
    fn start(child_port: u16) -> Result<Pinger, BoxError> {
        let peer = DistributedNetwork::new(DistributedConfig::new("rtt-parent"))?;
        let (done_tx, done) = unbounded();
        peer.register_local_actor("ping", Box::new(ping_actor(done_tx)), Value::Null)?;
        peer.start()?;
        peer.connect_to_network(&format!("127.0.0.1:{child_port}"))?;
        Ok(Pinger { peer, done })
    }

    fn run(&self, pings: usize) -> Result<Vec<f64>, BoxError> {
        self.peer
            .send_to_actor("ping", "start", Message::Integer(pings as i64))?;
        Ok(self.done.recv_timeout(TIMEOUT)?)
    }
}

/// `start` (a count) begins a run; each reply on `pong` is timed and
/// answered with the next ping from the same tick, until the count is done.
fn ping_actor(done: Sender<Vec<f64>>) -> FnActor {
    let payload: Arc<str> = "p".repeat(PAYLOAD).into();
    let mut left = 0usize;
    let mut samples: Vec<f64> = Vec::new();
    let mut sent = Instant::now();
    FnActor::new(&["start", "pong"], &[], move |ctx| {
        if let Some(n) = ctx.input("start").and_then(Message::as_i64) {
            left = usize::try_from(n).unwrap_or(0);
            samples = Vec::with_capacity(left);
        } else if ctx.take_input("pong").is_some() {
            samples.push(sent.elapsed().as_secs_f64() * 1e6);
            left = left.saturating_sub(1);
        } else {
            return Ok(());
        }
        if left == 0 {
            let _ = done.send(std::mem::take(&mut samples));
            return Ok(());
        }
        sent = Instant::now();
        ctx.send_to_remote_actor("rtt-child", "echo", "in", Message::String(payload.clone()))
    })
}

fn parent(pings: usize, runs: usize) -> Result<(), BoxError> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--child")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let _guard = ChildGuard { child, stdin };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let ports: Vec<u16> = line
        .trim()
        .strip_prefix("PORTS ")
        .ok_or_else(|| format!("child did not report its ports (said {line:?})"))?
        .split(' ')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [bridge_port, raw_port] = ports[..] else {
        return Err(format!("child reported {line:?}").into());
    };
    let pinger = Pinger::start(bridge_port)?;
    let mut raw = raw_connect(raw_port)?;
    // Warm up both paths (connections, allocator, caches).
    raw_rtt(&mut raw, 200)?;
    pinger.run(200)?;
    let (mut raw_p50, mut raw_p99, mut act_p50, mut act_p99) = (vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        eprint!("run {}/{runs}...", run + 1);
        let samples = raw_rtt(&mut raw, pings)?;
        raw_p50.push(percentile(&samples, 0.50));
        raw_p99.push(percentile(&samples, 0.99));
        let samples = pinger.run(pings)?;
        if samples.len() != pings {
            return Err(format!("{} of {pings} round trips came back", samples.len()).into());
        }
        act_p50.push(percentile(&samples, 0.50));
        act_p99.push(percentile(&samples, 0.99));
        eprintln!(" done");
    }
    pinger.peer.shutdown();

    let (r50, r99, a50, a99) = (
        median(&raw_p50),
        median(&raw_p99),
        median(&act_p50),
        median(&act_p99),
    );
    println!("round trip, {PAYLOAD} B x {pings}, µs; median (min-max) over {runs} run(s)\n");
    println!(
        "{:<8} {:>24} {:>24} {:>8}",
        "", "raw WebSocket", "actors", "ratio"
    );
    for (label, raw, ours) in [("p50", &raw_p50, &act_p50), ("p99", &raw_p99, &act_p99)] {
        println!(
            "{label:<8} {:>24} {:>24} {:>8.2}",
            spread(raw),
            spread(ours),
            median(ours) / median(raw)
        );
    }
    let verdict = |met: bool| if met { "met" } else { "not met" };
    println!(
        "\naims: actors p50 <= {AIM_P50}x raw: {:.2}x ({}); actors p99 <= {AIM_P99}x raw: {:.2}x ({})",
        a50 / r50,
        verdict(a50 / r50 <= AIM_P50),
        a99 / r99,
        verdict(a99 / r99 <= AIM_P99),
    );
    let round = |x: f64| (x * 100.0).round() / 100.0;
    println!(
        "{}",
        json!({
            "bench": "rtt",
            "payload_bytes": PAYLOAD,
            "pings": pings,
            "runs": runs,
            "raw_p50_us": round(r50),
            "raw_p99_us": round(r99),
            "actors_p50_us": round(a50),
            "actors_p99_us": round(a99),
            "actors_over_raw_p50": round(a50 / r50),
            "actors_over_raw_p99": round(a99 / r99),
            "aim_p50_ratio": AIM_P50,
            "aim_p99_ratio": AIM_P99,
            "aim_p50_met": a50 / r50 <= AIM_P50,
            "aim_p99_met": a99 / r99 <= AIM_P99,
        })
    );
    Ok(())
}

fn raw_connect(port: u16) -> Result<tungstenite::WebSocket<TcpStream>, BoxError> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}/"), tcp)?;
    Ok(ws)
}

fn raw_rtt(ws: &mut tungstenite::WebSocket<TcpStream>, n: usize) -> Result<Vec<f64>, BoxError> {
    let payload = "p".repeat(PAYLOAD);
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        ws.send(WsMessage::text(payload.clone()))?;
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

fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

fn spread(values: &[f64]) -> String {
    match values.len() {
        1 => format!("{:.1}", values[0]),
        _ => format!(
            "{:.1} ({:.1}-{:.1})",
            median(values),
            percentile(values, 0.0),
            percentile(values, 1.0)
        ),
    }
}

// ---------- child ----------

/// A `DistributedNetwork` whose `echo` actor replies to every message on
/// `in` with the same payload to its sender's `pong` port, and a raw
/// WebSocket echo server; announces both ports.
fn child() -> Result<(), BoxError> {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
    let peer = DistributedNetwork::new(DistributedConfig::new("rtt-child"))?;
    let echo = FnActor::new(&["in"], &[], |ctx| match ctx.take_input("in") {
        Some(message) => ctx.reply("in", "pong", message),
        None => Ok(()),
    });
    peer.register_local_actor("echo", Box::new(echo), Value::Null)?;
    peer.start()?;
    let bridge_port = peer.local_addr().ok_or("no bridge address")?.port();
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut out = std::io::stdout();
    writeln!(out, "PORTS {bridge_port} {}", listener.local_addr()?.port())?;
    out.flush()?;
    for tcp in listener.incoming() {
        let tcp = tcp?;
        tcp.set_nodelay(true)?;
        std::thread::spawn(move || {
            let _ = raw_echo(tcp);
        });
    }
    Ok(())
}

fn raw_echo(tcp: TcpStream) -> Result<(), BoxError> {
    let mut ws = tungstenite::accept(tcp)?;
    loop {
        match ws.read()? {
            message @ WsMessage::Text(_) => ws.send(message)?,
            _ => continue,
        }
    }
}
