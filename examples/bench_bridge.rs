//! Bridge benchmark across two processes, beside a raw tungstenite baseline
//! measured in the same run.
//!
//!     cargo run --release --example bench_bridge [-- --scale 0.2]
//!
//! The program re-executes itself (`--child bridge` / `--child raw`) to get a
//! receiving process. Throughput: the parent sends N String payloads of 64 B,
//! 1 KiB and 64 KiB and waits for the child's "done" answer. RTT: the child
//! echoes 64 B pings one at a time. The bridge figures go through `Bridge::send`
//! and the sinks on both sides; the raw figures use a plain WebSocket client
//! and server (default tungstenite settings, TCP_NODELAY) with no envelope.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, unbounded};
use reflow_distributed::Message;
use reflow_distributed::bridge::{
    Bridge, BridgeConfig, BridgeIdentity, DeliveryError, InboundSink, RemoteMessage,
};
use tungstenite::Message as WsMessage;

const SIZES: [(usize, &str, usize); 3] = [
    (64, "64 B", 200_000),
    (1024, "1 KiB", 100_000),
    (65_536, "64 KiB", 4_000),
];
const PINGS: usize = 5_000;
const TIMEOUT: Duration = Duration::from_secs(30);

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        exit_when_stdin_closes();
        return match args.get(i + 1).map(String::as_str) {
            Some("bridge") => bridge_child(),
            Some("raw") => raw_child(),
            other => Err(format!("unknown child mode {other:?}").into()),
        };
    }
    let scale = match args.iter().position(|a| a == "--scale") {
        Some(i) => args.get(i + 1).ok_or("--scale needs a number")?.parse::<f64>()?,
        None => 1.0,
    };
    parent(scale)
}

// ---------- parent ----------

fn parent(scale: f64) -> Result<(), BoxError> {
    let count = |n: usize| ((n as f64 * scale) as usize).max(10);
    let (mut raw_child, raw_port) = spawn_child("raw")?;
    let (mut bridge_child, bridge_port) = spawn_child("bridge")?;

    let (tx, inbox) = unbounded();
    let sink = Arc::new(ForwardSink(tx));
    let bridge = Bridge::start(
        BridgeIdentity::new("bench-tx", "bench-tx-1"),
        BridgeConfig::default(),
        sink,
    )?;
    bridge.connect(&format!("127.0.0.1:{bridge_port}"))?;

    println!(
        "{:<22} {:>14} {:>14} {:>8}",
        "throughput", "raw msg/s", "bridge msg/s", "ratio"
    );
    for (size, label, n) in SIZES {
        let n = count(n);
        let raw = raw_throughput(raw_port, size, n)?;
        let ours = bridge_throughput(&bridge, &inbox, size, n)?;
        println!(
            "{:<22} {:>14.0} {:>14.0} {:>8.2}",
            format!("{label} x {n}"),
            raw,
            ours,
            ours / raw
        );
        println!(
            "{:<22} {:>14.1} {:>14.1}",
            "  (MB/s payload)",
            raw * size as f64 / 1e6,
            ours * size as f64 / 1e6
        );
    }

    let pings = count(PINGS);
    let raw = raw_rtt(raw_port, pings)?;
    let ours = bridge_rtt(&bridge, &inbox, pings)?;
    println!(
        "\n{:<22} {:>14} {:>14} {:>8}",
        format!("RTT 64 B x {pings}"),
        "raw µs",
        "bridge µs",
        "ratio"
    );
    for (name, q) in [("p50", 0.50), ("p99", 0.99)] {
        let (r, b) = (percentile(&raw, q), percentile(&ours, q));
        println!("{:<22} {:>14.1} {:>14.1} {:>8.2}", name, r, b, b / r);
    }

    bridge.shutdown();
    for child in [&mut raw_child, &mut bridge_child] {
        drop(child.stdin.take());
        child.wait()?;
    }
    Ok(())
}

fn spawn_child(mode: &str) -> Result<(Child, u16), BoxError> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--child", mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .ok_or("child did not report a port")?
        .parse()?;
    Ok((child, port))
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
    inbox: &crossbeam_channel::Receiver<RemoteMessage>,
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
fn bridge_rtt(
    bridge: &Bridge,
    inbox: &crossbeam_channel::Receiver<RemoteMessage>,
    n: usize,
) -> Result<Vec<f64>, BoxError> {
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

fn percentile(samples: &[f64], q: f64) -> f64 {
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
